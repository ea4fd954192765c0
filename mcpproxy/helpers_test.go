package mcpproxy

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
)

const testWorkspace = "users/telegram%3A1"

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// repoRoot is the module root, found from this file.
func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// recorder keeps every decision the engine makes.
type recorder struct {
	mu  sync.Mutex
	log []recorded
}

type recorded struct {
	in engine.ToolInput
	d  engine.Decision
}

func (r *recorder) Record(_ context.Context, in engine.Input, d *engine.Decision) error {
	ti, _ := in.(engine.ToolInput)
	r.mu.Lock()
	r.log = append(r.log, recorded{ti, *d})
	r.mu.Unlock()
	return nil
}

func (r *recorder) last() (recorded, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.log) == 0 {
		return recorded{}, 0
	}
	return r.log[len(r.log)-1], len(r.log)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.log)
}

// newEngine is the real engine over the repository's policies folder.
func newEngine(t testing.TB, rec engine.Recorder) *engine.Engine {
	t.Helper()
	eng, err := engine.New(context.Background(), engine.Options{
		PolicyDir: filepath.Join(repoRoot(t), "policies"),
		Recorder:  rec,
	})
	must(t, err)
	return eng
}

// facts of a sandboxed member session on testWorkspace.
func facts(readOnly bool) engine.SessionFacts {
	return engine.SessionFacts{
		ID: "sess-1", TurnID: "turn-1", Identity: "telegram:1", Connector: "tg",
		ConnectorType: "telegram", Role: "owner", TrustLevel: "sandboxed",
		Workspace: testWorkspace, ReadOnly: readOnly,
	}
}

// fixture is a vault with one workspace and hostile entries in it, and a
// folder outside the vault holding a canary file.
type fixture struct {
	vault, ws, outside, canary string
}

const canaryText = "CANARY-never-read"

func newFixture(t testing.TB) fixture {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	must(t, err)
	f := fixture{vault: filepath.Join(base, "vault"), outside: filepath.Join(base, "outside")}
	f.ws = filepath.Join(f.vault, testWorkspace)
	f.canary = filepath.Join(f.outside, "canary")
	for _, d := range []string{f.ws + "/sub", f.ws + "/.parachute/hooks", f.vault + "/users/telegram%3A1_evil", f.outside} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(f.ws+"/notes.md", []byte("hello notes\n"), 0o644))
	must(t, syscall.Mkfifo(f.ws+"/fifo", 0o644))
	must(t, os.WriteFile(f.ws+"/sub/other.md", []byte("other\n"), 0o644))
	must(t, os.WriteFile(f.ws+"/caf\u00e9.md", []byte("NFC name\n"), 0o644))
	must(t, os.WriteFile(f.canary, []byte(canaryText), 0o644))
	must(t, os.WriteFile(f.vault+"/users/telegram%3A1_evil/x", []byte(canaryText), 0o644))
	must(t, os.Symlink(f.canary, f.ws+"/link-file"))
	must(t, os.Symlink(f.outside, f.ws+"/link-dir"))
	must(t, os.Symlink("../../../../outside/canary", f.ws+"/sub/climb"))
	must(t, os.Symlink(f.outside+"/planted", f.ws+"/planted"))
	must(t, os.Link(f.canary, f.ws+"/hard"))
	return f
}

// canaryIntact fails the test if the canary was changed or anything was
// created beside it.
func (f fixture) canaryIntact(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(f.canary)
	must(t, err)
	if string(b) != canaryText {
		t.Fatalf("canary changed: %q", b)
	}
	entries, err := os.ReadDir(f.outside)
	must(t, err)
	if len(entries) != 1 {
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("files appeared outside the vault: %v", names)
	}
}

// serveUnix serves h on a unix socket and returns an HTTP client dialing it.
func serveUnix(t testing.TB, h http.Handler) *http.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	must(t, err)
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 64,
	}}
}

// connectHTTP connects a real go-sdk client to the handler over a socket.
func connectHTTP(t testing.TB, h http.Handler) *mcp.ClientSession {
	t.Helper()
	hc := serveUnix(t, h)
	c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: "http://parachute/mcp", HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true,
	}, nil)
	must(t, err)
	t.Cleanup(func() { cs.Close() })
	return cs
}

func callText(t testing.TB, cs *mcp.ClientSession, name string, args map[string]any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	must(t, err)
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String(), res.IsError
}
