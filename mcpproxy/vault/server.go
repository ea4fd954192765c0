// Package vault is Parachute's built-in filesystem MCP server: the tools of
// @modelcontextprotocol/server-filesystem, with the same argument names,
// over one workspace folder.
//
// Every path is opened beneath the workspace through internal/beneath:
// openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|
// RESOLVE_NO_XDEV, or an O_NOFOLLOW walk one component at a time where
// openat2 is missing. A symlink at any component is refused (named in the
// error), no mount point is crossed, and once a folder is open everything
// below it (create, rename, list, walk) is done relative to its descriptor,
// never by re-resolving a name from the root, so a link or mount swapped in
// between the policy's check and the call is met by the kernel and refused.
//
// What is opened is checked through its descriptor before a byte moves:
// only regular files (a FIFO, socket or device is refused; FIFOs are opened
// O_NONBLOCK so the check cannot hang) with exactly one link (a hard link
// may be a file outside the workspace), within the size limits. Writes go to
// an exclusive temporary file in the target's folder, fsynced and renamed
// into place within that folder, and removed on every failure path. Nothing
// under .parachute (any case spelling) is created, written, moved or made,
// whatever the policy decided; reading it stays allowed.
//
// Arguments are decoded with internal/strictjson, as the proxy decodes
// them: exact-case names, no duplicates, no unknown names, valid UTF-8, so
// {"Path": …} is refused rather than read as "path".
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
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/internal/beneath"
	"github.com/parachute-gateway/parachute/internal/strictjson"
)

// DefaultMaxBytes bounds one file read or written (4 MiB).
const DefaultMaxBytes = 4 << 20

// Options configure a Server.
type Options struct {
	MaxRead  int64 // largest file read_file returns (default DefaultMaxBytes)
	MaxWrite int64 // largest content write_file or edit_file writes (default DefaultMaxBytes)

	walk   bool                                                      // tests: force the openat2-less walk
	faults func(point int, dir *beneath.Dir, tmp, name string) error // tests: inject failures into writeFile
}

// Server serves the vault tools over one workspace folder.
type Server struct {
	root     *beneath.Root
	maxRead  int64
	maxWrite int64
	tools    map[string]tool
	faults   func(point int, dir *beneath.Dir, tmp, name string) error
}

// tool is one built-in tool: its definition and its handler, which returns
// the text of a successful result.
type tool struct {
	def *mcp.Tool
	run func(ctx context.Context, s *Server, args json.RawMessage) (string, error)
}

// New opens dir as the workspace root.
func New(dir string, opts Options) (*Server, error) {
	root, err := beneath.Open(dir, beneath.Options{Walk: opts.walk})
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	s := &Server{root: root, maxRead: opts.MaxRead, maxWrite: opts.MaxWrite, tools: catalog(), faults: opts.faults}
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
	if errors.Is(err, errArgs) {
		err = fmt.Errorf("%w (argument names are case-sensitive; %s takes %s)", err, name, strings.Join(argNames(t.def), ", "))
	}
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

// errArgs marks arguments that do not decode.
var errArgs = errors.New("invalid arguments")

// decode reads args into v the one way the proxy reads them
// (strictjson): a JSON object whose member names are exactly v's field
// names, each once, in valid UTF-8.
func decode(args json.RawMessage, v any) error {
	if err := strictjson.Unmarshal(args, v); err != nil {
		return fmt.Errorf("%w: %w", errArgs, err)
	}
	return nil
}

// argNames lists the argument names of a tool's input schema.
func argNames(def *mcp.Tool) []string {
	raw, _ := def.InputSchema.(json.RawMessage)
	var sch struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(raw, &sch)
	names := make([]string, 0, len(sch.Properties))
	for n := range sch.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var errMissing = errors.New("missing required argument")
