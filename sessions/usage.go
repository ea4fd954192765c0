package sessions

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bUsage        = []byte("usage")              // "YYYY-MM-DD\x00identity" -> uint64 tokens
	bReservations = []byte("usage-reservations") // "YYYY-MM-DD/<hex>" -> reservation
)

// Usage is the model token count per identity per UTC day, persisted in
// the session store so a restart does not reset anybody's budget. It
// implements modelproxy.Usage.
//
// A budget is a cap because a call's worst case is reserved before the
// call goes out: Reserve adds it to the day's count in one bbolt write
// transaction (bbolt runs one writer at a time, so read, add and write
// cannot interleave between concurrent calls) and records the reservation
// in the same file. Settle then replaces the reserved tokens with what the
// call really used. A reservation is part of the count from the moment it
// is made, so one that is never settled (the process died mid-call) stays
// counted at its reserved value across the restart: that is its
// settlement. Reservations of earlier days are deleted by the next
// Reserve; settling one after that changes nothing.
type Usage struct {
	Store *Store
	Now   func() time.Time
}

type reservation struct {
	Key    string `json:"key"` // the bUsage key it was added to
	Tokens int64  `json:"tokens"`
}

func (u Usage) now() time.Time {
	if u.Now != nil {
		return u.Now().UTC()
	}
	return time.Now().UTC()
}

func (u Usage) key(identity string) []byte {
	return []byte(u.now().Format(time.DateOnly) + "\x00" + identity)
}

func getCount(b *bolt.Bucket, k []byte) int64 {
	if v := b.Get(k); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func putCount(b *bolt.Bucket, k []byte, n int64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(max(n, 0)))
	return b.Put(k, buf[:])
}

// TokensToday returns the tokens identity used today, reservations of
// calls still running included.
func (u Usage) TokensToday(ctx context.Context, identity string) (int64, error) {
	var n int64
	err := u.Store.view(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bUsage); b != nil {
			n = getCount(b, u.key(identity))
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
		return putCount(b, k, getCount(b, k)+n)
	})
}

// Reserve adds n tokens to identity's count for today and returns the
// reservation's ID and the count before it, in one transaction.
func (u Usage) Reserve(ctx context.Context, identity string, n int64) (id string, before int64, err error) {
	if n < 0 {
		return "", 0, errors.New("sessions: a reservation cannot be negative")
	}
	today := u.now().Format(time.DateOnly)
	id = today + "/" + newID()
	err = u.Store.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bUsage)
		if err != nil {
			return err
		}
		rb, err := tx.CreateBucketIfNotExists(bReservations)
		if err != nil {
			return err
		}
		if err := pruneReservations(rb, today); err != nil {
			return err
		}
		k := u.key(identity)
		before = getCount(b, k)
		if err := putCount(b, k, before+n); err != nil {
			return err
		}
		v, err := json.Marshal(reservation{Key: string(k), Tokens: n})
		if err != nil {
			return err
		}
		return rb.Put([]byte(id), v)
	})
	if err != nil {
		return "", 0, err
	}
	return id, before, nil
}

// pruneReservations deletes reservations made before today: they stay
// counted at their reserved value.
func pruneReservations(rb *bolt.Bucket, today string) error {
	c := rb.Cursor()
	var old [][]byte
	for k, _ := c.First(); k != nil && bytes.Compare(k, []byte(today)) < 0; k, _ = c.Next() {
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := rb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Settle replaces reservation id's tokens with actual, the tokens the
// call really used (0 releases it). Settling an unknown or already settled
// reservation changes nothing.
func (u Usage) Settle(ctx context.Context, id string, actual int64) error {
	return u.Store.update(ctx, func(tx *bolt.Tx) error {
		rb := tx.Bucket(bReservations)
		if rb == nil {
			return nil
		}
		v := rb.Get([]byte(id))
		if v == nil {
			return nil
		}
		var r reservation
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("reservation %s: %w", id, err)
		}
		b, err := tx.CreateBucketIfNotExists(bUsage)
		if err != nil {
			return err
		}
		k := []byte(r.Key)
		if err := putCount(b, k, getCount(b, k)-r.Tokens+max(actual, 0)); err != nil {
			return err
		}
		return rb.Delete([]byte(id))
	})
}
