package connectors_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/engine"
)

// overloadedEngine is the engine on a saturated machine: every evaluation
// misses its deadline, as engine.Engine reports it.
type overloadedEngine struct{ *engine.Engine }

func (o overloadedEngine) Evaluate(_ context.Context, in engine.Input) engine.Decision {
	d := o.Deny(in, engine.ReasonOverloaded)
	d.RetryAfter = engine.OverloadRetryAfter
	return d
}

// busyChat is a Replier that can be told its reply is a busy one.
type busyChat struct {
	chat
	mu    sync.Mutex
	waits []time.Duration
}

func (b *busyChat) Busy(retryAfter time.Duration) {
	b.mu.Lock()
	b.waits = append(b.waits, retryAfter)
	b.mu.Unlock()
}

// A decision that missed its deadline is answered "busy, try again", not
// with the policy's reply or silence, is recorded as overloaded, runs no
// turn, and a Replier that can mark a busy reply is told how long to wait.
func TestOverloadedMessageIsToldBusy(t *testing.T) {
	tr := &trail{}
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(t), Data: testData(), Recorder: tr})
	if err != nil {
		t.Fatal(err)
	}
	turns := &countingTurns{}
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: overloadedEngine{e}, Turns: turns})
	if err != nil {
		t.Fatal(err)
	}
	want := "The gateway is busy; try again in 5s."
	for _, user := range []string{"alice", "mallory"} {
		t.Run(user, func(t *testing.T) {
			c := &busyChat{}
			before := tr.len()
			if err := r.Handle(context.Background(), msg(user, "hi"), c); err != nil {
				t.Fatal(err)
			}
			if got := c.all(); len(got) != 1 || got[0] != want {
				t.Errorf("told %q, want %q", got, want)
			}
			if !slices.Equal(c.waits, []time.Duration{engine.OverloadRetryAfter}) {
				t.Errorf("Busy called with %v, want [%s]", c.waits, engine.OverloadRetryAfter)
			}
			if tr.len() != before+1 {
				t.Fatalf("%d records, want 1", tr.len()-before)
			}
			tr.mu.Lock()
			rec := tr.recs[len(tr.recs)-1]
			tr.mu.Unlock()
			if !slices.Contains(rec.reasons, engine.ReasonOverloaded) {
				t.Errorf("recorded reasons %v, want %s", rec.reasons, engine.ReasonOverloaded)
			}
		})
	}
	if turns.n() != 0 {
		t.Errorf("%d turns ran for overloaded decisions", turns.n())
	}
}

// busyTurns is a session manager whose turn was shed partway: a tool
// decision of the turn was overloaded and the agent stopped on it.
type busyTurns struct{ countingTurns }

func (b *busyTurns) Turn(ctx context.Context, req connectors.TurnRequest) (string, error) {
	_, _ = b.countingTurns.Turn(ctx, req)
	return "", &connectors.BusyTurnError{RetryAfter: engine.OverloadRetryAfter}
}

// A turn shed on the tool path is answered like a shed message: the busy
// reply (not "the agent could not answer"), and a BusyReplier told how
// long to wait (the local connector's 503 with Retry-After).
func TestBusyTurnIsToldBusy(t *testing.T) {
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(t), Data: testData(), Recorder: &trail{}})
	if err != nil {
		t.Fatal(err)
	}
	turns := &busyTurns{}
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: turns})
	if err != nil {
		t.Fatal(err)
	}
	c := &busyChat{}
	if err := r.Handle(context.Background(), msg("alice", "read my notes"), c); err != nil {
		t.Fatal(err)
	}
	if turns.n() != 1 {
		t.Fatalf("%d turns ran; want 1", turns.n())
	}
	if got, want := c.all(), connectors.BusyReply(engine.OverloadRetryAfter); len(got) != 1 || got[0] != want {
		t.Errorf("told %q, want %q", got, want)
	}
	if !slices.Equal(c.waits, []time.Duration{engine.OverloadRetryAfter}) {
		t.Errorf("Busy called with %v, want [%s]", c.waits, engine.OverloadRetryAfter)
	}
}
