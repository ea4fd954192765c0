package connectors

import (
	"context"
	"sync"
	"time"
)

// Dispatcher runs work for many chats at once while keeping each chat's
// work in arrival order: one goroutine per busy chat, gone when its queue
// is empty. It is bounded: at most MaxChats chats run at once and each
// chat's queue holds at most MaxQueue items; past either bound Dispatch
// waits, so a flood slows the reader instead of growing memory.
type Dispatcher struct {
	mu       sync.Mutex
	queues   map[string]chan func()
	slots    chan struct{}
	maxQueue int
	wg       sync.WaitGroup
}

// NewDispatcher returns a Dispatcher (defaults: 256 chats, 64 per chat).
func NewDispatcher(maxChats, maxQueue int) *Dispatcher {
	if maxChats <= 0 {
		maxChats = 256
	}
	if maxQueue <= 0 {
		maxQueue = 64
	}
	return &Dispatcher{queues: map[string]chan func(){}, slots: make(chan struct{}, maxChats), maxQueue: maxQueue}
}

// Dispatch queues fn for key. It returns ctx's error if ctx ends while
// waiting for room.
func (d *Dispatcher) Dispatch(ctx context.Context, key string, fn func()) error {
	for {
		d.mu.Lock()
		q, ok := d.queues[key]
		if ok {
			select {
			case q <- fn:
				d.mu.Unlock()
				return nil
			default: // full: wait below
			}
			d.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
			continue
		}
		d.mu.Unlock()
		select { // a slot for a new chat
		case d.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		d.mu.Lock()
		if _, raced := d.queues[key]; raced {
			d.mu.Unlock()
			<-d.slots
			continue
		}
		q = make(chan func(), d.maxQueue)
		q <- fn
		d.queues[key] = q
		d.wg.Add(1)
		d.mu.Unlock()
		go d.drain(key, q)
		return nil
	}
}

func (d *Dispatcher) drain(key string, q chan func()) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		select {
		case fn := <-q:
			d.mu.Unlock()
			fn()
		default:
			delete(d.queues, key)
			d.mu.Unlock()
			<-d.slots
			return
		}
	}
}

// Wait waits until all dispatched work has run.
func (d *Dispatcher) Wait() { d.wg.Wait() }

// Backoff is exponential backoff with full jitter for reconnect loops.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// Next returns how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 500 * time.Millisecond
	}
	if hi <= 0 {
		hi = time.Minute
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
