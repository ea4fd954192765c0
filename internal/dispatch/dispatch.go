// Package dispatch runs work for many keys (chats) at once while keeping
// each key's work in arrival order, with bounded memory.
package dispatch

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

// New returns a Dispatcher (defaults: 256 chats, 64 per chat).
func New(maxChats, maxQueue int) *Dispatcher {
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
