// Package vault is Parachute's built-in filesystem MCP server: the tools of
// @modelcontextprotocol/server-filesystem, with the same argument names,
// over one workspace folder.
//
// Every operation goes through an os.Root opened on the workspace, so no
// path, symlink or race can reach a file outside it. On top of that it never
// writes through a symlink, refuses hard-linked files (a hard link to a file
// outside the workspace is the attack os.Root cannot see), writes through an
// exclusive temporary file renamed into place, and bounds reads and writes.
//
// Path arguments are relative to the workspace. The policy proxy in front of
// it (package mcpproxy) resolves and decides paths first and hands this
// server the resolved workspace-relative path.
package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// DefaultMaxBytes bounds one file read or written (4 MiB).
const DefaultMaxBytes = 4 << 20

// Options configure a Server.
type Options struct {
	MaxRead  int64 // largest file read_file returns (default DefaultMaxBytes)
	MaxWrite int64 // largest content write_file or edit_file writes (default DefaultMaxBytes)
}

// Server serves the vault tools over one workspace folder.
type Server struct {
	root     *os.Root
	maxRead  int64
	maxWrite int64
	tools    map[string]tool
}

// tool is one built-in tool: its definition and its handler, which returns
// the text of a successful result.
type tool struct {
	def *mcp.Tool
	run func(ctx context.Context, s *Server, args json.RawMessage) (string, error)
}

// New opens dir as the workspace root.
func New(dir string, opts Options) (*Server, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	s := &Server{root: root, maxRead: opts.MaxRead, maxWrite: opts.MaxWrite, tools: catalog()}
	if s.maxRead <= 0 {
		s.maxRead = DefaultMaxBytes
	}
	if s.maxWrite <= 0 {
		s.maxWrite = DefaultMaxBytes
	}
	return s, nil
}

// Close releases the workspace root.
func (s *Server) Close() error { return s.root.Close() }

// Tools lists the tool definitions, sorted by name.
func (s *Server) Tools() []*mcp.Tool { return Definitions() }

// Call runs the tool name with the JSON object args. A failure of the
// operation is a result with IsError set; an error is returned only for a
// tool that does not exist.
func (s *Server) Call(ctx context.Context, name string, args json.RawMessage) (*mcp.CallToolResult, error) {
	t, ok := s.tools[name]
	if !ok {
		return nil, fmt.Errorf("vault: unknown tool %q", name)
	}
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	text, err := t.run(ctx, s, args)
	if err != nil {
		return errorResult(err), nil
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil
}

// MCPServer returns a go-sdk server serving the tools, for running the vault
// on its own (tests, benchmarks) rather than behind the policy proxy.
func (s *Server) MCPServer() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "parachute-vault", Version: "1"}, nil)
	for _, def := range Definitions() {
		name := def.Name
		srv.AddTool(def, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return s.Call(ctx, name, req.Params.Arguments)
		})
	}
	return srv
}

func errorResult(err error) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "Error: " + err.Error()}}}
}

// decode unmarshals args into v, refusing anything but a JSON object.
func decode(args json.RawMessage, v any) error {
	if err := json.Unmarshal(args, v); err != nil {
		return fmt.Errorf("invalid arguments: %w", err)
	}
	return nil
}

var errMissing = errors.New("missing required argument")
