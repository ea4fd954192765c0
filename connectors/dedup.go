package connectors

import (
	"sync"
	"time"
)

// Dedup remembers message keys for a while so a redelivered message is
// handled once. It is bounded twice: keys expire after TTL, and past Max keys
// the oldest are forgotten first. Order of arrival does not matter: a key is
// either seen or not, so out-of-order deliveries are neither replayed nor
// dropped.
type Dedup struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	now   func() time.Time
	seen  map[string]time.Time
	order []string // arrival order, for expiry and eviction; a ring from head
	head  int
}

// NewDedup returns a Dedup holding at most max keys for ttl each.
func NewDedup(max int, ttl time.Duration) *Dedup {
	if max <= 0 {
		max = 100000
	}
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	return &Dedup{ttl: ttl, max: max, now: time.Now, seen: make(map[string]time.Time)}
}

// First records key and reports whether this is its first sighting within
// the window.
func (d *Dedup) First(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	d.expire(now)
	if _, ok := d.seen[key]; ok {
		return false
	}
	if len(d.seen) >= d.max {
		d.evictOldest()
	}
	d.seen[key] = now
	d.order = append(d.order, key)
	return true
}

// Seen reports whether key is remembered, without recording it.
func (d *Dedup) Seen(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(d.now())
	_, ok := d.seen[key]
	return ok
}

// Forget removes key, so a message whose handling failed before anything
// was done can be delivered again.
func (d *Dedup) Forget(key string) {
	d.mu.Lock()
	delete(d.seen, key)
	d.mu.Unlock()
}

// Len is the number of keys remembered.
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}

func (d *Dedup) expire(now time.Time) {
	for d.head < len(d.order) {
		k := d.order[d.head]
		t, ok := d.seen[k]
		if ok && now.Sub(t) < d.ttl {
			break
		}
		if ok {
			delete(d.seen, k)
		}
		d.head++
	}
	d.compact()
}

func (d *Dedup) evictOldest() {
	for d.head < len(d.order) {
		k := d.order[d.head]
		d.head++
		if _, ok := d.seen[k]; ok {
			delete(d.seen, k)
			break
		}
	}
	d.compact()
}

// compact drops the consumed front of order once it is half the slice.
func (d *Dedup) compact() {
	if d.head > 1024 && d.head*2 > len(d.order) {
		d.order = append(d.order[:0:0], d.order[d.head:]...)
		d.head = 0
	}
}
