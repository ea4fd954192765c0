package sessions

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/runtime"
)

// exitRuntime starts sandboxes whose every turn exits with code.
type exitRuntime struct{ code int }

func (r exitRuntime) Start(context.Context, runtime.Spec) (runtime.Sandbox, error) {
	return exitSandbox(r), nil
}

type exitSandbox exitRuntime

func (exitSandbox) ID() string                 { return "exit" }
func (exitSandbox) Stop(context.Context) error { return nil }
func (s exitSandbox) Exec(_ context.Context, t runtime.Turn) (runtime.Result, error) {
	_, _ = io.Copy(io.Discard, t.Stdin)
	_, _ = io.WriteString(t.Stderr, "agent: the gateway is busy; try again in 5s\n")
	return runtime.Result{ExitCode: s.code}, nil
}

// An agent that stopped on the gateway's busy answer (exit 75) ends the
// turn as connectors.BusyTurnError, so the router says busy; any other
// failing exit is still "The agent failed: …".
func TestBusyAgentExitIsBusyTurn(t *testing.T) {
	for _, tc := range []struct {
		code     int
		wantBusy bool
	}{{agent.ExitBusy, true}, {1, false}} {
		m, _, _ := newManager(t, testData())
		m.opts.Runtimes = map[string]Sandboxes{"containerd": exitRuntime{tc.code}}
		reply, err := m.Turn(context.Background(), turn("dev", "alice", "hi"))
		var be *connectors.BusyTurnError
		switch {
		case tc.wantBusy && (!errors.As(err, &be) || be.RetryAfter != engine.OverloadRetryAfter):
			t.Errorf("exit %d: reply %q err %v; want *connectors.BusyTurnError after %s", tc.code, reply, err, engine.OverloadRetryAfter)
		case !tc.wantBusy && (err != nil || reply == ""):
			t.Errorf("exit %d: reply %q err %v; want the failure said as a reply", tc.code, reply, err)
		}
	}
}
