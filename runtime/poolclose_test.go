package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The pool's logic (refill, sizing, Close, cleanup) against a fake
// backend: no containerd, and fake time (synctest), so a start that takes
// 300 ms or never ends costs the test nothing.

// fakePool is a poolBackend whose sandboxes are counters. A start takes
// startFor (fake time) or, when wedged, until its context ends; a remove
// blocks until its context ends when removeWedged.
type fakePool struct {
	startFor     time.Duration
	wedged       bool
	failStart    bool // a start fails half-way: a sandbox to clean up and an error
	removeWedged bool

	mu           sync.Mutex
	starting     int // starts under way
	maxStarting  int
	waiting      int // started, not claimed or removed: what the pool holds
	maxWaiting   int
	started      int
	removed      int
	cold         int
	removeHadDDL []bool // for each remove, whether its context had a deadline
}

type fakeSandbox struct {
	Sandbox
	pooled bool
}

func (f *fakePool) startPooled(ctx context.Context, _ Spec) (*pooled, error) {
	f.mu.Lock()
	f.starting++
	f.maxStarting = max(f.maxStarting, f.starting)
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.starting--; f.mu.Unlock() }()
	var wait <-chan time.Time
	if !f.wedged {
		wait = time.After(f.startFor)
	}
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started++
	f.waiting++
	f.maxWaiting = max(f.maxWaiting, f.waiting)
	w := &pooled{stage: fmt.Sprintf("fake-%d", f.started)}
	if f.failStart {
		return w, errors.New("start task: the shim died")
	}
	return w, nil
}

func (f *fakePool) claimPooled(context.Context, *pooled, Spec) (Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waiting--
	return fakeSandbox{pooled: true}, nil
}

func (f *fakePool) removePooled(ctx context.Context, w *pooled) error {
	_, ddl := ctx.Deadline()
	f.mu.Lock()
	f.removeHadDDL = append(f.removeHadDDL, ddl)
	f.mu.Unlock()
	if f.removeWedged {
		<-ctx.Done()
		return fmt.Errorf("sandbox %s not removed: %w", w.stage, ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waiting--
	f.removed++
	return nil
}

func (f *fakePool) startCold(ctx context.Context, _ Spec) (Sandbox, error) {
	f.mu.Lock()
	f.starting++
	f.maxStarting = max(f.maxStarting, f.starting)
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.starting--; f.mu.Unlock() }()
	select {
	case <-time.After(f.startFor):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cold++
	return fakeSandbox{}, nil
}

func (f *fakePool) snapshot() fakePool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fakePool{maxStarting: f.maxStarting, waiting: f.waiting, maxWaiting: f.maxWaiting,
		started: f.started, removed: f.removed, cold: f.cold, removeHadDDL: append([]bool(nil), f.removeHadDDL...)}
}

func fakeSpec(i int) Spec { return Spec{SessionID: fmt.Sprintf("s%d", i), Image: "img"} }

// A burst of claims: at most Parallel starts run at once, cold and
// refill together; a claim with nothing ready waits for a slot or a ready
// sandbox, and waiting claims go before refills, so the burst is served
// in ceil(claims/Parallel) start times. Claims of ready sandboxes are
// instant. The pool grows toward its maximum while claims keep coming and
// never past it, and once they stop for a rate window it shrinks back to
// its size.
func TestPoolRefillKeepsUpWithBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakePool{startFor: 300 * time.Millisecond}
		p := newPool(f, PoolOptions{Size: 1, Max: 8, Parallel: 4})
		ctx := context.Background()
		if _, err := p.Start(ctx, fakeSpec(0)); err != nil { // teaches the profile
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		ready := p.Ready(fakeSpec(0))
		if ready < 1 {
			t.Fatalf("after the first session the pool holds %d, want at least its size 1", ready)
		}
		const claims = 20
		var wg sync.WaitGroup
		took := make([]time.Duration, claims)
		pooled := make([]bool, claims)
		for i := range claims {
			wg.Go(func() {
				t0 := time.Now()
				sb, err := p.Start(ctx, fakeSpec(i+1))
				if err != nil {
					t.Error(err)
					return
				}
				took[i] = time.Since(t0)
				pooled[i] = sb.(fakeSandbox).pooled
			})
		}
		wg.Wait()
		instant, longest := 0, time.Duration(0)
		for i := range took {
			if took[i] == 0 {
				instant++
			}
			longest = max(longest, took[i])
		}
		if instant < ready {
			t.Errorf("%d claims were served at once with %d sandboxes ready", instant, ready)
		}
		rounds := (claims - ready + 3) / 4
		if want := time.Duration(rounds) * f.startFor; longest > want {
			t.Errorf("the slowest claim took %s, want at most %d rounds of 4 starts (%s): claims waited behind refills", longest, rounds, want)
		}
		time.Sleep(5 * time.Second) // refills finish
		s := f.snapshot()
		if s.maxStarting > 4 {
			t.Errorf("%d starts ran at once, more than the bound of 4", s.maxStarting)
		}
		if s.maxStarting < 4 {
			t.Errorf("at most %d starts ran at once during a burst of %d claims; want the bound, 4", s.maxStarting, claims)
		}
		if s.maxWaiting > 8 {
			t.Errorf("the pool held %d sandboxes at once, more than its maximum of 8", s.maxWaiting)
		}
		if n := p.Ready(fakeSpec(0)); n != 8 {
			t.Errorf("after a burst of %d claims the pool holds %d, want its maximum 8", claims, n)
		}
		time.Sleep(PoolRateWindow + time.Second) // no claims for a window
		if n := p.Ready(fakeSpec(0)); n != 1 {
			t.Errorf("a rate window after the burst the pool holds %d, want its size 1", n)
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if s := f.snapshot(); s.waiting != 0 {
			t.Errorf("%d sandboxes left after Close", s.waiting)
		}
	})
}

// A claim waiting for a start slot gives up when its context ends, with
// an error naming the wait, and leaks no slot; Close lets waiting claims
// start cold.
func TestPoolClaimWaitEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakePool{wedged: true}
		p := newPool(f, PoolOptions{Size: 1, Parallel: 1})
		ctx := context.Background()
		if _, err := p.Start(ctx, fakeSpec(0)); err != nil { // cold (wedged only pooled starts)
			t.Fatal(err)
		}
		synctest.Wait() // the refill holds the only slot, wedged
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		t0 := time.Now()
		_, err := p.Start(wctx, fakeSpec(1))
		if err == nil || !strings.Contains(err.Error(), "start slot") || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Start behind a wedged slot = %v, want the slot wait's deadline", err)
		}
		if took := time.Since(t0); took != 2*time.Second {
			t.Errorf("the wait ended after %s, want the context's 2s", took)
		}
		done := make(chan error, 1)
		go func() { _, err := p.Start(ctx, fakeSpec(2)); done <- err }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("a claim did not wait for the taken slot: %v", err)
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		defer ccancel()
		_ = p.Close(cctx) // the wedged refill is reported; the waiting claim starts cold
		if err := <-done; err != nil {
			t.Fatalf("the waiting claim after Close: %v", err)
		}
	})
}

// Without a maximum the pool is fixed at its size: claims never grow it.
func TestPoolFixedSizeWithoutMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakePool{startFor: 300 * time.Millisecond}
		p := newPool(f, PoolOptions{Size: 2})
		ctx := context.Background()
		for i := range 10 {
			if _, err := p.Start(ctx, fakeSpec(i)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Second)
		if s := f.snapshot(); s.maxWaiting > 2 || p.Ready(fakeSpec(0)) != 2 {
			t.Errorf("pool of size 2 without a maximum held up to %d and now %d", s.maxWaiting, p.Ready(fakeSpec(0)))
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// A pooled start that fails half-way leaves a sandbox to remove; that
// cleanup is bounded by PoolCleanupTimeout even when containerd is wedged
// (the refill's own context may be cancelled or have no deadline), so the
// refill ends and Close is not held by it.
func TestPoolFailedStartCleanupBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakePool{startFor: 300 * time.Millisecond, failStart: true, removeWedged: true}
		p := newPool(f, PoolOptions{Size: 1})
		ctx := context.Background()
		t0 := time.Now()
		if _, err := p.Start(ctx, fakeSpec(0)); err != nil { // the refill starts alongside
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		<-done // a wedged cleanup without a deadline deadlocks here (synctest says so)
		if took := time.Since(t0); took != f.startFor+PoolCleanupTimeout {
			t.Errorf("the refill with a wedged cleanup ended after %s, want the start %s + PoolCleanupTimeout %s", took, f.startFor, PoolCleanupTimeout)
		}
		if s := f.snapshot(); len(s.removeHadDDL) != 1 || !s.removeHadDDL[0] {
			t.Errorf("cleanup removes %v: want one, under a deadline", s.removeHadDDL)
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// Close is bounded however containerd behaves: a refill's sandbox start
// stuck in a wedged containerd (one that ignores even the cancellation)
// holds Close only until the deadline, from the caller's context or
// PoolCloseTimeout; a start that honours cancellation lets Close return
// at once.
func TestPoolCloseBounded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration // 0: the caller gives none
		honours  bool          // the stuck start returns when cancelled
		took     time.Duration
		wantErr  bool
	}{
		{name: "wedged, no deadline: the default bounds it", took: PoolCloseTimeout, wantErr: true},
		{name: "wedged, caller's deadline", deadline: 2 * time.Second, took: 2 * time.Second, wantErr: true},
		{name: "start honours cancellation", honours: true, took: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPool(&fakePool{}, PoolOptions{})
				wedge := make(chan struct{})
				defer close(wedge)
				p.wg.Add(1)
				go func() { // a refill inside a start
					defer p.wg.Done()
					if tc.honours {
						<-p.refills.Done()
						return
					}
					<-wedge
				}()
				ctx := context.Background()
				if tc.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.deadline)
					defer cancel()
				}
				start := time.Now()
				err := p.Close(ctx)
				if took := time.Since(start); took != tc.took {
					t.Errorf("Close took %s, want %s", took, tc.took)
				}
				if (err != nil) != tc.wantErr {
					t.Fatalf("Close: %v, want an error: %v", err, tc.wantErr)
				}
				if tc.wantErr && (!errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "start still under way")) {
					t.Fatalf("Close's error does not say what was left: %v", err)
				}
			})
		})
	}
}

// A refill that finishes after Close removes its sandbox instead of
// leaving it ready in a closed pool; Close removes what was waiting.
func TestPoolCloseRemovesEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakePool{startFor: time.Second}
		p := newPool(f, PoolOptions{Size: 3, Max: 3})
		ctx := context.Background()
		if _, err := p.Start(ctx, fakeSpec(0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // some ready, some under way
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if s := f.snapshot(); s.waiting != 0 {
			t.Errorf("%d sandboxes left after Close (started %d, removed %d)", s.waiting, s.started, s.removed)
		}
		if _, err := p.Start(ctx, fakeSpec(1)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if s := f.snapshot(); s.waiting != 0 {
			t.Errorf("a closed pool refilled: %d waiting", s.waiting)
		}
	})
}
