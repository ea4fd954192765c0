package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy"
)

const mcpInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

func mcpLines(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func toolCall(id int, tool, args string) string {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call",
		"params": map[string]any{"name": tool, "arguments": json.RawMessage(args)}})
	return string(b)
}

// answers indexes JSON-RPC answers by id ("null" for refusals of a message
// without one).
func answers(t *testing.T, out string) map[string]map[string]any {
	t.Helper()
	m := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var a map[string]any
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		id, _ := json.Marshal(a["id"])
		m[string(id)] = a
	}
	return m
}

func resultText(a map[string]any) (string, bool) {
	r, _ := a["result"].(map[string]any)
	isErr, _ := r["isError"].(bool)
	c, _ := r["content"].([]any)
	if len(c) == 0 {
		return "", isErr
	}
	first, _ := c[0].(map[string]any)
	s, _ := first["text"].(string)
	return s, isErr
}

func withStdin(t *testing.T, s string) {
	old := mcpStdin
	mcpStdin = strings.NewReader(s)
	t.Cleanup(func() { mcpStdin = old })
}

func TestMCPProxyCommand(t *testing.T) {
	base := t.TempDir()
	vault, state := filepath.Join(base, "vault"), filepath.Join(base, "state")
	os.MkdirAll(filepath.Join(vault, "users", "local%3Ame"), 0o700)
	tests := []struct {
		name  string
		flags []string
		call  string
		deny  string // reason the call is denied with, or "" for allowed
	}{
		{"write allowed", nil, toolCall(2, "write_file", `{"path":"a.txt","content":"hi"}`), ""},
		{"read-only refuses writes", []string{"--read-only"}, toolCall(2, "write_file", `{"path":"b.txt","content":"hi"}`), "read-only-mode"},
		{"outside refused", nil, toolCall(2, "read_file", `{"path":"../../../etc/passwd"}`), "path-outside-workspace"},
		{"hooks refused even direct", []string{"--trust", "direct"}, toolCall(2, "write_file", `{"path":".parachute/hooks/x","content":"x"}`), "hooks-write-forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			withStdin(t, mcpLines(mcpInit, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, tc.call, `[1,2]`))
			args := append([]string{"mcp", "proxy", "--vault", vault, "--identity", "local:me", "--state", state,
				"--policies", "../../policies"}, tc.flags...)
			code, out, errOut := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			a := answers(t, out)
			if a["1"]["result"] == nil {
				t.Fatalf("no initialize answer: %s", out)
			}
			if e, _ := a["null"]["error"].(map[string]any); e == nil || !strings.Contains(e["message"].(string), "batch") {
				t.Fatalf("batch not refused: %s", out)
			}
			text, isErr := resultText(a["2"])
			if tc.deny == "" {
				if isErr {
					t.Fatalf("refused: %s", text)
				}
				return
			}
			if !isErr || !strings.HasPrefix(text, "denied: ") || !strings.Contains(text, tc.deny) {
				t.Fatalf("got %q, want a denial for %s", text, tc.deny)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(vault, "users", "local%3Ame", "a.txt")); err != nil || string(b) != "hi" {
		t.Fatalf("allowed write did not land: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(vault, "users", "local%3Ame", "b.txt")); err == nil {
		t.Fatal("read-only write landed")
	}
	entries, _ := os.ReadDir(filepath.Join(state, "audit"))
	if len(entries) == 0 {
		t.Fatal("no audit log written")
	}
}

func TestMCPProxyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"mcp", "proxy", "--identity", "local:me"},                                             // no vault
		{"mcp", "proxy", "--vault", "/tmp", "--identity", "nocolon"},                           // bad identity
		{"mcp", "proxy", "--vault", "/tmp", "--trust", "root"},                                 // bad trust
		{"mcp", "proxy", "--vault", "/tmp/v", "--workspace", "/etc", "--identity", "local:me"}, // outside the vault
	} {
		withStdin(t, "")
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestMCPProxyUpstreamOnHostIsExplicit: an upstream command runs outside
// any sandbox only when the operator says so.
func TestMCPProxyUpstreamOnHostIsExplicit(t *testing.T) {
	vault := t.TempDir()
	withStdin(t, "")
	code, _, errOut := runCLI(t, "mcp", "proxy", "--vault", vault, "--identity", "local:me", "--state", t.TempDir(),
		"--policies", "../../policies", "--", "true")
	if code == 0 || !strings.Contains(errOut, "--upstream-on-host") {
		t.Fatalf("upstream command without --upstream-on-host: exit %d: %s", code, errOut)
	}
}

// TestMCPStdioBridge runs the sandbox-side bridge against a real proxy
// session served on a unix socket, as the gateway serves it.
func TestMCPStdioBridge(t *testing.T) {
	base := t.TempDir()
	vault := filepath.Join(base, "vault")
	ws := "users/telegram%3A1"
	os.MkdirAll(filepath.Join(vault, ws), 0o700)
	os.WriteFile(filepath.Join(vault, ws, "n.md"), []byte("note"), 0o600)
	eng, err := engine.New(context.Background(), engine.Options{PolicyDir: "../../policies"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := mcpproxy.New(context.Background(), mcpproxy.Options{Decider: eng, Vault: vault, Builtin: true})
	if err != nil {
		t.Fatal(err)
	}
	facts := engine.SessionFacts{ID: "s", Identity: "telegram:1", ConnectorType: "telegram", Role: "member",
		TrustLevel: "sandboxed", Workspace: ws}
	s, err := p.NewSession(context.Background(), mcpproxy.SessionOptions{
		Facts: func() engine.SessionFacts { return facts }, ClientRoot: "/workspace"})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "p.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", s.Handler())
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()

	withStdin(t, mcpLines(mcpInit,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		toolCall(2, "read_file", `{"path":"/workspace/n.md"}`),
		toolCall(3, "read_file", `{"path":"/etc/passwd"}`),
		`{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`,
		`{"jsonrpc":"2.0","id":4,"method":"resources/list"}`,
	))
	code, out, errOut := runCLI(t, "mcp", "stdio", "--socket", sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	a := answers(t, out)
	if text, isErr := resultText(a["2"]); isErr || text != "note" {
		t.Fatalf("read through the bridge: %q", text)
	}
	if text, _ := resultText(a["3"]); !strings.HasPrefix(text, "denied: path-outside-workspace") {
		t.Fatalf("outside read through the bridge: %q", text)
	}
	if a["null"]["error"] == nil || a["4"]["error"] == nil {
		t.Fatalf("roots change and unknown method not refused: %s", out)
	}

	// With no gateway behind the socket, a request still gets an answer.
	withStdin(t, mcpLines(toolCall(5, "read_file", `{"path":"n.md"}`)))
	_, out, _ = runCLI(t, "mcp", "stdio", "--socket", filepath.Join(base, "missing.sock"))
	if e, _ := answers(t, out)["5"]["error"].(map[string]any); e == nil {
		t.Fatalf("no error answer without a gateway: %s", out)
	}
}

func TestMCPApproveCommand(t *testing.T) {
	state := t.TempDir()
	os.WriteFile(filepath.Join(state, mcpproxy.PinsFile),
		[]byte(`{"pins":{"fs/run":"aaa"},"pending":{"fs/run":"bbb"}}`), 0o600)
	if code, out, _ := runCLI(t, "mcp", "approve", "--state", state); code != 0 || !strings.Contains(out, "fs/run") {
		t.Fatalf("listing pending: %d %q", code, out)
	}
	if code, _, _ := runCLI(t, "mcp", "approve", "--state", state, "nope"); code != 1 {
		t.Fatalf("approving an unknown tool: exit %d", code)
	}
	if code, out, _ := runCLI(t, "mcp", "approve", "--state", state, "fs/run"); code != 0 || !strings.Contains(out, "approved fs/run") {
		t.Fatalf("approve: %d %q", code, out)
	}
	b, _ := os.ReadFile(filepath.Join(state, mcpproxy.PinsFile))
	if !strings.Contains(string(b), `"fs/run": "bbb"`) || strings.Contains(string(b), "pending\": {\n") {
		t.Fatalf("pins after approve: %s", b)
	}
}
