package sessions

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/runtime"
)

// A turn that runs longer than the idle time keeps its sandbox: the
// reaper never stops a sandbox with a turn in flight, and the idle clock
// starts when the turn ends. The fake agent blocks until released; the
// test's clock moves only while the turn is parked there (the channels
// order every read of it).
func TestReapSparesTurnInFlight(t *testing.T) {
	ctx := context.Background()
	m, rt, now := newManager(t, testData())
	entered, release := make(chan struct{}), make(chan struct{})
	rt.script = func(runtime.Turn, turnInput) string {
		entered <- struct{}{}
		<-release
		return "done"
	}
	type result struct {
		reply string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		r, err := m.Turn(ctx, turn("dev", "alice", "long"))
		done <- result{r, err}
	}()
	<-entered

	*now = now.Add(30 * time.Minute) // three idle times into the turn
	if err := m.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if rt.running() != 1 || m.Active() != 1 {
		t.Fatalf("the reaper stopped a sandbox in the middle of a turn (running %d, active %d)", rt.running(), m.Active())
	}

	close(release)
	if r := <-done; r.err != nil || !strings.Contains(r.reply, "done") {
		t.Fatalf("turn: %q, %v", r.reply, r.err)
	}
	for _, step := range []struct {
		advance time.Duration
		running int
		why     string
	}{
		{9 * time.Minute, 1, "reaped 9 minutes after its turn ended (the idle clock started at the turn's start)"},
		{2 * time.Minute, 0, "not reaped 11 minutes after its turn ended"},
	} {
		*now = now.Add(step.advance)
		if err := m.Reap(ctx); err != nil {
			t.Fatal(err)
		}
		if rt.running() != step.running || m.Active() != step.running {
			t.Fatalf("sandbox %s: running %d, active %d", step.why, rt.running(), m.Active())
		}
	}
}
