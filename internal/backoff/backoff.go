// Package backoff is exponential backoff for reconnect loops, and a sleep
// that ends with its context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Defaults for a zero Min or Max.
const (
	DefaultMin = 500 * time.Millisecond
	DefaultMax = time.Minute
)

// Backoff is exponential backoff with equal jitter: the n-th wait is drawn
// uniformly from [d/2, d], where d = Min·2ⁿ capped at Max. Half of each wait
// is guaranteed, so a flapping peer is never retried at once, and the other
// half is random, so many clients that failed together do not retry
// together. The zero value uses DefaultMin and DefaultMax.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// jitter returns a uniform value in [0, n); a variable so tests can pin it.
var jitter = func(n int64) int64 { return rand.Int64N(n) }

// Next returns how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	d := lo << min(b.n, 16)
	if d > hi || d <= 0 {
		d = hi
	}
	b.n++
	return d/2 + time.Duration(jitter(int64(d/2)+1))
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits d or until ctx ends, reporting whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
