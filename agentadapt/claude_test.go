package agentadapt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/agent/agenttest"
	"github.com/parachute-gateway/parachute/agentadapt"
	"github.com/parachute-gateway/parachute/test/fakes/model"
	"github.com/parachute-gateway/parachute/test/prereq"
)

func repoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}

// unavailable skips, or fails under CI=true (make deps installs the agents).
func unavailable(t *testing.T, why string) {
	t.Helper()
	prereq.Unavailable(t, "real-agent", why)
}

// claudeBinary is Claude Code's native binary as test/deps/40-agents.sh
// installs it.
func claudeBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(repoRoot(), "test/.state/npm-agents/node_modules/@anthropic-ai/claude-code-linux-x64/claude")
	if _, err := os.Stat(p); err != nil {
		unavailable(t, "Claude Code is not installed: run bash test/deps/40-agents.sh")
	}
	return p
}

var (
	buildOnce sync.Once
	parachute string
	buildErr  error
)

// parachuteBinary builds `parachute` for its `mcp stdio` bridge.
func parachuteBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "agentadapt-bin")
		if err != nil {
			buildErr = err
			return
		}
		parachute = filepath.Join(dir, "parachute")
		cmd := exec.Command(filepath.Join(goruntime.GOROOT(), "bin", "go"), "build", "-o", parachute, "./cmd/parachute")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build parachute: %v", buildErr)
	}
	return parachute
}

type turnOut struct {
	stdout, stderr string
	code           int
}

func runTurn(t *testing.T, gw *agenttest.Gateway, home string, req agent.Request) turnOut {
	t.Helper()
	return runKind(t, agentadapt.ClaudeCode, claudeBinary(t), gw, home, req)
}

func runKind(t *testing.T, kind, bin string, gw *agenttest.Gateway, home string, req agent.Request) turnOut {
	t.Helper()
	b, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env := map[string]string{"PARACHUTE_SOCKET": gw.Socket, "HOME": home, "PATH": "/usr/bin:/bin"}
	var out, errb, agentErr bytes.Buffer
	code := agentadapt.Run(ctx, agentadapt.Options{
		Kind: kind, Binary: bin, MCPCommand: []string{parachuteBinary(t), "mcp", "stdio"},
		Getenv: func(k string) string { return env[k] }, Stderr: &agentErr,
	}, bytes.NewReader(b), &out, &errb)
	if code != 0 {
		t.Logf("%s stderr: %s", kind, agentErr.String())
	}
	return turnOut{out.String(), errb.String(), code}
}

// The real Claude Code binary, against the stand-in socket: the turn
// reaches it, it calls the gateway's read_file over `parachute mcp stdio`,
// the tool's output goes back to the model, and the reply comes out; the
// next turn resumes the same conversation; an agent whose files are gone
// is given the gateway's history instead.
func TestClaudeCodeTurns(t *testing.T) {
	claudeBinary(t)
	gw := agenttest.New(t, map[string]string{"notes.md": "buy milk"}, model.Script{Steps: []model.Step{
		model.Call("mcp__parachute__read_file", map[string]any{"path": "/workspace/notes.md"}),
		model.Reply("Your notes say: buy milk."),
		model.Reply("You asked about your notes."),
		model.Reply("Still here."),
	}})
	home, ws := t.TempDir(), t.TempDir()
	req := agent.Request{SessionID: "s1", TurnID: "t1", Identity: "telegram:1", Text: "what is in my notes?",
		Model: agent.Model{Provider: "anthropic", Name: "claude-test"}, Workspace: ws}

	first := runTurn(t, gw, home, req)
	if first.code != 0 || strings.TrimSpace(first.stdout) != "Your notes say: buy milk." {
		t.Fatalf("first turn: code %d stdout %q stderr %q", first.code, first.stdout, first.stderr)
	}
	calls := gw.Calls()
	if len(calls) != 1 || calls[0].Name != "read_file" || calls[0].Args["path"] != "/workspace/notes.md" {
		t.Fatalf("tool calls %+v; want one read_file of notes.md", calls)
	}
	reqs := gw.Model.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d model requests; want 2", len(reqs))
	}
	if tr := reqs[1].ToolResults; len(tr) != 1 || !strings.Contains(tr[0].Content, "buy milk") {
		t.Fatalf("tool results sent back %+v", tr)
	}
	for _, r := range reqs {
		if r.Header.Get("X-Api-Key") != agentadapt.PlaceholderKey || r.Header.Get("Authorization") != "" {
			t.Fatalf("the agent sent credentials other than the placeholder: %v", r.Header)
		}
		if !r.Stream {
			t.Errorf("Claude Code did not stream")
		}
		for _, name := range r.ToolNames() {
			if !strings.HasPrefix(name, "mcp__parachute__") {
				t.Errorf("built-in tool %q offered while none is enabled", name)
			}
		}
	}

	req.TurnID, req.Text = "t2", "what did I ask?"
	req.History = []agent.Message{{Role: "user", Content: "what is in my notes?"}, {Role: "assistant", Content: "Your notes say: buy milk."}}
	second := runTurn(t, gw, home, req)
	if second.code != 0 || !strings.Contains(second.stdout, "You asked about your notes.") {
		t.Fatalf("second turn: code %d stdout %q stderr %q", second.code, second.stdout, second.stderr)
	}
	last := gw.Model.Requests()[2]
	if !mentions(last, "what is in my notes?") || !mentions(last, "Your notes say: buy milk.") || strings.Contains(last.LastUserText(), "Earlier messages") {
		t.Fatalf("second turn did not resume the first: %+v", last.Messages)
	}

	// A fresh HOME (the sandbox was restarted): the history is replayed.
	req.TurnID, req.Text = "t3", "still there?"
	third := runTurn(t, gw, t.TempDir(), req)
	if third.code != 0 || !strings.Contains(third.stdout, "Still here.") {
		t.Fatalf("third turn: code %d stdout %q stderr %q", third.code, third.stdout, third.stderr)
	}
	if u := gw.Model.Requests()[3].LastUserText(); !strings.Contains(u, "Earlier messages") || !strings.Contains(u, "buy milk") {
		t.Fatalf("history not replayed: %q", u)
	}
}

func mentions(r model.Request, text string) bool {
	for _, m := range r.Messages {
		if strings.Contains(m.Text, text) {
			return true
		}
	}
	return false
}

// Wrong configuration is one clear line and exit 1, before any agent runs.
func TestClaudeCodeRefusals(t *testing.T) {
	gw := agenttest.New(t, nil, model.Script{})
	tests := []struct {
		name string
		req  agent.Request
		want string
	}{
		{"OpenAI model", agent.Request{SessionID: "s1", Text: "hi", Model: agent.Model{Provider: "openai", Name: "gpt"}}, "needs an Anthropic model"},
		{"no model", agent.Request{SessionID: "s1", Text: "hi"}, "needs an Anthropic model"},
		{"session ID with a path", agent.Request{SessionID: "../../etc", Text: "hi", Model: agent.Model{Provider: "anthropic", Name: "m"}}, "not a gateway session ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := json.Marshal(tt.req)
			var out, errb bytes.Buffer
			code := agentadapt.Run(context.Background(), agentadapt.Options{Kind: agentadapt.ClaudeCode, Binary: "/nonexistent",
				Getenv: func(k string) string { return map[string]string{"PARACHUTE_SOCKET": gw.Socket, "HOME": t.TempDir()}[k] }},
				bytes.NewReader(b), &out, &errb)
			if code != 1 || out.Len() != 0 || !strings.Contains(errb.String(), tt.want) || strings.Count(errb.String(), "\n") != 1 {
				t.Fatalf("code %d stdout %q stderr %q; want exit 1, one line naming %q", code, out.String(), errb.String(), tt.want)
			}
		})
	}
}
