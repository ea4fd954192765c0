package modelproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// MemoryUsage is a Usage kept in memory, per identity per UTC day. The
// gateway's store (sessions.Usage) persists it; this one is for tests and
// single runs. A mutex around read, add and write makes Reserve atomic.
type MemoryUsage struct {
	mu  sync.Mutex
	day string
	m   map[string]int64
	res map[string]memReservation
	Now func() time.Time
}

type memReservation struct {
	day, identity string
	tokens        int64
}

func (u *MemoryUsage) today() string {
	now := time.Now
	if u.Now != nil {
		now = u.Now
	}
	d := now().UTC().Format(time.DateOnly)
	if d != u.day {
		u.day, u.m = d, map[string]int64{}
	}
	if u.res == nil {
		u.res = map[string]memReservation{}
	}
	return d
}

// TokensToday returns identity's count, reservations included.
func (u *MemoryUsage) TokensToday(_ context.Context, identity string) (int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.today()
	return u.m[identity], nil
}

// AddTokens adds n tokens to identity's count.
func (u *MemoryUsage) AddTokens(_ context.Context, identity string, n int64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.today()
	u.m[identity] += max(n, 0)
	return nil
}

// Reserve implements Usage.
func (u *MemoryUsage) Reserve(_ context.Context, identity string, n int64) (string, int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	day := u.today()
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	before := u.m[identity]
	u.m[identity] = before + n
	u.res[id] = memReservation{day: day, identity: identity, tokens: n}
	return id, before, nil
}

// Settle implements Usage.
func (u *MemoryUsage) Settle(_ context.Context, id string, actual int64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	day := u.today()
	r, ok := u.res[id]
	if !ok {
		return nil
	}
	delete(u.res, id)
	if r.day == day {
		u.m[r.identity] = max(u.m[r.identity]-r.tokens+max(actual, 0), 0)
	}
	return nil
}
