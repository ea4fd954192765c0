package main

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
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/sessions"
	"github.com/parachute-gateway/parachute/test/fakes/sandbox"
)

// operatorConfig writes a gateway config into a fresh folder (0600, as
// a config naming a secret's variable must be) and points
// $PARACHUTE_CONFIG at it, as `make run` does.
func operatorConfig(t *testing.T) (string, string) {
	t.Helper()
	// A short folder: session sockets live under it, and a unix socket's
	// path is at most 107 bytes.
	dir, err := os.MkdirTemp("", "pc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "parachute.yaml")
	body := fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
admin: {listen: "127.0.0.1:0"}
connectors:
  dev:
    type: local
    listen: 127.0.0.1:0
    owners: [owner]
    token_env: OP_TEST_TOKEN
    allowed_users: [alice]
workspaces:
  team: {members: ["local:alice"]}
roles:
  member: {messages_per_minute: 600000, message_burst: 100000}
`, dir, defaultPolicyDirForTest(t))
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvConfig, path)
	return path, dir
}

func defaultPolicyDirForTest(t *testing.T) string {
	abs, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// runGateway starts the gateway from the config file as `parachute serve`
// would, with the echo runtime and a local connector of the test's own.
// The returned stop waits for it to end.
func runGateway(t *testing.T, path string) (*gateway.Gateway, *local.Connector, func()) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := local.New(local.Options{Name: "dev", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{
		Logger:     zerolog.Nop(),
		Runtimes:   map[string]sessions.Sandboxes{"containerd": sandbox.Echo()},
		Connectors: []connectors.Connector{conn},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	<-g.Ready()
	<-conn.Listening()
	return g, conn, stop
}

func say(t *testing.T, c *local.Connector, user, text string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"user": user, "text": text})
	resp, err := http.Post("http://"+c.Addr().String()+"/v1/messages", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Reply string `json:"reply"`
	}
	_ = json.Unmarshal(b, &out)
	return out.Reply
}

func auditRecords(t *testing.T, dir string) []audit.Record {
	t.Helper()
	var recs []audit.Record
	if err := audit.Read(dir, audit.ReadOptions{}, func(e audit.Entry) error {
		recs = append(recs, e.Record)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestOperatorCommandsFindTheGatewayFromItsConfig is the report
// replayed: every operator command, given only the config (through
// $PARACHUTE_CONFIG), acts on the running gateway, and no command
// creates an empty store or reads an empty log elsewhere.
func TestOperatorCommandsFindTheGatewayFromItsConfig(t *testing.T) {
	path, dir := operatorConfig(t)
	state := filepath.Join(dir, "state")

	// Before the gateway ever ran: errors naming the config and the
	// path, and nothing created.
	for _, args := range [][]string{{"pair", "list"}, {"invite", "list"}, {"logs"}, {"audit", "verify"}, {"sessions", "list"}} {
		code, _, errOut := runCLI(t, args...)
		if code != 1 || !strings.Contains(errOut, path) || !strings.Contains(errOut, "does not exist") {
			t.Errorf("%v before the gateway ran: %d %q, want an error naming %s", args, code, errOut, path)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("a command created the state dir: %v", err)
	}

	_, conn, stop := runGateway(t, path)

	// A stranger asks to pair; the code the bot gives works as the bot says.
	reply := say(t, conn, "stranger", "/pair")
	m := regexp.MustCompile(`parachute pair approve ([A-Z0-9]+)`).FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("no pairing code in %q", reply)
	}
	code := m[1]
	if c, out, errOut := runCLI(t, "pair", "list"); c != 0 || !strings.Contains(out, code) {
		t.Fatalf("pair list: %d %q %q", c, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pair", "approve", code, "--role", "admin"}, `role "admin" is not defined`},
		{[]string{"pair", "approve", code, "--role", "memeber"}, `role "memeber" is not defined`},
		{[]string{"pair", "approve", code, "--workspace", "nope"}, `workspace "nope" is not in`},
		{[]string{"invite", "create", "--role", "member", "--workspace", "nope"}, `workspace "nope" is not in`},
		{[]string{"invite", "create", "--role", "member", "--connector", "nope"}, `connector "nope" is not in`},
		{[]string{"pair", "deny", "NOSUCHCD"}, "no pending pairing request"},
		{[]string{"sessions", "stop", "nope"}, "no running session"},
	} {
		if c, _, errOut := runCLI(t, tc.args...); c != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q, want %q", tc.args, c, errOut, tc.want)
		}
	}
	c, out, errOut := runCLI(t, "pair", "approve", strings.ToLower(code), "--role", "member")
	if c != 0 || !strings.Contains(out, "approved local:stranger on dev as member") || strings.Contains(errOut, "no gateway") {
		t.Fatalf("pair approve through the gateway: %d %q %q", c, out, errOut)
	}
	// In effect at once: the gateway recorded it itself.
	if got := say(t, conn, "stranger", "hello"); !strings.Contains(got, "echo: hello") {
		t.Fatalf("approved stranger got %q", got)
	}
	if got := say(t, conn, "alice", "hi"); !strings.Contains(got, "echo: hi") {
		t.Fatalf("alice got %q", got)
	}
	if c, out, _ := runCLI(t, "pair", "bindings"); c != 0 || !strings.Contains(out, "local:stranger") || strings.Contains(out, "held") {
		t.Fatalf("pair bindings: %d %q", c, out)
	}
	c, tok, errOut := runCLI(t, "invite", "create", "--role", "member", "--workspace", "team", "--expires", "2h")
	if c != 0 || len(strings.TrimSpace(tok)) < 16 || strings.Contains(errOut, "no gateway") {
		t.Fatalf("invite create: %d %q %q", c, tok, errOut)
	}
	if c, out, _ := runCLI(t, "invite", "list"); c != 0 || !strings.Contains(out, "team") || strings.Contains(out, "held") {
		t.Fatalf("invite list: %d %q", c, out)
	}
	_, out, _ = runCLI(t, "invite", "list")
	hash := strings.Fields(strings.Split(out, "\n")[1])[0]
	if c, out, errOut := runCLI(t, "invite", "revoke", hash); c != 0 || !strings.Contains(out, "revoked invite "+hash+" (role member, workspace team)") {
		t.Fatalf("invite revoke: %d %q %q", c, out, errOut)
	}
	if c, out, _ := runCLI(t, "invite", "list"); c != 0 || strings.Contains(out, hash) {
		t.Fatalf("revoked invite still listed: %d %q", c, out)
	}
	if c, _, errOut := runCLI(t, "invite", "revoke", hash); c != 1 || !strings.Contains(errOut, "no unused invite") {
		t.Fatalf("invite revoke twice: %d %q", c, errOut)
	}

	// Sessions: listed live with their trust, stopped by the operator.
	c, out, _ = runCLI(t, "sessions", "list")
	if c != 0 || !strings.Contains(out, "local:alice") || !strings.Contains(out, "live") || !strings.Contains(out, "sandboxed") {
		t.Fatalf("sessions list: %d %q", c, out)
	}
	var aliceSession string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "local:alice") {
			aliceSession = strings.Fields(l)[0]
		}
	}
	if c, out, errOut := runCLI(t, "sessions", "stop", aliceSession); c != 0 || !strings.Contains(out, "stopped session "+aliceSession) {
		t.Fatalf("sessions stop: %d %q %q", c, out, errOut)
	}
	if _, out, _ := runCLI(t, "sessions", "list"); strings.Contains(out, aliceSession) {
		t.Fatalf("stopped session still listed: %q", out)
	}
	if c, out, _ := runCLI(t, "pair", "revoke", "dev", "local:stranger"); c != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("pair revoke: %d %q", c, out)
	}
	if got := say(t, conn, "stranger", "again"); strings.Contains(got, "echo") {
		t.Fatalf("revoked stranger still reaches the agent: %q", got)
	}

	if c, out, errOut := runCLI(t, "status"); c != 0 || !strings.Contains(out, "policy revision: ") || !strings.Contains(out, "sessions: 1 open, 1 live") {
		t.Errorf("status: %d %q %q", c, out, errOut)
	}
	if c, _, errOut := runCLI(t, "mcp", "proxy"); c != 1 || !strings.Contains(errOut, "is the one writer of its audit log") {
		t.Errorf("mcp proxy on a running gateway's audit log: %d %q", c, errOut)
	}
	if c, out, _ := runCLI(t, "doctor", "--config-only"); !strings.Contains(out, "the gateway is running on them") {
		t.Errorf("doctor while the gateway runs: %d\n%s", c, out)
	}

	// Every operator action is in the audit log, with the operator's uid.
	actor := fmt.Sprintf("operator uid:%d pid:", os.Getuid())
	seen := map[string]bool{}
	for _, r := range auditRecords(t, filepath.Join(state, "audit")) {
		if ev := r.Detail["event"]; ev != "" && strings.HasPrefix(r.Detail["actor"], actor) {
			seen[ev] = true
		}
	}
	for _, ev := range []string{"pair-approve", "invite-create", "invite-revoke", "session-stop", "binding-revoke"} {
		if !seen[ev] {
			t.Errorf("no %s record with actor %q…; operator records: %v", ev, actor, seen)
		}
	}

	// The logs and verify commands read the gateway's log.
	if c, out, _ := runCLI(t, "logs", "kind=admin"); c != 0 || !strings.Contains(out, "event=session-stop") {
		t.Errorf("logs kind=admin: %d %q", c, out)
	}
	if c, out, errOut := runCLI(t, "audit", "verify"); c != 0 || !strings.Contains(out, "signed by key") {
		t.Errorf("audit verify: %d %q %q", c, out, errOut)
	}

	// With the gateway stopped, grants fall back to the store's outbox
	// (and say so); a session stop needs the gateway.
	stop()
	if _, err := os.Stat(gateway.AdminSocketPath(state)); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind after stop: %v", err)
	}
	if c, _, errOut := runCLI(t, "invite", "create", "--role", "member"); c != 0 || !strings.Contains(errOut, "no gateway is running") {
		t.Errorf("invite create with no gateway: %d %q", c, errOut)
	}
	if c, _, errOut := runCLI(t, "status"); c != 1 || !strings.Contains(errOut, "no gateway is running") {
		t.Errorf("status with no gateway: %d %q", c, errOut)
	}
	if c, _, errOut := runCLI(t, "sessions", "stop", aliceSession); c != 1 || !strings.Contains(errOut, "no gateway is running") {
		t.Errorf("sessions stop with no gateway: %d %q", c, errOut)
	}
	if c, out, errOut := runCLI(t, "sessions", "list", "--all"); c != 0 || !strings.Contains(out, aliceSession) || !strings.Contains(out, "ended") {
		t.Errorf("sessions list --all with no gateway: %d %q %q", c, out, errOut)
	}
	if c, out, errOut := runCLI(t, "mcp", "approve"); c != 0 || !strings.Contains(out, "no changed tools") {
		t.Errorf("mcp approve from the config: %d %q %q", c, out, errOut)
	}
}

func TestNoConfigIsAnErrorSayingWhereItLooked(t *testing.T) {
	t.Setenv(EnvConfig, "")
	t.Chdir(t.TempDir())
	for _, args := range [][]string{{"pair", "list"}, {"logs"}, {"sessions", "list"}, {"mcp", "approve"}} {
		code, _, errOut := runCLI(t, args...)
		if code != 1 || !strings.Contains(errOut, "./parachute.yaml") || !strings.Contains(errOut, EnvConfig) {
			t.Errorf("%v with no config: %d %q", args, code, errOut)
		}
	}
	// --config names a file that is not there: said, not a default used.
	if code, _, errOut := runCLI(t, "logs", "--config", "missing.yaml"); code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("logs --config missing.yaml: %d %q", code, errOut)
	}
}

func TestDefaultConfigInTheCurrentFolder(t *testing.T) {
	path, _ := operatorConfig(t)
	t.Setenv(EnvConfig, "")
	t.Chdir(filepath.Dir(path))
	runGateway(t, path)
	if c, out, errOut := runCLI(t, "pair", "list"); c != 0 || !strings.Contains(out, "no pending pairing requests") {
		t.Fatalf("pair list from ./parachute.yaml: %d %q %q", c, out, errOut)
	}
}

// TestServeRefusesWhatWouldFailLater: an unset secret, a mistyped vault
// and a taken port stop the start, each named with its fix, before
// anything listens or is created.
func TestServeRefusesWhatWouldFailLater(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "parachute.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
vault: %[1]s/vualt
state_dir: %[1]s/state
policies: %[2]s
admin: {listen: %[3]q}
connectors:
  tg: {type: telegram, token_env: SERVE_TEST_UNSET_TOKEN, owners: [123456789]}
`, dir, defaultPolicyDirForTest(t), ln.Addr().String())), 0o600)
	t.Setenv("SERVE_TEST_UNSET_TOKEN", "")
	code, _, errOut := runCLI(t, "serve", "--config", path)
	for _, want := range []string{
		"connectors.tg.token_env: the variable SERVE_TEST_UNSET_TOKEN is unset or empty; export SERVE_TEST_UNSET_TOKEN=",
		"vault: " + dir + "/vualt does not exist; fix the path, or create it",
		"admin.listen: cannot listen on " + ln.Addr().String(),
	} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("serve: %d, stderr lacks %q:\n%s", code, want, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); !os.IsNotExist(err) {
		t.Errorf("a refused start created the state dir")
	}
}

func TestLogDurationsHaveUnits(t *testing.T) {
	prev := zerolog.DurationFieldFormat
	t.Cleanup(func() { zerolog.DurationFieldFormat = prev })
	withUnits()
	var b bytes.Buffer
	l := zerolog.New(&b)
	l.Warn().Dur("retry_in", 910800*time.Millisecond).Msg("connector failed; restarting")
	if !strings.Contains(b.String(), `"retry_in":"15m10.8s"`) {
		t.Fatalf("log line %s", b.String())
	}
}
