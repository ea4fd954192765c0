package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/sessions"
)

// echoRuntime runs each turn in-process: it reads the turn and asks the
// session socket's model route (unconfigured here), then echoes. It
// stands in for containerd; test/e2e runs the real one.
type echoRuntime struct {
	mu     sync.Mutex
	starts int
}

type echoSandbox struct{ spec runtime.Spec }

func (r *echoRuntime) Start(_ context.Context, s runtime.Spec) (runtime.Sandbox, error) {
	r.mu.Lock()
	r.starts++
	r.mu.Unlock()
	return &echoSandbox{spec: s}, nil
}

func (s *echoSandbox) ID() string                 { return s.spec.SessionID }
func (s *echoSandbox) Stop(context.Context) error { return nil }
func (s *echoSandbox) Exec(_ context.Context, t runtime.Turn) (runtime.Result, error) {
	var in struct {
		Text   string `json:"text"`
		TurnID string `json:"turn_id"`
	}
	if err := json.NewDecoder(t.Stdin).Decode(&in); err != nil {
		return runtime.Result{}, err
	}
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(s.spec.SocketDir, sessions.SocketName))
	}}}
	resp, err := c.Post("http://parachute/v1/chat/completions", "application/json", strings.NewReader(`{}`))
	if err != nil {
		return runtime.Result{}, err
	}
	resp.Body.Close()
	fmt.Fprintf(t.Stdout, "echo: %s (model route: %d)", in.Text, resp.StatusCode)
	return runtime.Result{}, nil
}

func policyDir() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "policies")
}

func start(t *testing.T) (*gateway.Gateway, *local.Connector, *config.Config) {
	return startB(t)
}

func startB(t testing.TB) (*gateway.Gateway, *local.Connector, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
admin: {listen: "127.0.0.1:0"}
connectors:
  dev:
    type: local
    listen: 127.0.0.1:0
    owners: [owner]
    token_env: GW_LOCAL_TOKEN # required with owners (unused: the test brings its own connector)
    allowed_users: [alice, bob]
roles:
  member: {messages_per_minute: 6000000, message_burst: 100000}
`, dir, policyDir())))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := local.New(local.Options{Name: "dev", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{
		Logger:     zerolog.Nop(),
		Runtimes:   map[string]sessions.Sandboxes{"containerd": &echoRuntime{}},
		Connectors: []connectors.Connector{conn},
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
	return g, conn, cfg
}

// waitReady waits until Run has started everything, failing the test if
// Run returns first (its error is put back on done) or 30 s pass.
func waitReady(t testing.TB, g *gateway.Gateway, done chan error) {
	t.Helper()
	select {
	case <-g.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("Run returned before the gateway was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway was not ready within 30 s")
	}
}

func send(t *testing.T, c *local.Connector, user, text string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"user": user, "text": text})
	resp, err := http.Post("http://"+c.Addr().String()+"/v1/messages", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Reply string `json:"reply"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out.Reply
}

func TestMessageToReplyIsDecidedAndAudited(t *testing.T) {
	g, conn, cfg := start(t)

	if got := send(t, conn, "alice", "hello-private-words"); !strings.Contains(got, "echo: hello-private-words") {
		t.Fatalf("alice got %q", got)
	}
	if got := send(t, conn, "alice", "again"); !strings.Contains(got, "model route: 503") {
		t.Fatalf("with no model configured the socket's model route must say so (503): %q", got)
	}
	if got := send(t, conn, "mallory", "hello"); strings.Contains(got, "echo") {
		t.Fatalf("a stranger reached the agent: %q", got)
	}
	if g.Manager.Active() != 1 {
		t.Fatalf("%d sandboxes running, want 1 (alice's)", g.Manager.Active())
	}

	var recs []audit.Record
	err := audit.Read(cfg.Audit.Dir, audit.ReadOptions{}, func(e audit.Entry) error {
		recs = append(recs, e.Record)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	turnIDs := map[string]bool{}
	for _, r := range recs {
		kinds = append(kinds, string(r.Kind)+"/"+r.Decision+"/"+r.User)
		if r.Kind == "message" && r.Decision == "allow" {
			turnIDs[r.DecisionID] = true
		}
	}
	joined := strings.Join(kinds, " ")
	for _, want := range []string{"message/allow/local:alice", "session/allow/local:alice", "message/deny/local:mallory", "session-start//local:alice"} {
		if !strings.Contains(joined, want) {
			t.Errorf("audit lacks %s; has %s", want, joined)
		}
	}
	for _, r := range recs {
		if r.Kind == "session" && !turnIDs[r.TurnID] {
			t.Errorf("session decision's turn_id %q links to no message decision", r.TurnID)
		}
	}
	files, _ := audit.Files(cfg.Audit.Dir)
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "hello-private-words") {
			t.Error("message text reached the audit log though audit.record_text is off")
		}
	}
	if rep, err := audit.Verify(cfg.Audit.Dir); err != nil || !rep.OK() {
		t.Fatalf("audit verify: %v %+v", err, rep)
	}

	resp, err := http.Get("http://" + g.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`parachute_decisions_total{entry="message",result="allow"} 2`,
		`parachute_decisions_total{entry="message",result="deny"} 1`,
		`parachute_sessions_active 1`,
		`parachute_sandbox_starts_total{result="ok",runtime="containerd"} 1`,
		`parachute_audit_append_seconds_count`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + g.AdminAddr().String() + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", path, err, resp.StatusCode)
		}
		resp.Body.Close()
	}
}

func TestAdminListenerMustBeLoopback(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
admin: {listen: "0.0.0.0:0"}
connectors: {dev: {type: local, owners: [owner], token_env: GW_LOCAL_TOKEN}}
`, dir, policyDir())))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: zerolog.Nop(),
		Runtimes: map[string]sessions.Sandboxes{"containerd": &echoRuntime{}}, Connectors: []connectors.Connector{}})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Fatalf("Run with a non-loopback admin listener: %v", err)
	}
}

func TestBrokenPolicyRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[1]s/nopolicies
connectors: {dev: {type: local, owners: [owner], token_env: GW_LOCAL_TOKEN}}
`, dir)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = gateway.New(context.Background(), cfg, gateway.Options{Logger: zerolog.Nop(),
		Runtimes: map[string]sessions.Sandboxes{"containerd": &echoRuntime{}}})
	if err == nil || !strings.Contains(err.Error(), "policies") {
		t.Fatalf("gateway started without a policy: %v", err)
	}
}

// SIGHUP's reload swaps in the new config's policy data: a user added to
// allowed_users is admitted without a restart; an invalid config is
// refused and the running one stays.
func TestReloadSwapsPolicyData(t *testing.T) {
	g, conn, cfg := start(t)
	if got := send(t, conn, "carol", "hi"); strings.Contains(got, "echo") {
		t.Fatalf("carol admitted before the reload: %q", got)
	}
	next := *cfg
	next.Connectors = map[string]*config.Connector{}
	for n, k := range cfg.Connectors {
		c := *k
		c.AllowedUsers = append(append([]string{}, k.AllowedUsers...), "carol")
		next.Connectors[n] = &c
	}
	if err := g.Reload(context.Background(), &next); err != nil {
		t.Fatal(err)
	}
	if got := send(t, conn, "carol", "hi again"); !strings.Contains(got, "echo: hi again") {
		t.Fatalf("carol after the reload: %q", got)
	}
	bad := next
	bad.Vault = ""
	if err := g.Reload(context.Background(), &bad); err == nil {
		t.Fatal("an invalid config was accepted")
	}
	if got := send(t, conn, "carol", "still here"); !strings.Contains(got, "echo: still here") {
		t.Fatalf("after a refused reload the running config changed: %q", got)
	}
}
