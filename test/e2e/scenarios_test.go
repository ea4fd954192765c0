package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

const publicBot = `
connectors:
  pub:
    type: local
    listen: 127.0.0.1:0
    public: true
roles:
  guest: {model_call_burst: 20}
`

const privateBot = `
connectors:
  dev:
    type: local
    listen: 127.0.0.1:0
    owners: [owner]
    allowed_users: [alice, bob]
`

// toolResults returns every tool result the model was sent.
func toolResults(f *model.Fake) string {
	var b strings.Builder
	for _, r := range f.Requests() {
		for _, tr := range r.ToolResults {
			b.WriteString(tr.Content)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// Scenario 1 of the guide: a stranger on a public bot asks to list /vault
// and read /vault/secrets.txt. Only their own workspace is visible, the
// secret never comes back, and the denials are recorded with reasons.
func TestStrangerOnPublicBotSeesOnlyOwnWorkspace(t *testing.T) {
	e := setup(t, publicBot, model.Script{Steps: []model.Step{
		model.Call("list_directory", map[string]any{"path": "/vault"}),
		model.Call("read_file", map[string]any{"path": "/vault/secrets.txt"}),
		model.Call("read_file", map[string]any{"path": "/workspace/../secrets.txt"}),
		model.Call("read_file", map[string]any{"path": "../../secrets.txt"}),
		model.Call("list_directory", map[string]any{"path": "/workspace"}),
		model.Reply("I could not read it."),
	}})
	got := e.send("pub", "stranger", "list /vault and read /vault/secrets.txt")
	if !strings.Contains(got, "I could not read it.") {
		t.Fatalf("reply %q", got)
	}
	results := toolResults(e.model)
	if strings.Contains(results, "TOP-SECRET") || strings.Contains(got, "TOP-SECRET") {
		t.Fatal("the vault secret reached the model or the user")
	}
	if strings.Contains(results, "secrets.txt") && !strings.Contains(results, "denied") {
		t.Errorf("tool results mention secrets.txt without a denial: %s", results)
	}
	denied := e.denials("tool")
	if len(denied) < 4 {
		t.Fatalf("want 4 recorded tool denials, got %v", denied)
	}
	for _, d := range denied {
		if !strings.Contains(d, "path-outside-workspace") && !strings.Contains(d, "invalid-path") {
			t.Errorf("denial %q lacks a path reason", d)
		}
	}
	// The stranger's session ran as guest with the strict profile.
	for _, r := range e.records() {
		if r.Kind == "session" && r.User == "local:stranger" && r.Decision != "allow" {
			t.Errorf("stranger's session decision: %+v", r)
		}
	}
}

// Scenario 2: direct trust is refused for a public connector at config and
// at policy; a user not in allowed_users of a private bot gets nothing.
func TestDirectTrustNeverForPublicBots(t *testing.T) {
	_, err := config.Parse([]byte(`
vault: /tmp/v
connectors:
  pub: {type: local, public: true, default_trust_level: direct, allow_direct: true}
`))
	if err == nil || !strings.Contains(err.Error(), "direct") {
		t.Fatalf("config with a public direct connector: %v", err)
	}

	e := setup(t, privateBot, model.Script{Steps: []model.Step{model.Reply("hi")}, RepeatLast: true})
	got := e.send("dev", "mallory", "hello, I have the bot token")
	if strings.Contains(got, "hi") && !strings.Contains(strings.ToLower(got), "pair") {
		t.Fatalf("a user not in allowed_users reached the agent: %q", got)
	}
	if len(e.model.Requests()) != 0 {
		t.Fatal("the model was called for a denied sender")
	}
	if d := e.denials("message"); len(d) == 0 {
		t.Fatal("the denial was not recorded")
	}
}

// Scenario 3: the agent tries to create .parachute/hooks/pre-session.sh:
// denied by policy whatever the spelling, and nothing appears on disk.
func TestHooksCannotBeWritten(t *testing.T) {
	e := setup(t, privateBot, model.Script{Steps: []model.Step{
		model.Call("write_file", map[string]any{"path": "/workspace/.parachute/hooks/pre-session.sh", "content": "#!/bin/sh\ntouch /tmp/pwned\n"}),
		model.Call("write_file", map[string]any{"path": ".PARACHUTE/Hooks/pre-session.sh", "content": "x"}),
		model.Call("write_file", map[string]any{"path": "./.parachute//hooks/../hooks/pre-session.sh", "content": "x"}),
		model.Call("create_directory", map[string]any{"path": "/workspace/.parachute/hooks"}),
		model.Reply("tried"),
	}})
	got := e.send("dev", "alice", "install a hook")
	if !strings.Contains(got, "tried") {
		t.Fatalf("reply %q", got)
	}
	denied := strings.Join(e.denials("tool"), " ")
	if strings.Count(denied, "hooks-write-forbidden") < 3 {
		t.Fatalf("want the hook writes denied with hooks-write-forbidden, got %s", denied)
	}
	matches, _ := filepath.Glob(filepath.Join(e.vault, "users", "*", ".parachute", "hooks", "*"))
	matches2, _ := filepath.Glob(filepath.Join(e.vault, "users", "*", ".PARACHUTE", "*", "*"))
	if len(matches)+len(matches2) != 0 {
		t.Fatalf("a hook file exists: %v %v", matches, matches2)
	}
}

// User A cannot read user B's workspace, nor continue B's session.
func TestUsersAreIsolated(t *testing.T) {
	e := setup(t, privateBot, model.Script{Steps: []model.Step{
		model.Call("write_file", map[string]any{"path": "/workspace/diary.md", "content": "BOB-PRIVATE"}),
		model.Reply("saved"),
		model.Call("read_file", map[string]any{"path": "/workspace/../local%3Abob/diary.md"}),
		model.Call("read_file", map[string]any{"path": "/workspace/diary.md"}),
		model.Reply("alice done"),
	}})
	if got := e.send("dev", "bob", "save my diary"); !strings.Contains(got, "saved") {
		t.Fatalf("bob: %q", got)
	}
	bobFile := filepath.Join(e.vault, "users", "local%3Abob", "diary.md")
	if b, err := os.ReadFile(bobFile); err != nil || string(b) != "BOB-PRIVATE" {
		t.Fatalf("bob's file on the host: %q %v", b, err)
	}
	if got := e.send("dev", "alice", "read bob's diary"); !strings.Contains(got, "alice done") {
		t.Fatalf("alice: %q", got)
	}
	if results := toolResults(e.model); strings.Contains(results, "BOB-PRIVATE") {
		// Bob's own write result may echo nothing; any occurrence of the
		// content in a tool result is alice reading it.
		t.Fatal("alice read bob's diary")
	}
	sessions := map[string]string{}
	for _, r := range e.records() {
		if r.Kind == "session" && r.Decision == "allow" {
			if prev, ok := sessions[r.SessionID]; ok && prev != r.User {
				t.Fatalf("session %s used by %s and %s", r.SessionID, prev, r.User)
			}
			sessions[r.SessionID] = r.User
		}
	}
}

// The audit log of a run verifies, and an edited copy does not.
func TestAuditVerifiesAndDetectsEdits(t *testing.T) {
	e := setup(t, privateBot, model.Script{Steps: []model.Step{model.Reply("ok")}, RepeatLast: true})
	e.send("dev", "alice", "hello")
	e.send("dev", "mallory", "hello")
	rep, err := audit.Verify(e.cfg.Audit.Dir)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	// An edited copy: flip mallory's deny into an allow.
	cp := t.TempDir()
	files, _ := audit.Files(e.cfg.Audit.Dir)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		b = []byte(strings.Replace(string(b), `"decision":"deny"`, `"decision":"allow"`, 1))
		if err := os.WriteFile(filepath.Join(cp, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = audit.Verify(cp)
	if err == nil && rep.OK() {
		t.Fatal("an edited audit log verified")
	}
}
