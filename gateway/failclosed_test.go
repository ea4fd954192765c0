package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
)

// boot runs a gateway over dir (state, vault and, unless extra has an
// audit line, the audit log inside it) with a
// local connector and the echo runtime; stop ends it cleanly, as SIGTERM
// would, and reports Run's error.
func boot(t *testing.T, dir, policies, extra string) (g *gateway.Gateway, conn *local.Connector, cfg *config.Config, stop func()) {
	t.Helper()
	if !strings.Contains(extra, "audit:") {
		extra += "audit: {dir: " + dir + "/audit}\n"
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
admin: {listen: "127.0.0.1:0"}
connectors:
  dev: {type: local, listen: 127.0.0.1:0, allowed_users: [alice]}
%[3]s`, dir, policies, extra)))
	if err != nil {
		t.Fatal(err)
	}
	conn, err = local.New(local.Options{Name: "dev", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	g, err = gateway.New(context.Background(), cfg, gateway.Options{Logger: zerolog.Nop(),
		Runtimes: map[string]sessions.Sandboxes{"containerd": &echoRuntime{}}, Connectors: []connectors.Connector{conn}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	stopped := false
	stop = func() {
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
	waitReady(t, g, done)
	waitAddr(t, conn)
	return g, conn, cfg, stop
}

// waitAddr waits for the local connector's listener (it binds in Run).
func waitAddr(t testing.TB, conn *local.Connector) {
	t.Helper()
	select {
	case <-conn.Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("local connector never listened")
	}
}

func metrics(t *testing.T, g *gateway.Gateway) string {
	t.Helper()
	resp, err := http.Get("http://" + g.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A flooder who emptied their message bucket gets no fresh burst from a
// restart: the buckets are saved in the state dir at shutdown and read
// back before anything is decided.
func TestRateLimitsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	roles := "roles:\n  member: {messages_per_minute: 1, message_burst: 3}\n"
	_, conn, _, stop := boot(t, dir, policyDir(), roles)
	allowed := 0
	for range 10 {
		if strings.Contains(send(t, conn, "alice", "flood"), "echo") {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("before the restart %d of 10 reached the agent, want the burst of 3", allowed)
	}
	stop()
	if fi, err := os.Stat(filepath.Join(dir, "state", gateway.RateLimitFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("rate-limit snapshot after shutdown: %v %v", fi, err)
	}

	_, conn, _, _ = boot(t, dir, policyDir(), roles)
	// No fresh burst: the message is rate-limited, and since the flood
	// also spent the sender's denial budget (persisted too), it gets no
	// reply of its own either, only a count in the log.
	if got := send(t, conn, "alice", "after restart"); strings.Contains(got, "echo") || (got != "" && !strings.Contains(got, "try again")) {
		t.Fatalf("after the restart the flooder got %q, want no agent answer (a rate-limit reply or none)", got)
	}
}

// A snapshot that cannot be read stops the start (a fresh burst for every
// flooder is not a default) and the error says how to reset.
func TestCorruptRateLimitSnapshotRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	os.WriteFile(filepath.Join(dir, "state", gateway.RateLimitFileName), []byte("PRL1 garbage"), 0o600)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
audit: {dir: %[1]s/audit}
connectors: {dev: {type: local, listen: 127.0.0.1:0, allowed_users: [alice]}}
`, dir, policyDir())))
	if err != nil {
		t.Fatal(err)
	}
	_, err = gateway.New(context.Background(), cfg, gateway.Options{Logger: zerolog.Nop(),
		Runtimes: map[string]sessions.Sandboxes{"containerd": &echoRuntime{}}, Connectors: []connectors.Connector{}})
	if err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("started over a corrupt rate-limit snapshot: %v", err)
	}
}

// A revision that compiles but errors on every input (two decisions that
// conflict) is refused at reload: the last good policy keeps deciding,
// /readyz says not ready and names the refusal, and the metric counts it.
// A good reload clears it.
func TestReloadRefusesAlwaysFailingPolicy(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies")
	if err := os.CopyFS(pol, os.DirFS(policyDir())); err != nil {
		t.Fatal(err)
	}
	g, conn, cfg, _ := boot(t, dir, pol, "")
	if got := send(t, conn, "alice", "before"); !strings.Contains(got, "echo: before") {
		t.Fatalf("before the reload: %q", got)
	}
	broken := filepath.Join(pol, "zz_conflict.rego")
	os.WriteFile(broken, []byte("package parachute.message\n\n# Conflicts with message.rego's decision on every input.\ndecision := {\"allow\": true, \"reasons\": [\"always\"]} if input.connector\n"), 0o600)
	if err := g.Reload(context.Background(), cfg); err == nil {
		t.Fatal("a revision that errors on every input was accepted")
	}
	if got := send(t, conn, "alice", "during"); !strings.Contains(got, "echo: during") {
		t.Fatalf("after the refused reload alice got %q: the last good policy must still decide", got)
	}
	code, body := readyz(t, g)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "policy reload refused") || !strings.Contains(body, "revision "+g.Engine.Revision()) {
		t.Fatalf("readyz after a refused reload: %d %q", code, body)
	}
	m := metrics(t, g)
	for _, want := range []string{"parachute_policy_reload_refusals_total 1", "parachute_audit_refused_total 0", "parachute_session_events_unrecorded_total 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(m, "parachute_"))
		}
	}

	os.Remove(broken)
	if err := g.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(t, g); code != 200 {
		t.Fatalf("readyz after a good reload: %d %q", code, body)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A stranger's flood through the gateway: a handful of replies and
// records, and after shutdown the log accounts for every message.
func TestStrangerFloodIsBoundedInTheLog(t *testing.T) {
	dir := t.TempDir()
	_, conn, cfg, stop := boot(t, dir, policyDir(), "")
	replies := 0
	for range 100 {
		if send(t, conn, "mallory", "let me in") != "" {
			replies++
		}
	}
	if replies > connectors.DefaultDenialSenderBurst {
		t.Errorf("%d replies to 100 denied messages, want at most %d", replies, connectors.DefaultDenialSenderBurst)
	}
	stop() // records the pending summary before the log closes
	var records, accounted int64
	err := audit.Read(cfg.Audit.Dir, audit.ReadOptions{}, func(e audit.Entry) error {
		r := e.Record
		if r.Kind != "message" || r.User != "local:mallory" {
			return nil
		}
		records++
		if !slices.Contains(r.Reasons, connectors.ReasonDenialsSuppressed) {
			accounted++
		}
		if s := r.Detail[connectors.DetailSuppressed]; s != "" {
			n, _ := strconv.ParseInt(s, 10, 64)
			accounted += n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if records > connectors.DefaultDenialSenderBurst+1 || accounted != 100 {
		t.Fatalf("%d records accounting for %d messages, want at most %d records accounting for 100", records, accounted, connectors.DefaultDenialSenderBurst+1)
	}
}

// With audit.record_text on, a text is recorded with its decision only:
// a stranger's flood past the denial budget writes no text records, and
// an allowed message's text names the decision it belongs to.
func TestRecordedTextIsBoundedWithDecisions(t *testing.T) {
	dir := t.TempDir()
	_, conn, cfg, stop := boot(t, dir, policyDir(), "audit: {dir: "+dir+"/audit, record_text: true}\n")
	for range 100 {
		send(t, conn, "mallory", "spam spam spam")
	}
	if got := send(t, conn, "alice", "hello"); !strings.Contains(got, "echo: hello") {
		t.Fatalf("alice got %q", got)
	}
	stop()
	texts := map[string]int{}
	allowed := map[string]bool{}
	var aliceText audit.Record
	audit.Read(cfg.Audit.Dir, audit.ReadOptions{}, func(e audit.Entry) error {
		r := e.Record
		switch {
		case r.Kind == "message-text":
			texts[r.User]++
			if r.User == "local:alice" {
				aliceText = r
			}
		case r.Kind == "message" && r.Decision == "allow":
			allowed[r.DecisionID] = true
		}
		return nil
	})
	if texts["local:mallory"] > connectors.DefaultDenialSenderBurst {
		t.Errorf("%d text records for a flood of 100 denied messages, want at most %d", texts["local:mallory"], connectors.DefaultDenialSenderBurst)
	}
	if aliceText.Detail["text"] != "hello" || !allowed[aliceText.DecisionID] {
		t.Errorf("alice's text record %+v does not name her allowed decision", aliceText)
	}
}

// roles.<name>.egress_require_sni is a config field (it was refused as
// unknown while the egress policy already read it) and reaches policy data.
func TestRoleEgressRequireSNIReachesPolicy(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
connectors: {dev: {type: local, allowed_users: [alice]}}
roles:
  member: {egress_require_sni: true}
`, dir, policyDir())))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cfg.PolicyData()["roles"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"egress_require_sni":true`) {
		t.Fatalf("policy data roles: %s", b)
	}
}
