// Package ratelimit enforces the token buckets that policies name.
//
// A bucket is identified by a key chosen by policy ("message:telegram:123",
// "tool:<session id>") and refills at a rate (tokens per second) up to a
// burst. The rate and burst travel with every call, so a policy change takes
// effect on the next check without a restart.
//
// Memory is bounded: a bucket that has refilled to its burst is
// indistinguishable from a bucket that does not exist, so such buckets are
// dropped whenever a shard grows past its share of MaxBuckets. Dropping them
// loses no state. If a shard is still full after that sweep, the check fails
// closed: the caller is told to wait, and Limiter.Full counts it.
//
// Buckets survive a restart through Snapshot and Restore (WriteFile and
// ReadFile for a file): a restored bucket refills for the time it was
// down, as it would have had the process kept running, and no more.
package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const shards = 64

// DefaultMaxBuckets bounds the number of live buckets when Options leaves it 0.
const DefaultMaxBuckets = 1 << 20

// Limiter holds token buckets. The zero value is not usable; call New.
type Limiter struct {
	seed     maphash.Seed
	perShard int
	now      func() time.Time
	full     atomic.Uint64
	changes  atomic.Uint64 // spends and refunds, for Changes
	shard    [shards]shard
}

type shard struct {
	mu sync.Mutex
	m  map[string]*bucket
	_  [40]byte // keep shards on separate cache lines
}

type bucket struct {
	tokens      float64
	rate, burst float64 // as of the last check
	last        int64   // unix nanoseconds of the last refill
}

// Options configure a Limiter.
type Options struct {
	// MaxBuckets bounds live buckets (default DefaultMaxBuckets).
	MaxBuckets int
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// New returns an empty Limiter.
func New(opts Options) *Limiter {
	if opts.MaxBuckets <= 0 {
		opts.MaxBuckets = DefaultMaxBuckets
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Limiter{seed: maphash.MakeSeed(), perShard: max(1, opts.MaxBuckets/shards), now: opts.Now}
	for i := range l.shard {
		l.shard[i].m = make(map[string]*bucket)
	}
	return l
}

// Allow takes one token from the bucket key, which refills at rate tokens
// per second up to burst. It reports whether a token was taken and, if not,
// how long until one will be there (0 when the bucket never refills).
// A rate or burst that is negative, NaN or infinite is refused: the caller
// must treat it as a broken policy. It never allocates once the bucket
// exists.
func (l *Limiter) Allow(key string, rate, burst float64) (ok bool, retryAfter time.Duration) {
	now := l.now().UnixNano()
	s := &l.shard[hashKey(l, key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, found := s.m[key]
	if !found {
		if len(s.m) >= l.perShard && !s.sweep(now, l.perShard) {
			l.full.Add(1)
			return false, time.Second
		}
		b = &bucket{tokens: burst, last: now}
		s.m[key] = b
	}
	ok, retryAfter = b.take(now, rate, burst)
	if ok {
		l.changes.Add(1)
	}
	return ok, retryAfter
}

func hashKey(l *Limiter, key string) uint64 { return maphash.String(l.seed, key) % shards }

// Refund puts back a token taken by Allow, for a caller that took tokens
// from several buckets and must undo the ones before a refusal.
func (l *Limiter) Refund(key string, burst float64) {
	s := &l.shard[hashKey(l, key)]
	s.mu.Lock()
	if b, ok := s.m[key]; ok {
		b.tokens = math.Min(burst, b.tokens+1)
		l.changes.Add(1)
	}
	s.mu.Unlock()
}

// Len is the number of live buckets.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shard {
		l.shard[i].mu.Lock()
		n += len(l.shard[i].m)
		l.shard[i].mu.Unlock()
	}
	return n
}

// Full counts checks refused because the limiter was at MaxBuckets.
func (l *Limiter) Full() uint64 { return l.full.Load() }

// Valid reports whether rate and burst describe a usable bucket.
func Valid(rate, burst float64) bool {
	return rate >= 0 && burst >= 0 && !math.IsInf(rate, 0) && !math.IsInf(burst, 0) &&
		!math.IsNaN(rate) && !math.IsNaN(burst)
}

func (b *bucket) take(now int64, rate, burst float64) (bool, time.Duration) {
	b.rate, b.burst = rate, burst
	if elapsed := now - b.last; elapsed > 0 {
		b.tokens = math.Min(burst, b.tokens+float64(elapsed)/1e9*rate)
		b.last = now
	}
	if b.tokens > burst { // the policy lowered the burst
		b.tokens = burst
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if rate <= 0 {
		return false, 0
	}
	wait := time.Duration((1 - b.tokens) / rate * 1e9)
	return false, max(wait, time.Millisecond)
}

// sweep drops buckets that have refilled to their burst (they hold no
// state a fresh bucket would not) and reports whether there is room for one
// more.
func (s *shard) sweep(now int64, limit int) bool {
	for k, b := range s.m {
		if b.tokens+float64(now-b.last)/1e9*b.rate >= b.burst {
			delete(s.m, k)
		}
	}
	return len(s.m) < limit
}
