// Package keylock serialises work per key (one chat, one session) without
// growing: an entry lives only while someone holds or waits for it.
package keylock

import "sync"

// Locks is a set of per-key mutexes. The zero value is not usable; call New.
type Locks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// New returns an empty Locks.
func New() *Locks { return &Locks{m: make(map[string]*keyLock)} }

// Lock locks key and returns its unlock.
func (k *Locks) Lock(key string) func() {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// Len is the number of keys held or waited for.
func (k *Locks) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
