package connectors_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/connectors"
)

// scripted is a Connector whose Run does what run says, counting starts.
type scripted struct {
	name   string
	starts atomic.Int64
	run    func(ctx context.Context, n int64) error
}

func (s *scripted) Name() string { return s.name }
func (s *scripted) Run(ctx context.Context, _ connectors.Handler) error {
	return s.run(ctx, s.starts.Add(1))
}

func TestRunAllIsolatesFailures(t *testing.T) {
	healthy := &scripted{name: "healthy", run: func(ctx context.Context, _ int64) error { <-ctx.Done(); return nil }}
	refused := &scripted{name: "refused", run: func(context.Context, int64) error { return wrap(connectors.ErrUnauthorized) }}
	panicky := &scripted{name: "panicky", run: func(ctx context.Context, n int64) error {
		if n == 1 {
			panic("boom")
		}
		<-ctx.Done()
		return nil
	}}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- connectors.RunAll(ctx, nil, zerolog.Nop(), healthy, refused, panicky) }()
		synctest.Wait() // every connector started; the panicking one waits out its backoff
		if n := panicky.starts.Load(); n != 1 {
			t.Fatalf("panicking connector started %d times before any time passed, want 1 (a restart waits its backoff)", n)
		}
		// Fake time: the first backoff is drawn from [Min/2, Min] = [0.5 s, 1 s].
		time.Sleep(500*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		if n := panicky.starts.Load(); n != 1 {
			t.Fatalf("panicking connector restarted %d times within half the first backoff, want 0", n-1)
		}
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if n := panicky.starts.Load(); n != 2 {
			t.Fatalf("panicking connector started %d times one full backoff later, want 2 (one restart)", n)
		}
		time.Sleep(time.Hour) // the refused connector is never retried, however long
		synctest.Wait()
		if healthy.starts.Load() != 1 {
			t.Errorf("healthy connector started %d times, want 1", healthy.starts.Load())
		}
		if panicky.starts.Load() != 2 {
			t.Errorf("panicking connector started %d times, want one restart", panicky.starts.Load())
		}
		cancel()
		err := <-done
		if !errors.Is(err, connectors.ErrUnauthorized) || !strings.Contains(err.Error(), "refused") {
			t.Errorf("RunAll = %v, want the refused connector's error", err)
		}
		if refused.starts.Load() != 1 {
			t.Errorf("refused connector started %d times, want 1 (never retried)", refused.starts.Load())
		}
	})
}

func wrap(err error) error { return &wrapped{err} }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "platform said no: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
