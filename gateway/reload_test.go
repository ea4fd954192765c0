package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/sessions"
)

// syncBuffer is a log sink safe for the gateway's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// reloadConfig is a config in dir whose dev connector has the extra YAML
// lines given (indented under it), whose admin listener is admin and whose
// allowed users are users.
func reloadConfig(t *testing.T, dir, extra, admin, users string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
admin: {listen: %[4]q}
connectors:
  dev:
    type: local
    listen: 127.0.0.1:0
    owners: [owner]
    token_env: GW_LOCAL_TOKEN
    allowed_users: [%[5]s]
%[3]s
roles:
  member: {messages_per_minute: 6000000, message_burst: 100000}
`, dir, policyDir(), extra, admin, users)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startWith(t *testing.T, cfg *config.Config, rts map[string]sessions.Sandboxes) (*gateway.Gateway, *local.Connector, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	conn, err := local.New(local.Options{Name: "dev", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{
		Logger: zerolog.New(logs), Runtimes: rts, Connectors: []connectors.Connector{conn},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitReady(t, g, done)
	waitAddr(t, conn)
	return g, conn, logs
}

// TestReloadNeedingARestartIsRefused: a reload that lets a connector grant
// direct trust on a gateway started without the direct runtime is refused
// whole, naming the field and the fix; nothing of it applies.
func TestReloadNeedingARestartIsRefused(t *testing.T) {
	dir := t.TempDir()
	g, conn, _ := startWith(t, reloadConfig(t, dir, "", "127.0.0.1:0", "alice, bob"),
		map[string]sessions.Sandboxes{"containerd": &echoRuntime{}})
	if got := send(t, conn, "owner", "one"); !strings.Contains(got, "echo: one") {
		t.Fatalf("owner got %q", got)
	}
	rev := g.Engine.Revision()
	next := reloadConfig(t, dir, "    allow_direct: true\n    default_trust_level: direct", "127.0.0.1:0", "alice")
	err := g.Reload(context.Background(), next)
	if err == nil || !strings.Contains(err.Error(), "connectors.dev.allow_direct") || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("Reload: %v; want a refusal naming connectors.dev.allow_direct and the restart", err)
	}
	if g.Engine.Revision() != rev {
		t.Fatal("a refused reload changed the policy data in force")
	}
	if got := send(t, conn, "bob", "still"); !strings.Contains(got, "echo: still") {
		t.Fatalf("bob (removed by the refused reload) got %q", got)
	}
	if got := send(t, conn, "owner", "/new"); !strings.Contains(got, "fresh session") {
		t.Fatalf("/new after the refused reload: %q", got)
	}
	if got := send(t, conn, "owner", "two"); !strings.Contains(got, "echo: two") {
		t.Fatalf("owner after /new: %q", got)
	}
}

// TestReloadSaysWhatChanged: a reload that changes trust on a live session
// applies at once to policy, restarts the session at its next turn under
// the new decision, and logs what took effect, what needs a restart and
// each session whose decision changed.
func TestReloadSaysWhatChanged(t *testing.T) {
	dir := t.TempDir()
	ctrd, direct := &echoRuntime{}, &echoRuntime{}
	cfg := reloadConfig(t, dir, "    allow_direct: true", "127.0.0.1:0", "alice, bob")
	g, conn, logs := startWith(t, cfg, map[string]sessions.Sandboxes{"containerd": ctrd, "direct": direct})
	if got := send(t, conn, "owner", "one"); !strings.Contains(got, "echo: one") {
		t.Fatalf("owner got %q", got)
	}
	if got := send(t, conn, "bob", "hi"); !strings.Contains(got, "echo: hi") {
		t.Fatalf("bob got %q", got)
	}
	next := reloadConfig(t, dir, "    allow_direct: true\n    default_trust_level: direct", "127.0.0.1:1", "alice")
	if err := g.Reload(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, want := range []string{
		`"applied":["connectors.dev.allowed_users","connectors.dev.default_trust_level"]`,
		`"needs_restart":["admin"]`,
		`trust_level sandboxed→direct`, `runtime containerd→direct`,
		`"refused":["message","unknown-user"]`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reload log lacks %s:\n%s", want, out)
		}
	}
	if got := send(t, conn, "bob", "after"); strings.Contains(got, "echo") {
		t.Fatalf("bob, removed by the reload, reached the agent: %q", got)
	}
	got := send(t, conn, "owner", "two")
	if !strings.Contains(got, "restarted") || !strings.Contains(got, "echo: two") {
		t.Fatalf("owner after the reload: %q; want a restart note and the answer", got)
	}
	direct.mu.Lock()
	n := direct.starts
	direct.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d direct sandboxes started; want the owner's new session", n)
	}
	if got := send(t, conn, "owner", "/whoami"); !strings.Contains(got, "direct") {
		t.Fatalf("/whoami after the reload: %q", got)
	}
	// Every session is recorded under one trust level: none ran in
	// containerd while its records said direct.
	trust := map[string]map[string]bool{}
	err := audit.Read(cfg.Audit.Dir, audit.ReadOptions{}, func(e audit.Entry) error {
		if r := e.Record; r.SessionID != "" && r.TrustLevel != "" {
			if trust[r.SessionID] == nil {
				trust[r.SessionID] = map[string]bool{}
			}
			trust[r.SessionID][r.TrustLevel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, levels := range trust {
		if len(levels) != 1 {
			t.Errorf("session %s recorded under trust levels %v", id, levels)
		}
	}
	if len(trust) < 3 {
		t.Errorf("%d sessions in the log; want the owner's two and bob's", len(trust))
	}
}
