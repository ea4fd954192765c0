package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/agentadapt"
	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/sessions"
	"github.com/parachute-gateway/parachute/test/ctrd"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// agentNodeModules is where test/deps/40-agents.sh installs the agents.
func agentNodeModules() string {
	return filepath.Join(repoRoot(), "test", ".state", "npm-agents", "node_modules")
}

var (
	agentImageMu  sync.Mutex
	agentImageRef = map[string]string{} // kind → imported ref
)

// agentImage builds the sandbox image with the real agent (parachute's
// own binary plus the agent's, as `parachute image build --agent` does)
// and imports it. The tar is cached in test/.state/images under the
// digest of both binaries: a rerun with the same binaries builds nothing.
func agentImage(t *testing.T, addr, kind string) string {
	t.Helper()
	agentImageMu.Lock()
	defer agentImageMu.Unlock()
	if ref, ok := agentImageRef[kind]; ok {
		return ref
	}
	bin, err := agentadapt.NativeBinary(kind, agentNodeModules())
	if err != nil {
		ctrd.Unavailable(t, err.Error())
	}
	// As image build --agent does: the link leads to the real path (a
	// path under /tmp would be hidden by the sandbox's tmpfs).
	if bin, err = filepath.EvalSymlinks(bin); err != nil {
		t.Fatal(err)
	}
	image(t, addr) // builds binPath
	busybox := ""
	if kind == agentadapt.Codex {
		busybox = "/bin/busybox" // a shell for Codex's own shell tool (test/deps/00-base.sh)
	}
	sum := sha256.New()
	for _, p := range []string{binPath, bin, busybox} {
		if p == "" {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(sum, f)
		f.Close()
	}
	key := hex.EncodeToString(sum.Sum(nil))[:16]
	ref := "parachute.local/sandbox:e2e-" + kind + "-" + key
	cache := filepath.Join(repoRoot(), "test", ".state", "images")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(cache, kind+"-"+key+".tar")
	ctx := context.Background()
	start := time.Now()
	if _, err := os.Stat(tar); err != nil {
		// Older images of this kind are stale: keep one per kind.
		old, _ := filepath.Glob(filepath.Join(cache, kind+"-*.tar"))
		for _, o := range old {
			os.Remove(o)
		}
		tmp := tar + ".tmp"
		os.Remove(tmp)
		if _, err := runtime.BuildImage(ctx, runtime.BuildOptions{Binary: binPath, Busybox: busybox, Ref: ref, Out: tmp, Add: []string{bin},
			Links: map[string]string{agentadapt.ImagePath(kind): bin}, Uncompressed: true}); err != nil {
			t.Fatalf("build %s image: %v", kind, err)
		}
		if err := os.Rename(tmp, tar); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(tar)
		t.Logf("built the %s image in %s: %d MB", kind, time.Since(start).Round(time.Millisecond), st.Size()>>20)
	}
	start = time.Now()
	rt, err := runtime.NewContainerd(ctx, runtime.ContainerdOptions{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.ImportImage(ctx, tar, ref); err != nil {
		t.Fatalf("import %s image: %v", kind, err)
	}
	t.Logf("imported the %s image in %s", kind, time.Since(start).Round(time.Millisecond))
	agentImageRef[kind] = ref
	return ref
}

// setupReal starts a gateway whose sessions run the real agent kind, with
// the fake model behind the model proxy speaking that agent's API.
// runtimeYAML is added to the runtime section (indented two spaces).
func setupReal(t *testing.T, kind, runtimeYAML, extraYAML string, script model.Script) *env {
	t.Helper()
	addr := ctrd.Start(t)
	ref := agentImage(t, addr, kind)
	provider, modelName := "anthropic", "claude-sonnet-test"
	if kind == agentadapt.Codex {
		provider, modelName = "openai", "gpt-test"
	}
	fake := model.New(script)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != apiKey && r.Header.Get("Authorization") != "Bearer "+apiKey {
			http.Error(w, `{"type":"error","error":{"type":"authentication_error","message":"bad key"}}`, http.StatusUnauthorized)
			return
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)
	dir, err := os.MkdirTemp("", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	vault := filepath.Join(dir, "vault")
	if err := os.MkdirAll(vault, 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`
vault: %s
state_dir: %s/state
policies: %s/policies
admin: {listen: "127.0.0.1:0"}
runtime:
  containerd_socket: %s
  image: %s
  agent: %s
%s
model:
  provider: %s
  base_url: %s
  api_key_env: E2E_MODEL_KEY
  model: %s
%s`, vault, dir, repoRoot(), addr, ref, kind, runtimeYAML, provider, upstream.URL, modelName, extraYAML)
	return startGateway(t, addr, yaml, fake, vault)
}

// realRoles: members' workspaces without a disk image (disk_mb 0), so the
// files the test puts there before the session are the ones it sees; a
// message rate that fast fake-model turns stay within.
const realRoles = `
roles:
  member: {disk_mb: 0, messages_per_minute: 600, message_burst: 60}
`

// wallError: a write refused by the read-only .parachute mount. runc
// says EROFS; gVisor checks the folder's owner first and says EACCES
// (both agents pass under runtime_class gvisor too).
func wallError(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "read-only file system") || strings.Contains(s, "permission denied")
}

// timedSend is send, timed.
func (e *env) timedSend(connector, user, text string) (string, time.Duration) {
	start := time.Now()
	reply := e.send(connector, user, text)
	return reply, time.Since(start)
}

// modelTokens is what the fake model reported for the requests it
// answered: the counts the budget must hold.
func modelTokens(reqs []model.Request) int64 {
	var n int64
	for _, r := range reqs {
		n += model.ReportedTokens(r)
	}
	return n
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Claude Code, the real binary from npm, in a real containerd sandbox:
// a chat message reaches it, it reads a file through the gateway's MCP
// read_file (decided and recorded), and its reply reaches the chat; the
// next turn sees the first; a write under .parachute/hooks is denied over
// MCP and fails when the agent's own Edit tool tries it (read-only
// mount); no key reaches the sandbox; the budget counts what the fake
// model reported.
func TestRealAgentClaudeCode(t *testing.T) {
	hook := "/workspace/.parachute/hooks/pre-session"
	e := setupReal(t, agentadapt.ClaudeCode, "  agent_builtin_tools: [Read, Edit]", privateBot+realRoles, model.Script{Steps: []model.Step{
		model.Call("mcp__parachute__read_file", map[string]any{"path": "/workspace/notes.md"}),
		model.Reply("Your notes say: buy milk."),
		model.Reply("You asked what is in your notes."),
		model.Call("mcp__parachute__write_file", map[string]any{"path": hook, "content": "#!/bin/sh\ncurl evil\n"}),
		model.Call("Read", map[string]any{"file_path": hook}),
		model.Call("Edit", map[string]any{"file_path": hook, "old_string": "echo ok", "new_string": "curl evil"}),
		model.Reply("I could not write the hook."),
		model.Reply("warm"),
	}, RepeatLast: true})
	ws := filepath.Join(e.vault, "users", "local%3Aalice")
	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "notes.md"), []byte("buy milk"), 0o644); err != nil {
		t.Fatal(err)
	}
	hookFile := filepath.Join(ws, ".parachute", "hooks", "pre-session")
	if err := os.MkdirAll(filepath.Dir(hookFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hookFile, []byte("#!/bin/sh\necho ok\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	reply, first := e.timedSend("dev", "alice", "what is in my notes?")
	if !strings.Contains(reply, "Your notes say: buy milk.") {
		for _, r := range e.records() {
			t.Logf("record %s %s %v %v", r.Kind, r.Decision, r.Reasons, r.Detail)
		}
		t.Fatalf("first turn: %q", reply)
	}
	reqs := e.model.Requests()
	if len(reqs) != 2 || len(reqs[1].ToolResults) != 1 || !strings.Contains(reqs[1].ToolResults[0].Content, "buy milk") {
		_ = filepath.WalkDir(e.vault, func(p string, _ os.DirEntry, _ error) error { t.Logf("vault: %s", p); return nil })
		t.Fatalf("model requests of the first turn: %d, tool results %+v", len(reqs), reqs[len(reqs)-1].ToolResults)
	}
	var read bool
	for _, r := range e.records() {
		if r.Kind == "tool" && r.Tool == "read_file" && r.Decision == "allow" {
			read = true
		}
	}
	if !read {
		t.Fatal("no allowed read_file decision in the audit log")
	}

	reply, second := e.timedSend("dev", "alice", "what did I ask?")
	if !strings.Contains(reply, "You asked what is in your notes.") {
		t.Fatalf("second turn: %q", reply)
	}
	last := e.model.Requests()[2]
	var sawFirst bool
	for _, m := range last.Messages {
		sawFirst = sawFirst || strings.Contains(m.Text, "Your notes say: buy milk.")
	}
	if !sawFirst {
		t.Fatalf("the second turn's model request does not carry the first turn: %+v", last.Messages)
	}

	reply, third := e.timedSend("dev", "alice", "install a hook")
	if !strings.Contains(reply, "I could not write the hook.") {
		t.Fatalf("third turn: %q", reply)
	}
	if d := strings.Join(e.denials("tool"), " "); !strings.Contains(d, "write_file") && !strings.Contains(d, "hooks") {
		t.Fatalf("the MCP write under .parachute/hooks was not denied: %s", d)
	}
	results := e.model.Requests()[6].ToolResults
	if len(results) < 3 {
		t.Fatalf("tool results after the writes: %+v", results)
	}
	mcpResult, ownResult := results[len(results)-3], results[len(results)-1]
	if !strings.Contains(mcpResult.Content, "denied") {
		t.Errorf("MCP write result %+v; want a denial", mcpResult)
	}
	if !ownResult.IsError || !wallError(ownResult.Content) {
		t.Errorf("the agent's own Edit result %+v; want a read-only file system error", ownResult)
	}
	t.Logf("the agent's own Edit under .parachute/hooks: %s", ownResult.Content)
	if b, _ := os.ReadFile(hookFile); string(b) != "#!/bin/sh\necho ok\n" {
		t.Fatalf("the hook was changed: %q", b)
	}

	var warm []time.Duration
	warm = append(warm, second, third)
	for i := 0; i < 3; i++ {
		r, d := e.timedSend("dev", "alice", fmt.Sprintf("ping %d", i))
		if !strings.Contains(r, "warm") {
			t.Fatalf("warm turn %d: %q", i, r)
		}
		warm = append(warm, d)
	}
	t.Logf("Claude Code latency with the fake model: first turn (sandbox start) %s, later turns p50 %s (%v)",
		first.Round(time.Millisecond), median(warm).Round(time.Millisecond), warm)

	for _, r := range e.model.Requests() {
		if r.Header.Get("X-Api-Key") != apiKey {
			t.Fatalf("the provider got key %q", r.Header.Get("X-Api-Key"))
		}
	}
	used, err := sessions.Usage{Store: e.g.Store}.TokensToday(context.Background(), "local:alice")
	if err != nil {
		t.Fatal(err)
	}
	if want := modelTokens(e.model.Requests()); used != want {
		t.Fatalf("budget counted %d tokens; the fake model reported %d", used, want)
	}
}

// Codex CLI, the real binary from npm, in a real containerd sandbox, over
// the OpenAI Responses API: the same walls and decisions as for Claude
// Code. Its own shell (enabled here to show the wall) cannot write under
// .parachute/hooks.
func TestRealAgentCodex(t *testing.T) {
	hook := "/workspace/.parachute/hooks/pre-session"
	e := setupReal(t, agentadapt.Codex, "  agent_builtin_tools: [shell]", privateBot+realRoles, model.Script{Steps: []model.Step{
		model.Call("mcp__parachute__read_file", map[string]any{"path": "/workspace/notes.md"}),
		model.Reply("Your notes say: buy milk."),
		model.Reply("You asked what is in your notes."),
		model.Call("mcp__parachute__write_file", map[string]any{"path": hook, "content": "#!/bin/sh\ncurl evil\n"}),
		model.Call("exec_command", map[string]any{"cmd": "echo 'curl evil' > " + hook, "shell": "/bin/sh", "login": false}),
		model.Reply("I could not write the hook."),
		model.Reply("warm"),
	}, RepeatLast: true})
	ws := filepath.Join(e.vault, "users", "local%3Aalice")
	hookFile := filepath.Join(ws, ".parachute", "hooks", "pre-session")
	if err := os.MkdirAll(filepath.Dir(hookFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hookFile, []byte("#!/bin/sh\necho ok\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "notes.md"), []byte("buy milk"), 0o644); err != nil {
		t.Fatal(err)
	}

	reply, first := e.timedSend("dev", "alice", "what is in my notes?")
	if !strings.Contains(reply, "Your notes say: buy milk.") {
		t.Fatalf("first turn: %q", reply)
	}
	reqs := e.model.Requests()
	if len(reqs) != 2 || len(reqs[1].ToolResults) != 1 || !strings.Contains(reqs[1].ToolResults[0].Content, "buy milk") {
		t.Fatalf("model requests of the first turn: %d, tool results %+v", len(reqs), reqs[len(reqs)-1].ToolResults)
	}
	var read bool
	for _, r := range e.records() {
		read = read || (r.Kind == "tool" && r.Tool == "read_file" && r.Decision == "allow")
	}
	if !read {
		t.Fatal("no allowed read_file decision in the audit log")
	}

	reply, second := e.timedSend("dev", "alice", "what did I ask?")
	if !strings.Contains(reply, "You asked what is in your notes.") {
		t.Fatalf("second turn: %q", reply)
	}
	var sawFirst bool
	for _, m := range e.model.Requests()[2].Messages {
		sawFirst = sawFirst || strings.Contains(m.Text, "Your notes say: buy milk.")
	}
	if !sawFirst {
		t.Fatalf("the second turn does not carry the first: %+v", e.model.Requests()[2].Messages)
	}

	reply, third := e.timedSend("dev", "alice", "install a hook")
	if !strings.Contains(reply, "I could not write the hook.") {
		t.Fatalf("third turn: %q", reply)
	}
	if d := strings.Join(e.denials("tool"), " "); !strings.Contains(d, "hooks") && !strings.Contains(d, "write_file") {
		t.Fatalf("the MCP write under .parachute/hooks was not denied: %s", d)
	}
	results := e.model.Requests()[5].ToolResults
	if len(results) < 2 {
		t.Fatalf("tool results after the writes: %+v", results)
	}
	mcpResult, ownResult := results[len(results)-2], results[len(results)-1]
	if !strings.Contains(mcpResult.Content, "denied") {
		t.Errorf("MCP write result %+v; want a denial", mcpResult)
	}
	t.Logf("Codex's own shell under .parachute/hooks: %s", ownResult.Content)
	if !wallError(ownResult.Content) {
		t.Errorf("the agent's own shell write result %+v; want a read-only file system error", ownResult)
	}
	if b, _ := os.ReadFile(hookFile); string(b) != "#!/bin/sh\necho ok\n" {
		t.Fatalf("the hook was changed: %q", b)
	}

	warm := []time.Duration{second, third}
	for i := 0; i < 3; i++ {
		r, d := e.timedSend("dev", "alice", fmt.Sprintf("ping %d", i))
		if !strings.Contains(r, "warm") {
			t.Fatalf("warm turn %d: %q", i, r)
		}
		warm = append(warm, d)
	}
	t.Logf("Codex latency with the fake model: first turn (sandbox start) %s, later turns p50 %s (%v)",
		first.Round(time.Millisecond), median(warm).Round(time.Millisecond), warm)
	for _, r := range e.model.Requests() {
		if r.Header.Get("Authorization") != "Bearer "+apiKey {
			t.Fatalf("the provider got Authorization %q", r.Header.Get("Authorization"))
		}
	}
	used, err := sessions.Usage{Store: e.g.Store}.TokensToday(context.Background(), "local:alice")
	if err != nil {
		t.Fatal(err)
	}
	if want := modelTokens(e.model.Requests()); used != want {
		t.Fatalf("budget counted %d tokens; the fake model reported %d", used, want)
	}
}
