package sessions

import (
	"context"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bUsage = []byte("usage") // "YYYY-MM-DD\x00identity" -> uint64 tokens

// Usage is the model token count per identity per UTC day, persisted in
// the session store so a restart does not reset anybody's budget. It
// implements modelproxy.Usage.
type Usage struct {
	Store *Store
	Now   func() time.Time
}

func (u Usage) key(identity string) []byte {
	now := time.Now
	if u.Now != nil {
		now = u.Now
	}
	return []byte(now().UTC().Format(time.DateOnly) + "\x00" + identity)
}

// TokensToday returns the tokens identity used today.
func (u Usage) TokensToday(ctx context.Context, identity string) (int64, error) {
	var n int64
	err := u.Store.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bUsage)
		if b == nil {
			return nil
		}
		if v := b.Get(u.key(identity)); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return n, err
}

// AddTokens adds n tokens to identity's count for today.
func (u Usage) AddTokens(ctx context.Context, identity string, n int64) error {
	if n <= 0 {
		return nil
	}
	return u.Store.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bUsage)
		if err != nil {
			return err
		}
		k := u.key(identity)
		var cur uint64
		if v := b.Get(k); len(v) == 8 {
			cur = binary.BigEndian.Uint64(v)
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], cur+uint64(n))
		return b.Put(k, buf[:])
	})
}
