package connectors_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- connectors.RunAll(ctx, nil, zerolog.Nop(), healthy, refused, panicky) }()
	deadline := time.Now().Add(10 * time.Second)
	for panicky.starts.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if healthy.starts.Load() != 1 {
		t.Errorf("healthy connector started %d times, want 1", healthy.starts.Load())
	}
	if panicky.starts.Load() != 2 {
		t.Errorf("panicking connector started %d times, want a restart", panicky.starts.Load())
	}
	cancel()
	err := <-done
	if !errors.Is(err, connectors.ErrUnauthorized) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("RunAll = %v, want the refused connector's error", err)
	}
	if refused.starts.Load() != 1 {
		t.Errorf("refused connector started %d times, want 1 (never retried)", refused.starts.Load())
	}
}

func wrap(err error) error { return &wrapped{err} }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "platform said no: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
