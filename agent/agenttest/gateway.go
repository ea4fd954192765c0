// Package agenttest serves a stand-in for the gateway's session socket, so
// tests can run an agent against real MCP over a real unix socket: a go-sdk
// MCP server with workspace file tools on /mcp, and a scripted fake model
// (test/fakes/model) on /v1/.
//
// The file tools work on an in-memory workspace under /workspace and refuse
// like the gateway's policy would: any path outside /workspace, and any
// write under /workspace/readonly, comes back as an isError result whose
// text starts with "denied:".
package agenttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/mcpproxy/busy"

	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// Workspace is the root of the in-memory workspace.
const Workspace = "/workspace"

// ToolCall is one call the MCP server received.
type ToolCall struct {
	Name string
	Args map[string]any
}

// Gateway is the stand-in session socket.
type Gateway struct {
	Socket string      // unix socket path; set PARACHUTE_SOCKET to it
	Model  *model.Fake // the scripted model behind /v1/

	mu      sync.Mutex
	files   map[string]string // absolute path → content
	calls   []ToolCall
	shedAll bool            // tools/list answered busy
	shed    map[string]bool // tools/call of these answered busy
}

// ShedRetryAfter is the retry delay of the busy answers Shed gives.
const ShedRetryAfter = 5 * time.Second

// Shed makes the gateway answer as the real one does when a decision
// missed its deadline (mcpproxy/busy): tools/list fails as busy when list
// is true, and each call of the named tools fails as busy (recorded in
// Calls, never run).
func (g *Gateway) Shed(list bool, tools ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shedAll = list
	g.shed = map[string]bool{}
	for _, n := range tools {
		g.shed[n] = true
	}
}

// shedding is receiving middleware answering what Shed names as busy.
func (g *Gateway) shedding(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		g.mu.Lock()
		all, shed := g.shedAll, g.shed
		g.mu.Unlock()
		switch call, _ := req.(*mcp.CallToolRequest); {
		case method == "tools/list" && all:
			return nil, busy.Error(ShedRetryAfter)
		case method == "tools/call" && call != nil && call.Params != nil && shed[call.Params.Name]:
			g.record(call.Params.Name, nil)
			return nil, busy.Error(ShedRetryAfter)
		}
		return next(ctx, method, req)
	}
}

// New serves a gateway with files (workspace-relative path → content) and
// the model script until the test ends.
func New(t testing.TB, files map[string]string, script model.Script) *Gateway {
	t.Helper()
	g := &Gateway{Model: model.New(script), files: map[string]string{}}
	for p, c := range files {
		g.files[path.Join(Workspace, p)] = c
	}
	dir, err := os.MkdirTemp("", "pa") // short: sun_path is ~108 bytes
	if err != nil {
		t.Fatal(err)
	}
	g.Socket = filepath.Join(dir, "parachute.sock")
	ln, err := net.Listen("unix", g.Socket)
	if err != nil {
		t.Fatal(err)
	}
	server := g.mcpServer()
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	mux.Handle("/v1/", g.Model)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		os.RemoveAll(dir)
	})
	return g
}

// Calls returns the tool calls received, in order.
func (g *Gateway) Calls() []ToolCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]ToolCall(nil), g.calls...)
}

// File returns a workspace file's content (workspace-relative path).
func (g *Gateway) File(rel string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.files[path.Join(Workspace, rel)]
	return c, ok
}

type pathArgs struct {
	Path string `json:"path" jsonschema:"absolute path of the file or folder"`
}

type writeArgs struct {
	Path    string `json:"path" jsonschema:"absolute path of the file"`
	Content string `json:"content" jsonschema:"the file's new content"`
}

type searchArgs struct {
	Path    string `json:"path" jsonschema:"folder to search beneath"`
	Pattern string `json:"pattern" jsonschema:"substring of the file names to find"`
}

func (g *Gateway) mcpServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "agenttest-gateway", Version: "1"}, nil)
	s.AddReceivingMiddleware(g.shedding)
	mcp.AddTool(s, &mcp.Tool{Name: "read_file", Description: "Read a file in the workspace."},
		func(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
			g.record("read_file", map[string]any{"path": in.Path})
			p, err := g.check(in.Path, false)
			if err != nil {
				return nil, nil, err
			}
			g.mu.Lock()
			c, ok := g.files[p]
			g.mu.Unlock()
			if !ok {
				return nil, nil, fmt.Errorf("no such file: %s", in.Path)
			}
			return text(c), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "write_file", Description: "Create or replace a file in the workspace."},
		func(_ context.Context, _ *mcp.CallToolRequest, in writeArgs) (*mcp.CallToolResult, any, error) {
			g.record("write_file", map[string]any{"path": in.Path, "content": in.Content})
			p, err := g.check(in.Path, true)
			if err != nil {
				return nil, nil, err
			}
			g.mu.Lock()
			g.files[p] = in.Content
			g.mu.Unlock()
			return text(fmt.Sprintf("Successfully wrote to %s", in.Path)), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "list_directory", Description: "List a folder in the workspace."},
		func(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
			g.record("list_directory", map[string]any{"path": in.Path})
			p, err := g.check(in.Path, false)
			if err != nil {
				return nil, nil, err
			}
			return text(strings.Join(g.list(p), "\n")), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "search_files", Description: "Find files whose names contain a pattern."},
		func(_ context.Context, _ *mcp.CallToolRequest, in searchArgs) (*mcp.CallToolResult, any, error) {
			g.record("search_files", map[string]any{"path": in.Path, "pattern": in.Pattern})
			p, err := g.check(in.Path, false)
			if err != nil {
				return nil, nil, err
			}
			var found []string
			g.mu.Lock()
			for f := range g.files {
				if strings.HasPrefix(f, p+"/") && strings.Contains(path.Base(f), in.Pattern) {
					found = append(found, f)
				}
			}
			g.mu.Unlock()
			sort.Strings(found)
			if len(found) == 0 {
				return text("No matches found"), nil, nil
			}
			return text(strings.Join(found, "\n")), nil, nil
		})
	return s
}

func (g *Gateway) record(name string, args map[string]any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, ToolCall{Name: name, Args: args})
}

// check plays the policy: the cleaned path must be the workspace or
// beneath it, and writes are refused under readonly/.
func (g *Gateway) check(p string, write bool) (string, error) {
	clean := path.Clean(p)
	if !path.IsAbs(p) || (clean != Workspace && !strings.HasPrefix(clean, Workspace+"/")) {
		return "", fmt.Errorf("denied: %s is outside the workspace (path-outside-workspace)", p)
	}
	if write && strings.HasPrefix(clean, Workspace+"/readonly/") {
		return "", errors.New("denied: the workspace's readonly folder cannot be written (write-forbidden)")
	}
	return clean, nil
}

// list returns the entries directly beneath dir, folders with a "/".
func (g *Gateway) list(dir string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	for f := range g.files {
		rest, ok := strings.CutPrefix(f, dir+"/")
		if !ok {
			continue
		}
		if first, _, nested := strings.Cut(rest, "/"); nested {
			seen["[DIR] "+first] = true
		} else {
			seen["[FILE] "+first] = true
		}
	}
	out := make([]string, 0, len(seen))
	for e := range seen {
		out = append(out, e)
	}
	sort.Strings(out)
	return out
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}
