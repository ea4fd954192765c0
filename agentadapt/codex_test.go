package agentadapt_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/agent/agenttest"
	"github.com/parachute-gateway/parachute/agentadapt"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

func codexBinary(t *testing.T) string {
	t.Helper()
	p, err := agentadapt.NativeBinary(agentadapt.Codex, filepath.Join(repoRoot(), "test/.state/npm-agents/node_modules"))
	if err != nil {
		unavailable(t, err.Error())
	}
	return p
}

// The real Codex CLI against the stand-in socket, over the Responses API:
// it calls the gateway's read_file through `parachute mcp stdio`, replies,
// resumes its thread on the next turn, and is offered no tool of its own
// (no shell, no web search, which the gateway would have to refuse).
func TestCodexTurns(t *testing.T) {
	bin := codexBinary(t)
	gw := agenttest.New(t, map[string]string{"notes.md": "buy milk"}, model.Script{Steps: []model.Step{
		model.Call("mcp__parachute__read_file", map[string]any{"path": "/workspace/notes.md"}),
		model.Reply("Your notes say: buy milk."),
		model.Reply("You asked about your notes."),
	}})
	home, ws := t.TempDir(), t.TempDir()
	req := agent.Request{SessionID: "s1", TurnID: "t1", Identity: "telegram:1", Text: "what is in my notes?",
		Model: agent.Model{Provider: "openai", Name: "gpt-test"}, Workspace: ws}
	first := runKind(t, agentadapt.Codex, bin, gw, home, req)
	if first.code != 0 || strings.TrimSpace(first.stdout) != "Your notes say: buy milk." {
		t.Fatalf("first turn: code %d stdout %q stderr %q", first.code, first.stdout, first.stderr)
	}
	calls := gw.Calls()
	if len(calls) != 1 || calls[0].Name != "read_file" {
		for _, r := range gw.Model.Requests() {
			t.Logf("tools %v results %+v body %s", r.ToolNames(), r.ToolResults, r.Body)
		}
		t.Fatalf("tool calls %+v; want one read_file", calls)
	}
	reqs := gw.Model.Requests()
	if len(reqs) != 2 || len(reqs[1].ToolResults) != 1 || !strings.Contains(reqs[1].ToolResults[0].Content, "buy milk") {
		t.Fatalf("model requests %d, tool results %+v", len(reqs), reqs[len(reqs)-1].ToolResults)
	}
	for _, r := range reqs {
		if r.Path != model.ResponsesPath || !r.Stream {
			t.Errorf("request to %s (stream %v); want a streamed Responses call", r.Path, r.Stream)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+agentadapt.PlaceholderKey {
			t.Errorf("Authorization %q; want the placeholder", got)
		}
		for _, name := range r.ToolNames() {
			if !strings.HasPrefix(name, "mcp__parachute/") && name != "request_user_input" && !strings.Contains(name, "mcp_resource") {
				t.Errorf("tool %q offered; want only the gateway's", name)
			}
		}
	}
	req.TurnID, req.Text = "t2", "what did I ask?"
	req.History = []agent.Message{{Role: "user", Content: "what is in my notes?"}, {Role: "assistant", Content: "Your notes say: buy milk."}}
	second := runKind(t, agentadapt.Codex, bin, gw, home, req)
	if second.code != 0 || !strings.Contains(second.stdout, "You asked about your notes.") {
		t.Fatalf("second turn: code %d stdout %q stderr %q", second.code, second.stdout, second.stderr)
	}
	last := gw.Model.Requests()[2]
	if !mentions(last, "Your notes say: buy milk.") || strings.Contains(last.LastUserText(), "Earlier messages") {
		t.Fatalf("second turn did not resume the thread: %+v", last.Messages)
	}
	if _, err := os.Stat(filepath.Join(ws, "AGENTS.md")); err == nil {
		t.Fatal("codex wrote into the workspace")
	}
}
