package runtime

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Cold starts without a pool (Containerd.Start runs through the start
// bound) and a pool sharing the bound: a burst of starts from both never
// has more than the bound under way at once, a start waiting for a slot
// ends with its context and an error naming the wait, and no slot leaks.
func TestStartBoundColdAndPoolShare(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pool     bool // a pool shares the bound; half the burst claims through it
		parallel int
		burst    int
	}{
		{name: "cold starts alone", parallel: 4, burst: 200},
		{name: "cold starts and a pool", pool: true, parallel: 4, burst: 200},
		{name: "bound of one", pool: true, parallel: 1, burst: 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newStartBound(tc.parallel)
				f := &fakePool{startFor: 300 * time.Millisecond}
				var p *Pool
				if tc.pool {
					p = newPoolOn(f, PoolOptions{Size: 1, Max: 8}, b)
				}
				// cold is what Containerd.Start does: the start in a slot.
				cold := func(ctx context.Context, i int) (Sandbox, error) {
					return b.run(ctx, func() (Sandbox, error) { return f.startCold(ctx, fakeSpec(i)) })
				}
				ctx := context.Background()
				var wg sync.WaitGroup
				errs := make(chan error, tc.burst)
				for i := range tc.burst {
					wg.Go(func() {
						var err error
						if p != nil && i%2 == 0 {
							_, err = p.Start(ctx, fakeSpec(i))
						} else {
							_, err = cold(ctx, i)
						}
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("a start in the burst: %v", err)
					}
				}
				if got := f.snapshot().maxStarting; got > tc.parallel {
					t.Errorf("%d starts ran at once, want at most the bound %d", got, tc.parallel)
				}

				// The pool's refills end with its Close (they hold slots
				// of the shared bound until then).
				if p != nil {
					cctx, ccancel := context.WithTimeout(ctx, time.Second)
					defer ccancel()
					if err := p.Close(cctx); err != nil {
						t.Fatalf("pool close: %v", err)
					}
				}
				// Every slot taken by wedged starts: a cold start waits,
				// then gives up with its context.
				release := make(chan struct{})
				for range tc.parallel {
					go b.run(ctx, func() (Sandbox, error) { <-release; return nil, nil })
				}
				synctest.Wait()
				wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				t0 := time.Now()
				_, err := cold(wctx, -1)
				if err == nil || !strings.Contains(err.Error(), "start slot") || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("cold start behind taken slots = %v, want the slot wait's deadline", err)
				}
				if took := time.Since(t0); took != 2*time.Second {
					t.Errorf("the wait ended after %s, want the context's 2s", took)
				}
				close(release)
				synctest.Wait()
				b.mu.Lock()
				defer b.mu.Unlock()
				if b.starting != 0 || b.waiting != 0 {
					t.Errorf("after the burst: %d slots taken, %d waiting; want none (a slot leaked)", b.starting, b.waiting)
				}
			})
		})
	}
}

// The runtime's Start goes through its bound: NewContainerd makes one of
// StartParallel slots (the default when 0) and NewPool shares it.
func TestContainerdStartBoundWiring(t *testing.T) {
	c, err := NewContainerd(context.Background(), ContainerdOptions{Address: t.TempDir() + "/none.sock", StartParallel: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.starts == nil || c.starts.parallel != 3 {
		t.Fatalf("Containerd's start bound = %+v, want 3 slots", c.starts)
	}
	p, err := c.NewPool(PoolOptions{Dir: t.TempDir() + "/pool"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if p.b != c.starts {
		t.Fatal("the pool has a start bound of its own, want the runtime's (pool and cold starts together under one bound)")
	}
	// Every slot taken: Start waits and fails naming the wait, before
	// it touches containerd.
	for range 3 {
		if err := c.starts.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Start(ctx, Spec{SessionID: "s1", Image: "img"}); err == nil || !strings.Contains(err.Error(), "start slot") {
		t.Fatalf("Start with every slot taken = %v, want the slot wait", err)
	}
}
