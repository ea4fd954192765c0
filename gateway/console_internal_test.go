package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/console"
)

// fakeConn runs fn as its Run.
type fakeConn struct {
	fn func(ctx context.Context) error
}

func (f fakeConn) Name() string                                        { return "c1" }
func (f fakeConn) Run(ctx context.Context, _ connectors.Handler) error { return f.fn(ctx) }

// TestConnectorStatesForTheConsole: what the health page says of a
// connector after each way its Run can end.
func TestConnectorStatesForTheConsole(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name      string
		ctx       context.Context
		fn        func(ctx context.Context) error
		state     string
		why       string
		wantPanic bool
	}{
		{"failed", context.Background(), func(context.Context) error { return errors.New("dial tcp: refused") }, console.ConnectorBackingOff, "dial tcp: refused; restarting with backoff", false},
		{"returned early", context.Background(), func(context.Context) error { return nil }, console.ConnectorBackingOff, "returned before shutdown", false},
		{"credentials refused", context.Background(), func(context.Context) error { return connectors.ErrUnauthorized }, console.ConnectorStopped, connectors.ErrUnauthorized.Error(), false},
		{"shutdown", canceled, func(ctx context.Context) error { return ctx.Err() }, console.ConnectorStopped, "the gateway is stopping", false},
		{"panicked", context.Background(), func(context.Context) error { panic("boom") }, console.ConnectorBackingOff, "panicked: boom", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Gateway{}
			running := make(chan string, 1)
			g.conns = []connectors.Connector{fakeConn{fn: func(ctx context.Context) error {
				g.connMu.Lock()
				running <- g.connState["c1"].State
				g.connMu.Unlock()
				return tc.fn(ctx)
			}}}
			tracked := g.tracked()[0]
			func() {
				defer func() {
					if p := recover(); (p != nil) != tc.wantPanic {
						t.Fatalf("panic %v, want a panic: %v (the supervisor must still see it)", p, tc.wantPanic)
					}
				}()
				_ = tracked.Run(tc.ctx, nil)
			}()
			if s := <-running; s != console.ConnectorRunning {
				t.Fatalf("state while Run runs: %q, want running", s)
			}
			st := g.connState["c1"]
			if st.State != tc.state || !strings.Contains(st.Error, tc.why) {
				t.Fatalf("after Run: %q %q, want %q containing %q", st.State, st.Error, tc.state, tc.why)
			}
		})
	}
}
