package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Upstream is one MCP server behind the proxy: a command spoken to over
// stdio, or a streamable HTTP URL.
type Upstream struct {
	Name    string
	Command []string
	URL     string
	// Tools overrides the access class of tools by name: read, write or
	// exec (anything else counts as unknown).
	Tools map[string]string
	// PathArgs names further arguments that hold paths, beyond
	// DefaultPathArgs and what the input schemas suggest.
	PathArgs []string
	// OnHost runs Command as a process on the host, beside the gateway,
	// instead of in a sandbox of its own per session. Code nobody here
	// wrote then runs outside the walls: only for a server the operator
	// trusts with the host. Policy refuses its tools to sessions of public
	// connectors (reason upstream-on-host).
	OnHost bool
	// Image is the sandbox image a sandboxed Command runs in ("" = the
	// launcher's default). The command is resolved inside the image.
	Image string
}

// sandboxed reports whether the upstream runs in a sandbox per session.
func (u Upstream) sandboxed() bool { return len(u.Command) > 0 && !u.OnHost }

// Launcher starts a sandboxed upstream's command for one session: in a
// sandbox of its own with the same walls as a session (seccomp, limits, no
// network, read-only root, only the workspace folder mounted at
// SandboxWorkspace, .parachute read-only), speaking MCP over its stdio.
// The gateway implements it with the containerd runtime.
type Launcher interface {
	Launch(ctx context.Context, up Upstream, workspace string) (*Launched, error)
}

// Launched is a started upstream process: its stdio, and Close, which ends
// it and removes its sandbox.
type Launched struct {
	Stdin  io.WriteCloser
	Stdout io.ReadCloser
	Close  func() error
}

// SandboxWorkspace is where a sandboxed upstream sees the workspace, and
// so the prefix of every path it is handed.
const SandboxWorkspace = "/workspace"

// origin is what identifies the program behind an upstream in the pin
// store: its whole command line, or its URL.
func (u Upstream) origin() []string {
	if len(u.Command) > 0 {
		return append([]string{"command"}, u.Command...)
	}
	return []string{"url", u.URL}
}

// remote is a connected upstream. An HTTP or on-host upstream has one
// client session shared by every proxy session (the go-sdk client
// multiplexes concurrent calls); a sandboxed one has one per proxy session,
// in a sandbox holding only that session's workspace.
type remote struct {
	up      Upstream
	session *mcp.ClientSession
	stop    func() error // ends a launched process; nil otherwise
}

// childEnv is the whole environment an upstream command gets: the gateway's
// own environment holds bot tokens and API keys, which an upstream never
// needs.
func childEnv() []string {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if v, ok := os.LookupEnv("PATH"); ok {
		env[0] = "PATH=" + v
	}
	for _, k := range []string{"HOME", "LANG", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// checkUpstream refuses an upstream the proxy cannot run as configured.
func checkUpstream(up Upstream, l Launcher) error {
	switch {
	case up.Name == "":
		return errors.New("mcpproxy: an upstream needs a name")
	case len(up.Command) > 0 && up.URL != "":
		return fmt.Errorf("mcpproxy: upstream %s: give a command or a URL, not both", up.Name)
	case len(up.Command) == 0 && up.URL == "":
		return fmt.Errorf("mcpproxy: upstream %s: no command and no URL", up.Name)
	case up.sandboxed() && l == nil:
		return fmt.Errorf("mcpproxy: upstream %s runs in a sandbox per session, and no sandbox runtime is available: "+
			"run the gateway with containerd (see `parachute doctor`), or set on_host: true for a server you trust with the host", up.Name)
	}
	return nil
}

// launch starts a sandboxed upstream over workspace and connects to it.
func launch(ctx context.Context, l Launcher, up Upstream, workspace string) (*remote, error) {
	proc, err := l.Launch(ctx, up, workspace)
	if err != nil {
		return nil, fmt.Errorf("mcpproxy: upstream %s: sandbox: %w", up.Name, err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "parachute-mcpproxy", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: proc.Stdout, Writer: proc.Stdin}, nil)
	if err != nil {
		_ = proc.Close()
		return nil, fmt.Errorf("mcpproxy: upstream %s: %w", up.Name, err)
	}
	return &remote{up: up, session: cs, stop: proc.Close}, nil
}

func connect(ctx context.Context, up Upstream, stderr io.Writer) (*remote, error) {
	var t mcp.Transport
	switch {
	case len(up.Command) > 0:
		cmd := exec.Command(up.Command[0], up.Command[1:]...)
		cmd.Env = childEnv()
		cmd.Stderr = stderr
		t = &mcp.CommandTransport{Command: cmd}
	default:
		t = &mcp.StreamableClientTransport{Endpoint: up.URL, MaxRetries: -1}
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "parachute-mcpproxy", Version: "1"}, nil)
	cs, err := c.Connect(ctx, t, nil)
	if err != nil {
		return nil, fmt.Errorf("mcpproxy: upstream %s: %w", up.Name, err)
	}
	return &remote{up: up, session: cs}, nil
}

// tools lists every tool of the upstream, following pages.
func (r *remote) tools(ctx context.Context) ([]*mcp.Tool, error) {
	var out []*mcp.Tool
	for t, err := range r.session.Tools(ctx, nil) {
		if err != nil {
			return nil, fmt.Errorf("mcpproxy: upstream %s: tools/list: %w", r.up.Name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func (r *remote) call(ctx context.Context, name string, args map[string]any) (*mcp.CallToolResult, error) {
	res, err := r.session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", r.up.Name, err)
	}
	return res, nil
}

func (r *remote) close() error {
	err := r.session.Close()
	if r.stop != nil {
		err = errors.Join(err, r.stop())
	}
	return err
}
