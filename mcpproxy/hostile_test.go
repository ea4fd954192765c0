package mcpproxy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
)

// needOrSkip skips a test that lacks an outside part, or fails it in CI,
// where every part must be there.
func needOrSkip(t testing.TB, what, how string) {
	t.Helper()
	msg := what + " is missing: " + how
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// filesystemServer is the path of the reference npm filesystem server.
func filesystemServer(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		needOrSkip(t, "node", "install nodejs")
	}
	bin := filepath.Join(repoRoot(t), "test", ".state", "npm", "node_modules", ".bin", "mcp-server-filesystem")
	if _, err := os.Stat(bin); err != nil {
		needOrSkip(t, "@modelcontextprotocol/server-filesystem", "run bash test/deps/20-mcp-filesystem.sh")
	}
	return bin
}

// backend starts a proxy session over the fixture, either on the built-in
// server or on the npm reference server, and connects a client to it over
// a unix socket.
type backend struct {
	name string
	opts func(t testing.TB, f fixture) Options
}

var backends = []backend{
	{"builtin", func(t testing.TB, f fixture) Options {
		return Options{Vault: f.vault, Builtin: true}
	}},
	{"npm-filesystem-on-host", func(t testing.TB, f fixture) Options {
		return Options{Vault: f.vault, Upstreams: []Upstream{{Name: "fs", Command: []string{filesystemServer(t), f.ws}, OnHost: true}}}
	}},
	{"npm-filesystem-sandboxed", sandboxedNPM},
}

func startSession(t testing.TB, b backend, f fixture, rec *recorder, readOnly bool) (*Proxy, *mcp.ClientSession) {
	t.Helper()
	opts := b.opts(t, f)
	opts.Decider = newEngine(t, rec)
	opts.StateDir = t.TempDir()
	p, err := New(context.Background(), opts)
	must(t, err)
	t.Cleanup(func() { p.Close() })
	s, err := p.NewSession(context.Background(), SessionOptions{
		Facts: func() engine.SessionFacts { return facts(readOnly) }, ClientRoot: "/workspace",
	})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return p, connectHTTP(t, s.Handler())
}

// hostileCase is one call and the policy reasons it must be denied with; no
// reasons means policy allows it (the upstream may still fail it).
type hostileCase struct {
	name    string
	tool    string
	args    func(f fixture) map[string]any
	reasons []string
	// upstreamErr: allowed by policy but the upstream must fail it.
	upstreamErr bool
}

func p(path string) func(fixture) map[string]any {
	return func(fixture) map[string]any { return map[string]any{"path": path} }
}

func w(path string) func(fixture) map[string]any {
	return func(fixture) map[string]any { return map[string]any{"path": path, "content": "pwned"} }
}

const (
	outside = "path-outside-workspace"
	hooks   = "hooks-write-forbidden"
	invalid = "invalid-path"
	ro      = "read-only-mode"
)

var hostileCases = []hostileCase{
	{"plain read is allowed", "read_file", p("/workspace/notes.md"), nil, false},
	{"dotdot traversal", "read_file", p("../../../outside/canary"), []string{outside}, false},
	{"client root dotdot", "read_file", p("/workspace/../../outside/canary"), []string{outside}, false},
	{"absolute outside", "read_file", p("/etc/passwd"), []string{outside}, false},
	{"absolute host canary", "read_file", func(f fixture) map[string]any { return map[string]any{"path": f.canary} }, []string{outside}, false},
	{"sibling prefix client view", "read_file", p("/workspace_evil/x"), []string{outside}, false},
	{"sibling prefix host view", "read_file", func(f fixture) map[string]any {
		return map[string]any{"path": f.vault + "/users/telegram%3A1_evil/x"}
	}, []string{outside}, false},
	{"sibling prefix relative", "read_file", p("../telegram%3A1_evil/x"), []string{outside}, false},
	{"symlinked file pointing out", "read_file", p("link-file"), []string{outside}, false},
	{"symlinked dir pointing out", "read_file", p("link-dir/canary"), []string{outside}, false},
	{"relative link climbing out", "read_file", p("sub/climb"), []string{outside}, false},
	{"new file under symlinked parent", "write_file", w("link-dir/new.txt"), []string{outside}, false},
	{"planted link as write target", "write_file", w("planted"), []string{outside}, false},
	{"hard link to outside file read", "read_file", p("hard"), []string{invalid}, false},
	{"hard link to outside file write", "write_file", w("hard"), []string{invalid}, false},
	{"proc self root", "read_file", p("/proc/self/root" + "/etc/passwd"), []string{outside}, false},
	{"percent-encoded dotdot is literal", "read_file", p("%2e%2e/%2e%2e/%2e%2e/outside/canary"), nil, true},
	{"double-encoded dotdot is literal", "read_file", p("%252e%252e/%252e%252e/outside/canary"), nil, true},
	{"hooks case variant", "write_file", w(".PARACHUTE/Hooks/x.sh"), []string{hooks}, false},
	{"hooks dot and double slash", "write_file", w("./.parachute//hooks/../hooks/x"), []string{hooks}, false},
	{"hooks client root", "write_file", w("/workspace/.parachute/hooks/x.sh"), []string{hooks}, false},
	{"hooks mixed case", "write_file", w(".Parachute/HOOKS/x.sh"), []string{hooks}, false},
	{"hooks NFD file name", "write_file", w(".parachute/hooks/cafe\u0301.sh"), []string{hooks}, false},
	{"NFD name reads the NFC file", "read_file", p("cafe\u0301.md"), nil, false},
	{"hooks folder create", "create_directory", p(".parachute/hooks/new"), []string{hooks}, false},
	{"parachute folder itself", "create_directory", p(".parachute"), []string{hooks}, false},
	{"parachute folder write", "write_file", w(".parachute/x2"), []string{"parachute-dir-read-only"}, false},
	{"parachute folder case variant", "write_file", w("sub/../.PARACHUTE/config.json"), []string{"parachute-dir-read-only"}, false},
	{"parachute folder mkdir", "create_directory", p(".parachute/other"), []string{"parachute-dir-read-only"}, false},
	{"move out of parachute folder", "move_file", func(fixture) map[string]any {
		return map[string]any{"source": ".parachute/hooks", "destination": "stolen-hooks"}
	}, []string{hooks}, false},
	{"FIFO is refused at once", "read_file", p("fifo"), []string{invalid}, false},
	{"FIFO as a write target", "write_file", w("fifo"), []string{invalid}, false},
	{"alias dot slash", "read_file", p("./notes.md"), nil, false},
	{"alias sub dotdot", "read_file", p("sub/../notes.md"), nil, false},
	{"alias double slash absolute is host root", "read_file", p("//notes.md"), []string{outside}, false},
	{"NUL in path", "read_file", p("notes.md\x00.txt"), []string{invalid}, false},
	{"path not a string", "read_file", func(fixture) map[string]any { return map[string]any{"path": 5} }, []string{invalid}, false},
	{"move source bad", "move_file", func(fixture) map[string]any {
		return map[string]any{"source": "link-file", "destination": "stolen"}
	}, []string{outside}, false},
	{"move destination bad", "move_file", func(fixture) map[string]any {
		return map[string]any{"source": "sub/other.md", "destination": "../../../outside/moved"}
	}, []string{outside}, false},
	{"move into hooks", "move_file", func(fixture) map[string]any {
		return map[string]any{"source": "sub/other.md", "destination": ".parachute/hooks/run.sh"}
	}, []string{hooks}, false},
	{"read_multiple_files one bad", "read_multiple_files", func(fixture) map[string]any {
		return map[string]any{"paths": []any{"notes.md", "link-file"}}
	}, []string{outside}, false},
	{"read_multiple_files one not a string", "read_multiple_files", func(fixture) map[string]any {
		return map[string]any{"paths": []any{"notes.md", 7}}
	}, []string{invalid}, false},
}

func TestHostile(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			f := newFixture(t)
			rec := &recorder{}
			_, cs := startSession(t, b, f, rec, false)
			for _, tc := range hostileCases {
				t.Run(tc.name, func(t *testing.T) {
					before := rec.count()
					text, isErr := callText(t, cs, tc.tool, tc.args(f))
					last, n := rec.last()
					if n != before+1 {
						t.Fatalf("%d decisions recorded for one call, want 1", n-before)
					}
					if last.in.Tool.Name != tc.tool {
						t.Fatalf("recorded decision is for %q", last.in.Tool.Name)
					}
					if strings.Contains(text, canaryText) {
						t.Fatalf("canary leaked: %q", text)
					}
					if len(tc.reasons) == 0 {
						if !last.d.Allow {
							t.Fatalf("denied %v: %s", last.d.Reasons, text)
						}
						if isErr != tc.upstreamErr {
							t.Fatalf("upstream error=%v, want %v: %s", isErr, tc.upstreamErr, text)
						}
						return
					}
					if last.d.Allow || !isErr || !strings.HasPrefix(text, "denied: ") {
						t.Fatalf("not denied: allow=%v error=%v %q", last.d.Allow, isErr, text)
					}
					for _, r := range tc.reasons {
						if !slices.Contains(last.d.Reasons, r) || !strings.Contains(text, r) {
							t.Fatalf("reasons %v (%q), want %s", last.d.Reasons, text, r)
						}
					}
				})
			}
			f.canaryIntact(t)
		})
	}
}

// TestReadOnly: a read-only session may call no write tool, and does not
// even see them.
func TestReadOnly(t *testing.T) {
	writes := map[string]map[string]any{
		"write_file":       {"path": "new.txt", "content": "x"},
		"edit_file":        {"path": "notes.md", "edits": []any{map[string]any{"oldText": "hello", "newText": "bye"}}},
		"create_directory": {"path": "newdir"},
		"move_file":        {"source": "notes.md", "destination": "moved.md"},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			f := newFixture(t)
			rec := &recorder{}
			_, cs := startSession(t, b, f, rec, true)
			list, err := cs.ListTools(context.Background(), nil)
			must(t, err)
			for _, tool := range list.Tools {
				if _, isWrite := writes[tool.Name]; isWrite {
					t.Errorf("read-only session is shown %s", tool.Name)
				}
			}
			for name, args := range writes {
				text, isErr := callText(t, cs, name, args)
				last, _ := rec.last()
				if !isErr || last.d.Allow || !slices.Contains(last.d.Reasons, ro) {
					t.Errorf("%s: %q reasons %v, want %s", name, text, last.d.Reasons, ro)
				}
			}
			if b, _ := os.ReadFile(f.ws + "/notes.md"); string(b) != "hello notes\n" {
				t.Fatalf("read-only workspace changed: %q", b)
			}
			if _, err := os.Stat(f.ws + "/newdir"); err == nil {
				t.Fatal("read-only session created a folder")
			}
		})
	}
}

// TestReadOnlyRefusesUnknownTools: read-only refuses every tool that is not
// classified read, at every trust level (a direct owner's unknown tool
// wrote a file before).
func TestReadOnlyRefusesUnknownTools(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	sf := facts(true)
	sf.TrustLevel = "direct"
	up := Upstream{Name: "fake", URL: fakeUpstream(t, "x")} // run_shell and cat_thing: unclassified
	_, cs := sessionWith(t, f, rec, "", up, sf)
	for _, tool := range []string{"run_shell", "cat_thing"} {
		text, isErr := callText(t, cs, tool, map[string]any{})
		last, _ := rec.last()
		if !isErr || last.d.Allow || !slices.Contains(last.d.Reasons, ro) {
			t.Fatalf("%s in read-only direct session: %q reasons %v", tool, text, last.d.Reasons)
		}
	}
}
