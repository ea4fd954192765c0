package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/sessions"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// A read-only bot refuses every write tool, whatever the path.
func TestReadOnlyBotRefusesEveryWrite(t *testing.T) {
	e := setup(t, `
connectors:
  ro:
    type: local
    listen: 127.0.0.1:0
    owners: [owner]
    allowed_users: [alice]
    read_only: true
`, model.Script{Steps: []model.Step{
		model.Call("write_file", map[string]any{"path": "/workspace/a.md", "content": "x"}),
		model.Call("edit_file", map[string]any{"path": "/workspace/a.md", "edits": []any{map[string]any{"oldText": "x", "newText": "y"}}}),
		model.Call("create_directory", map[string]any{"path": "/workspace/d"}),
		model.Call("move_file", map[string]any{"source": "/workspace/a.md", "destination": "/workspace/b.md"}),
		model.Call("list_directory", map[string]any{"path": "/workspace"}),
		model.Reply("done"),
	}})
	if got := e.send("ro", "alice", "write things"); !strings.Contains(got, "done") {
		t.Fatalf("reply %q", got)
	}
	denied := e.denials("tool")
	if n := strings.Count(strings.Join(denied, " "), "read-only-mode"); n < 4 {
		t.Fatalf("want 4 writes denied read-only-mode, got %v", denied)
	}
	for _, r := range e.records() {
		if r.Kind == "tool" && r.Tool == "list_directory" && r.Decision != "allow" {
			t.Errorf("a read in read-only mode was denied: %+v", r)
		}
	}
}

// A user whose daily token budget is spent gets a clear reply, and the
// model is not called again. The budget is a cap: the first turn's worst
// case (max_tokens plus its input) fits, and what it used (a long answer)
// leaves too little for the second's.
func TestModelBudgetExhausted(t *testing.T) {
	e := setup(t, privateBot+`
roles:
  member: {tokens_per_day: 6000}
`, model.Script{Steps: []model.Step{model.Reply("first answer" + strings.Repeat(" and more", 2000))}, RepeatLast: true})
	if got := e.send("dev", "alice", "one"); !strings.Contains(got, "first answer") {
		t.Fatalf("first turn: %q", got)
	}
	calls := len(e.model.Requests())
	got := e.send("dev", "alice", "two")
	if !strings.Contains(strings.ToLower(got), "budget") {
		t.Fatalf("second turn after the budget is spent: %q", got)
	}
	if len(e.model.Requests()) != calls {
		t.Fatal("the model was called past the budget")
	}
	if d := strings.Join(e.denials("model"), " "); !strings.Contains(d, "token-budget-exhausted") {
		t.Fatalf("model denials: %s", d)
	}
}

// Pairing: a stranger on a private bot asks for a code, the owner approves
// it, and the stranger is then admitted. Invites: a token sent with /start
// admits its holder once.
func TestPairingAndInvites(t *testing.T) {
	e := setup(t, privateBot, model.Script{Steps: []model.Step{model.Reply("welcome aboard")}, RepeatLast: true})
	if got := e.send("dev", "carol", "hello"); strings.Contains(got, "welcome aboard") {
		t.Fatalf("an unpaired stranger reached the agent: %q", got)
	}
	got := e.send("dev", "carol", "/pair")
	code := regexp.MustCompile(`code is ([A-Z0-9-]+)`).FindStringSubmatch(got)
	if code == nil {
		t.Fatalf("/pair reply has no code: %q", got)
	}
	if _, err := e.g.Pairing.Approve(context.Background(), code[1], "member", ""); err != nil {
		t.Fatal(err)
	}
	if got := e.send("dev", "carol", "hello again"); !strings.Contains(got, "welcome aboard") {
		t.Fatalf("after approval: %q", got)
	}

	token, err := e.g.Pairing.CreateInvite(context.Background(), pairing.Invite{Role: "member", Connector: "dev"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.send("dev", "dave", "/start "+token); !strings.Contains(strings.ToLower(got), "welcome") {
		t.Fatalf("/start with an invite: %q", got)
	}
	if got := e.send("dev", "dave", "hi"); !strings.Contains(got, "welcome aboard") {
		t.Fatalf("invited user: %q", got)
	}
	if got := e.send("dev", "erin", "/start "+token); !strings.Contains(got, "not valid") {
		t.Fatalf("a used invite admitted a second user: %q", got)
	}
	var kinds []string
	for _, r := range e.records() {
		if r.Kind == "pairing" || r.Kind == "invite" {
			kinds = append(kinds, r.Detail["event"]+"/"+r.Decision)
		}
	}
	if j := strings.Join(kinds, " "); !strings.Contains(j, "pair-request/allow") || !strings.Contains(j, "invite-redeem/allow") || !strings.Contains(j, "invite-redeem/deny") {
		t.Fatalf("pairing events in the audit log: %s", j)
	}
}

// A session with network reaches only allowlisted hosts through its
// socket's egress proxy; any other host is refused and recorded.
func TestEgressHostNotAllowed(t *testing.T) {
	e := setup(t, `
connectors:
  net:
    type: local
    listen: 127.0.0.1:0
    owners: [owner]
    allowed_users: [alice]
    network_enabled: true
roles:
  member: {egress_hosts: [api.allowed.example]}
`, model.Script{Steps: []model.Step{model.Reply("ok")}, RepeatLast: true})
	if got := e.send("net", "alice", "hi"); !strings.Contains(got, "ok") {
		t.Fatalf("reply %q", got)
	}
	var sessionID string
	for _, r := range e.records() {
		if r.Kind == "session" && r.Decision == "allow" {
			sessionID = r.SessionID
		}
	}
	sock := filepath.Join(e.cfg.StateDir, "s", sessionID, sessions.SocketName)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("session socket: %v", err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n")
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 403") {
		t.Fatalf("CONNECT to a host not allowed: %q", buf[:n])
	}
	if d := strings.Join(e.denials("egress"), " "); !strings.Contains(d, "egress-host-not-allowed") {
		t.Fatalf("egress denials: %s", d)
	}
	_ = http.StatusForbidden
}
