package keylock

import (
	"sync"
	"testing"
)

// TestLockSerialisesPerKeyAndForgets runs many goroutines on a few keys:
// the race detector and the unguarded counters catch two holders of one key,
// and Len shows no entry outlives its last holder.
func TestLockSerialisesPerKeyAndForgets(t *testing.T) {
	l := New()
	keys := []string{"a", "b", "c"}
	counts := make([]int, len(keys))
	var wg sync.WaitGroup
	for range 50 {
		for i, k := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				unlock := l.Lock(k)
				counts[i]++ // guarded only by the key lock
				unlock()
			}()
		}
	}
	wg.Wait()
	for i, c := range counts {
		if c != 50 {
			t.Errorf("key %q ran %d times, want 50", keys[i], c)
		}
	}
	if n := l.Len(); n != 0 {
		t.Errorf("Len() = %d after every unlock, want 0", n)
	}
}

func TestLockDistinctKeysDoNotBlock(t *testing.T) {
	l := New()
	unlockA := l.Lock("a")
	defer unlockA()
	unlockB := l.Lock("b") // would deadlock if keys shared a lock
	if n := l.Len(); n != 2 {
		t.Errorf("Len() = %d with two keys held, want 2", n)
	}
	unlockB()
	if n := l.Len(); n != 1 {
		t.Errorf("Len() = %d with one key held, want 1", n)
	}
}
