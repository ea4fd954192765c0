package sessions

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/engine"
)

// failingAudit is an Auditor that refuses appends while fail is set, as
// the audit log does on a full disk.
type failingAudit struct {
	mu    sync.Mutex
	fail  bool
	kinds []string
}

func (a *failingAudit) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return audit.Record{}, audit.ErrUnavailable
	}
	a.kinds = append(a.kinds, string(r.Kind))
	return r, nil
}

func (a *failingAudit) set(fail bool) { a.mu.Lock(); a.fail = fail; a.mu.Unlock() }

// No sandbox starts, and no pre-session hook runs, without its record; a
// stop always stops, and a stop that could not be recorded is counted.
func TestEventsFailClosed(t *testing.T) {
	tests := []struct {
		name   string
		direct bool // a direct session whose policy allows hooks
	}{
		{name: "sandboxed"},
		{name: "hook", direct: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := testData()
			if tt.direct {
				dev := data["connectors"].(map[string]any)["dev"].(map[string]any)
				dev["allow_direct"], dev["allow_hooks"] = true, true
			}
			m, rt, _ := newManager(t, data)
			if tt.direct {
				m.opts.Runtimes["direct"] = rt
			}
			aud := &failingAudit{fail: true}
			m.opts.Audit = aud
			var hooks int
			m.opts.Hook = func(context.Context, string, engine.SessionProfile, time.Duration) (bool, []byte, error) {
				hooks++
				return true, []byte("hook ran"), nil
			}
			req := turn("dev", "owner", "hi")
			if tt.direct {
				req.Result.TrustLevel = "direct"
				req.Result.Role = "owner"
			}
			reply, err := m.Turn(context.Background(), req)
			if err != nil {
				t.Fatalf("Turn: %v (the user must get a reply, not a generic failure)", err)
			}
			if !strings.Contains(reply, "audit log") {
				t.Errorf("reply %q does not say the audit log is unavailable", reply)
			}
			if len(rt.started) != 0 || hooks != 0 || m.Active() != 0 {
				t.Fatalf("without a record: %d sandboxes started, %d hooks run, %d live", len(rt.started), hooks, m.Active())
			}

			aud.set(false)
			if reply, err := m.Turn(context.Background(), req); err != nil || !strings.Contains(reply, "text=hi") {
				t.Fatalf("after the log recovered: %q %v", reply, err)
			}
			if tt.direct && hooks != 1 {
				t.Fatalf("hook ran %d times after recovery, want 1", hooks)
			}
			aud.set(true)
			if err := m.NewSession(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if rt.running() != 0 {
				t.Fatal("a sandbox kept running because its stop could not be recorded")
			}
			if got := m.Unrecorded(); got != 1 {
				t.Fatalf("Unrecorded = %d, want 1 (the stop)", got)
			}
			want := "session-start"
			if tt.direct {
				want = "session-start hook"
			}
			if got := strings.Join(aud.kinds, " "); got != want {
				t.Fatalf("records %q, want %q", got, want)
			}
		})
	}
}

// The session socket does not hold an idle kept-alive connection forever
// nor wait forever for a request's headers.
func TestSocketServerTimeouts(t *testing.T) {
	m, _, _ := newManager(t, testData())
	if _, err := m.Turn(context.Background(), turn("dev", "alice", "hi")); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.live) != 1 {
		t.Fatalf("%d live sessions, want 1", len(m.live))
	}
	for _, l := range m.live {
		if l.server.IdleTimeout != SocketIdleTimeout || l.server.ReadHeaderTimeout <= 0 {
			t.Fatalf("socket server timeouts: idle %v, read header %v", l.server.IdleTimeout, l.server.ReadHeaderTimeout)
		}
	}
}
