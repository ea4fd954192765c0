package mcpproxy

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
)

// pipeLauncher runs an in-process MCP server per Launch over pipes, in
// place of a sandbox, and remembers the workspace each instance was given
// and whether it was closed.
type pipeLauncher struct {
	mu        sync.Mutex
	launched  []string // workspace of each instance
	closed    int
	lastPaths []string
}

func (l *pipeLauncher) Launch(ctx context.Context, up Upstream, workspace string) (*Launched, error) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "fake-fs", Version: "1"}, nil)
	srv.AddTool(&mcp.Tool{Name: "read_text_file", InputSchema: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"}}}`)},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			var a struct{ Path string }
			_ = json.Unmarshal(req.Params.Arguments, &a)
			l.mu.Lock()
			l.lastPaths = append(l.lastPaths, a.Path)
			l.mu.Unlock()
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "read " + a.Path}}}, nil
		})
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = srv.Run(ctx, &mcp.IOTransport{Reader: inR, Writer: outW}) }()
	l.mu.Lock()
	l.launched = append(l.launched, workspace)
	l.mu.Unlock()
	return &Launched{Stdin: inW, Stdout: outR, Close: func() error {
		cancel()
		inW.Close()
		outW.Close()
		l.mu.Lock()
		l.closed++
		l.mu.Unlock()
		return nil
	}}, nil
}

// TestSandboxedUpstreamPerSession: a command upstream runs through the
// launcher, never on the host: once over an empty folder to list its
// tools, then once per session over that session's workspace, handed paths
// as the sandbox names them, and stopped with the session.
func TestSandboxedUpstreamPerSession(t *testing.T) {
	f := newFixture(t)
	l := &pipeLauncher{}
	up := Upstream{Name: "fs", Command: []string{"node", "/srv/fs/index.js", "/workspace"}}
	p, err := New(context.Background(), Options{Decider: newEngine(t, &recorder{}), Vault: f.vault, Upstreams: []Upstream{up}, Launcher: l})
	must(t, err)
	t.Cleanup(func() { p.Close() })
	if len(l.launched) != 1 || strings.HasPrefix(l.launched[0], f.vault) || l.closed != 1 {
		t.Fatalf("listing instance: launched %v, closed %d; want one over an empty folder outside the vault, closed", l.launched, l.closed)
	}
	s, err := p.NewSession(context.Background(), SessionOptions{Facts: func() engine.SessionFacts { return facts(false) }, ClientRoot: "/workspace"})
	must(t, err)
	cs := connectHTTP(t, s.Handler())
	if len(l.launched) != 1 {
		t.Fatal("a session's upstream started before its first call")
	}
	text, isErr := callText(t, cs, "read_text_file", map[string]any{"path": "sub/../notes.md"})
	if isErr || text != "read /workspace/notes.md" {
		t.Fatalf("call through the sandboxed upstream: %q (error %v)", text, isErr)
	}
	callText(t, cs, "read_text_file", map[string]any{"path": "/workspace/sub/other.md"})
	if len(l.launched) != 2 || l.launched[1] != f.ws {
		t.Fatalf("session instance launched over %v, want one over %s", l.launched, f.ws)
	}
	if !slices.Equal(l.lastPaths, []string{"/workspace/notes.md", "/workspace/sub/other.md"}) {
		t.Fatalf("upstream was handed %v", l.lastPaths)
	}
	must(t, s.Close())
	if l.closed != 2 {
		t.Fatalf("session's upstream not stopped at Close (%d closed)", l.closed)
	}
}

// TestSandboxedUpstreamNeedsALauncher: without a sandbox runtime a command
// upstream does not silently run on the host.
func TestSandboxedUpstreamNeedsALauncher(t *testing.T) {
	f := newFixture(t)
	_, err := New(context.Background(), Options{Decider: newEngine(t, nil), Vault: f.vault,
		Upstreams: []Upstream{{Name: "fs", Command: []string{"true"}}}})
	if err == nil || !strings.Contains(err.Error(), "on_host") {
		t.Fatalf("New without a launcher: %v", err)
	}
}
