package agentadapt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/agent/agenttest"
	"github.com/parachute-gateway/parachute/agentadapt"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// TestAdapterProgressLines: with PARACHUTE_PROGRESS=1 each message the
// agent writes in its event stream (Claude Code's assistant text blocks,
// Codex's agent_message items) becomes a progress line as it arrives, and
// the reply follows; without it stdout is the reply alone. The agents are
// stand-in scripts printing their CLIs' documented event lines.
func TestAdapterProgressLines(t *testing.T) {
	for _, tt := range []struct {
		kind, provider, events string
	}{
		{agentadapt.ClaudeCode, "anthropic", `{"type":"system","subtype":"init","session_id":"s-1"}
{"type":"assistant","message":{"content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"t","name":"mcp__parachute__read_file","input":{}}]},"session_id":"s-1"}
{"type":"assistant","message":{"content":[{"type":"text","text":"Your notes say: buy milk."}]},"session_id":"s-1"}
{"type":"result","subtype":"success","is_error":false,"result":"Your notes say: buy milk.","session_id":"s-1"}`},
		{agentadapt.Codex, "openai", `{"type":"thread.started","thread_id":"th-1"}
{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"Let me look."}}
{"type":"item.completed","item":{"id":"i2","type":"agent_message","text":"Your notes say: buy milk."}}
{"type":"turn.completed","usage":{"input_tokens":1,"output_tokens":1}}`},
	} {
		for _, streaming := range []bool{true, false} {
			t.Run(tt.kind, func(t *testing.T) {
				dir := t.TempDir()
				bin := filepath.Join(dir, "agent")
				script := "#!/bin/sh\ncat >/dev/null\ncat <<'EOF'\n" + tt.events + "\nEOF\n"
				if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
				gw := agenttest.New(t, nil, model.Script{})
				env := map[string]string{"PARACHUTE_SOCKET": gw.Socket, "HOME": t.TempDir(), "PATH": "/usr/bin:/bin"}
				if streaming {
					env[agent.ProgressEnv] = "1"
				}
				b, _ := json.Marshal(agent.Request{SessionID: "s1", TurnID: "t1", Identity: "telegram:1", Text: "notes?",
					Model: agent.Model{Provider: tt.provider, Name: "m"}, Workspace: t.TempDir()})
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var out, errb bytes.Buffer
				code := agentadapt.Run(ctx, agentadapt.Options{Kind: tt.kind, Binary: bin, MCPCommand: []string{"/bin/true"},
					Getenv: func(k string) string { return env[k] }}, bytes.NewReader(b), &out, &errb)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errb.String())
				}
				want := "Your notes say: buy milk.\n"
				if streaming {
					want = string(agent.ProgressLine("Let me look.\n\n")) + string(agent.ProgressLine("Your notes say: buy milk.\n\n")) + want
				}
				if got := out.String(); got != want {
					t.Errorf("stdout %q, want %q", got, want)
				}
				if strings.Contains(out.String(), "progress") != streaming {
					t.Errorf("progress lines %v, want %v", !streaming, streaming)
				}
			})
		}
	}
}
