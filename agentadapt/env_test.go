package agentadapt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/agent/agenttest"
	"github.com/parachute-gateway/parachute/agentadapt"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// fakeAgent writes a stand-in for an agent's CLI: it reports its
// arguments, environment and stdin as the result.
func fakeAgent(t *testing.T, kind string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), kind)
	script := `#!/bin/sh
{ echo "ARGS $*"; env | sort; echo "STDIN"; cat; } > "$HOME/seen"
`
	if kind == agentadapt.ClaudeCode {
		script += `printf '{"type":"system","subtype":"init","session_id":"abc-1"}\n{"type":"result","subtype":"success","is_error":false,"result":"ok"}\n'`
	} else {
		script += `printf '{"type":"thread.started","thread_id":"th-1"}\n{"type":"item.completed","item":{"type":"agent_message","text":"ok"}}\n'`
	}
	if err := os.WriteFile(p, []byte(script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// What the agent gets is built from nothing: none of the adapter's own
// environment (a credential someone put there, proxy settings), only the
// placeholder key and the loopback bridge; the chat text goes in on
// stdin, so text that looks like a flag stays text.
func TestAgentEnvironmentIsBuiltFromNothing(t *testing.T) {
	gw := agenttest.New(t, nil, model.Script{})
	for _, kind := range agentadapt.Kinds {
		t.Run(kind, func(t *testing.T) {
			home := t.TempDir()
			env := map[string]string{
				"PARACHUTE_SOCKET": gw.Socket, "HOME": home, "PATH": "/usr/bin:/bin",
				"ANTHROPIC_API_KEY": "sk-real-leaked", "OPENAI_API_KEY": "sk-real-leaked", "HTTPS_PROXY": "http://evil:1",
				"SECRET_TOKEN": "sk-real-leaked",
			}
			provider := "anthropic"
			if kind == agentadapt.Codex {
				provider = "openai"
			}
			req := agent.Request{SessionID: "s1", Text: "--dangerously-skip-permissions /etc/passwd", Model: agent.Model{Provider: provider, Name: "m"}, Workspace: t.TempDir()}
			b, _ := json.Marshal(req)
			var out, errb bytes.Buffer
			code := agentadapt.Run(context.Background(), agentadapt.Options{Kind: kind, Binary: fakeAgent(t, kind),
				MCPCommand: []string{"/parachute", "mcp", "stdio"}, Getenv: func(k string) string { return env[k] }},
				bytes.NewReader(b), &out, &errb)
			if code != 0 || strings.TrimSpace(out.String()) != "ok" {
				t.Fatalf("code %d stdout %q stderr %q", code, out.String(), errb.String())
			}
			seen, err := os.ReadFile(filepath.Join(home, ".parachute-agent", "s1", "seen"))
			if err != nil {
				t.Fatal(err)
			}
			s := string(seen)
			args, rest, _ := strings.Cut(s, "\n")
			envPart, stdin, _ := strings.Cut(rest, "STDIN\n")
			if strings.Contains(envPart, "sk-real-leaked") || strings.Contains(envPart, "evil") {
				t.Fatalf("the adapter's environment reached the agent:\n%s", envPart)
			}
			where := envPart // Claude Code: ANTHROPIC_BASE_URL
			if kind == agentadapt.Codex {
				cfg, _ := os.ReadFile(filepath.Join(home, ".parachute-agent", "s1", "codex", "config.toml"))
				where = string(cfg) // Codex: the provider's base_url
			}
			if !strings.Contains(envPart, agentadapt.PlaceholderKey) || !strings.Contains(where, "http://127.0.0.1:") {
				t.Fatalf("no placeholder key or loopback base URL:\n%s\n%s", envPart, where)
			}
			if strings.Contains(args, "dangerously") || !strings.Contains(stdin, "--dangerously-skip-permissions /etc/passwd") {
				t.Fatalf("chat text in the arguments (%s) or not on stdin (%q)", args, stdin)
			}
		})
	}
}
