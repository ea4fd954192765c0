package dispatch

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestDispatchKeepsOrderPerKey(t *testing.T) {
	d := New(2, 4)
	var mu sync.Mutex
	got := map[string][]int{}
	for i := range 100 {
		for _, k := range []string{"x", "y", "z"} {
			if err := d.Dispatch(context.Background(), k, func() {
				mu.Lock()
				got[k] = append(got[k], i)
				mu.Unlock()
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	d.Wait()
	for _, k := range []string{"x", "y", "z"} {
		if len(got[k]) != 100 {
			t.Fatalf("key %q ran %d items, want 100", k, len(got[k]))
		}
		for i, v := range got[k] {
			if v != i {
				t.Fatalf("key %q item %d ran as %d: order lost", k, i, v)
			}
		}
	}
}

// TestDispatchFullWaitsForContext fills one chat's queue behind a blocked
// item: the next Dispatch must wait, and give up with ctx's error.
func TestDispatchFullWaitsForContext(t *testing.T) {
	d := New(1, 1)
	release := make(chan struct{})
	started := make(chan struct{})
	if err := d.Dispatch(context.Background(), "k", func() { close(started); <-release }); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := d.Dispatch(context.Background(), "k", func() {}); err != nil { // fills the queue
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Dispatch(ctx, "k", func() {}); !errors.Is(err, context.Canceled) {
		t.Errorf("Dispatch on a full queue = %v, want context.Canceled", err)
	}
	if err := d.Dispatch(ctx, "other", func() {}); !errors.Is(err, context.Canceled) {
		t.Errorf("Dispatch past MaxChats = %v, want context.Canceled", err)
	}
	close(release)
	d.Wait()
}
