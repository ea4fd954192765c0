package local_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/engine"
)

// overloaded is the engine on a saturated machine: every evaluation
// misses its deadline, as engine.Engine reports it.
type overloaded struct{ *engine.Engine }

func (o overloaded) Evaluate(_ context.Context, in engine.Input) engine.Decision {
	d := o.Deny(in, engine.ReasonOverloaded)
	d.RetryAfter = engine.OverloadRetryAfter
	return d
}

// shedTurns is a session manager whose every turn was shed on the tool path
// (the agent stopped on the proxy's busy answer).
type shedTurns struct{ connectors.EchoTurns }

func (shedTurns) Turn(context.Context, connectors.TurnRequest) (string, error) {
	return "", &connectors.BusyTurnError{RetryAfter: engine.OverloadRetryAfter}
}

// A message refused because the gateway is overloaded, or whose turn was
// shed because a tool decision was, is answered 503 with Retry-After and
// the busy reply, as JSON and as an event stream; a normal reply stays 200
// with no Retry-After.
func TestLocalBusyIs503(t *testing.T) {
	rec := &countRecorder{}
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: data(1), Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	handler := func(d connectors.Decider, turns connectors.Turns) http.Handler {
		r, err := connectors.NewRouter(connectors.RouterOptions{Decider: d, Turns: turns})
		if err != nil {
			t.Fatal(err)
		}
		c, err := local.New(local.Options{Name: "dev", Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		return c.Handler(r)
	}
	busy, normal := handler(overloaded{e}, connectors.EchoTurns{}), handler(e, connectors.EchoTurns{})
	busyTurn := handler(e, shedTurns{}) // a tool decision of the turn was overloaded
	for _, tt := range []struct {
		name       string
		h          http.Handler
		accept     string
		status     int
		retryAfter string
		reply      string
	}{
		{"busy json", busy, "", http.StatusServiceUnavailable, "5", connectors.BusyReply(engine.OverloadRetryAfter)},
		{"busy events", busy, "text/event-stream", http.StatusServiceUnavailable, "5", connectors.BusyReply(engine.OverloadRetryAfter)},
		{"busy turn json", busyTurn, "", http.StatusServiceUnavailable, "5", connectors.BusyReply(engine.OverloadRetryAfter)},
		// The stream's status was sent with its first (typing) event,
		// before the turn ran: the busy reply comes as the message.
		{"busy turn events", busyTurn, "text/event-stream", http.StatusOK, "", connectors.BusyReply(engine.OverloadRetryAfter)},
		{"normal json", normal, "", http.StatusOK, "", "hello"},
		{"normal events", normal, "text/event-stream", http.StatusOK, "", "hello"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(`{"user":"u0","text":"hello"}`))
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			w := httptest.NewRecorder()
			tt.h.ServeHTTP(w, req)
			if w.Code != tt.status || w.Header().Get("Retry-After") != tt.retryAfter {
				t.Fatalf("status %d Retry-After %q, want %d %q (body %s)", w.Code, w.Header().Get("Retry-After"), tt.status, tt.retryAfter, w.Body)
			}
			body := w.Body.String()
			if tt.accept == "" {
				var resp local.Response
				if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
					t.Fatal(err)
				}
				body = resp.Reply
			}
			if !strings.Contains(body, tt.reply) {
				t.Errorf("reply %q, want it to contain %q", body, tt.reply)
			}
		})
	}
}
