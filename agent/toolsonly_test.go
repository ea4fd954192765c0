package agent_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/agent/agenttest"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

func TestToolsOnlyCommands(t *testing.T) {
	files := map[string]string{
		"notes.md":       "buy milk",
		"projects/a.txt": "alpha",
		"readonly/x.md":  "fixed",
	}
	tests := []struct {
		name     string
		text     string
		wantCall *agenttest.ToolCall // nil: no tool call at all
		want     []string            // substrings of the reply
	}{
		{"ls workspace", "/ls", &agenttest.ToolCall{Name: "list_directory", Args: map[string]any{"path": "/workspace"}},
			[]string{"[FILE] notes.md", "[DIR] projects"}},
		{"ls folder", "/ls projects", &agenttest.ToolCall{Name: "list_directory", Args: map[string]any{"path": "/workspace/projects"}},
			[]string{"[FILE] a.txt"}},
		{"cat relative", "/cat notes.md", &agenttest.ToolCall{Name: "read_file", Args: map[string]any{"path": "/workspace/notes.md"}},
			[]string{"buy milk"}},
		{"cat with bot suffix", "/cat@parachute_bot notes.md", &agenttest.ToolCall{Name: "read_file", Args: map[string]any{"path": "/workspace/notes.md"}},
			[]string{"buy milk"}},
		{"write keeps newlines", "/write todo.md first\nsecond line", &agenttest.ToolCall{Name: "write_file", Args: map[string]any{"path": "/workspace/todo.md", "content": "first\nsecond line"}},
			[]string{"Successfully wrote to /workspace/todo.md"}},
		{"write text on the next line", "/write todo.md  \n  indented\nmore", &agenttest.ToolCall{Name: "write_file", Args: map[string]any{"path": "/workspace/todo.md", "content": "  indented\nmore"}},
			[]string{"Successfully wrote"}},
		{"write empty file", "/write empty.md", &agenttest.ToolCall{Name: "write_file", Args: map[string]any{"path": "/workspace/empty.md", "content": ""}},
			[]string{"Successfully wrote"}},
		{"absolute path passed as given", "/cat /workspace/notes.md", &agenttest.ToolCall{Name: "read_file", Args: map[string]any{"path": "/workspace/notes.md"}},
			[]string{"buy milk"}},
		{"find", "/find a.txt", &agenttest.ToolCall{Name: "search_files", Args: map[string]any{"path": "/workspace", "pattern": "a.txt"}},
			[]string{"/workspace/projects/a.txt"}},
		{"denied read is the reply", "/cat ../etc/passwd", &agenttest.ToolCall{Name: "read_file", Args: map[string]any{"path": "/etc/passwd"}},
			[]string{"denied:", "outside the workspace"}},
		{"denied write is the reply", "/write readonly/x.md changed", &agenttest.ToolCall{Name: "write_file", Args: map[string]any{"path": "/workspace/readonly/x.md", "content": "changed"}},
			[]string{"denied:", "write-forbidden"}},
		{"help", "/help", nil, []string{"/ls", "/cat PATH", "/write PATH TEXT", "/find PATTERN"}},
		{"free text says how to configure a model", "hello there", nil, []string{"model:", "gateway config", "/cat PATH"}},
		{"unknown command", "/rm notes.md", nil, []string{"Unknown command /rm", "/help"}},
		{"cat without path", "/cat", nil, []string{"usage: /cat PATH"}},
		{"write without path", "/write", nil, []string{"usage: /write PATH TEXT"}},
		{"find without pattern", "/find  ", nil, []string{"usage: /find PATTERN"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := agenttest.New(t, files, model.Script{})
			r := runTurn(t, gw, request(t, tc.text, ""), nil)
			wantSuccess(t, r)
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("reply %q does not contain %q", r.stdout, w)
				}
			}
			calls := gw.Calls()
			switch {
			case tc.wantCall == nil && len(calls) != 0:
				t.Errorf("tool calls %v; want none", calls)
			case tc.wantCall != nil && (len(calls) != 1 || !reflect.DeepEqual(calls[0], *tc.wantCall)):
				t.Errorf("tool calls %v; want exactly %v", calls, *tc.wantCall)
			}
			if n := len(gw.Model.Requests()); n != 0 {
				t.Errorf("model got %d requests in tools-only mode; want 0", n)
			}
		})
	}
}

func TestToolsOnlyWriteThenRead(t *testing.T) {
	gw := agenttest.New(t, nil, model.Script{})
	wantSuccess(t, runTurn(t, gw, request(t, "/write plan.md step one", ""), nil))
	if got, _ := gw.File("plan.md"); got != "step one" {
		t.Fatalf("plan.md = %q after /write; want %q", got, "step one")
	}
	r := runTurn(t, gw, request(t, "/cat plan.md", ""), nil)
	wantSuccess(t, r)
	if r.stdout != "step one" {
		t.Fatalf("/cat reply %q; want %q", r.stdout, "step one")
	}
}
