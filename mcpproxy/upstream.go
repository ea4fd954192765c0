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
}

// origin is what identifies the program behind an upstream in the pin
// store: its whole command line, or its URL.
func (u Upstream) origin() []string {
	if len(u.Command) > 0 {
		return append([]string{"command"}, u.Command...)
	}
	return []string{"url", u.URL}
}

// remote is a connected upstream. One client session is shared by every
// proxy session; the go-sdk client multiplexes concurrent calls.
type remote struct {
	up      Upstream
	session *mcp.ClientSession
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

func connect(ctx context.Context, up Upstream, stderr io.Writer) (*remote, error) {
	var t mcp.Transport
	switch {
	case up.Name == "":
		return nil, errors.New("mcpproxy: an upstream needs a name")
	case len(up.Command) > 0 && up.URL != "":
		return nil, fmt.Errorf("mcpproxy: upstream %s: give a command or a URL, not both", up.Name)
	case len(up.Command) > 0:
		cmd := exec.Command(up.Command[0], up.Command[1:]...)
		cmd.Env = childEnv()
		cmd.Stderr = stderr
		t = &mcp.CommandTransport{Command: cmd}
	case up.URL != "":
		t = &mcp.StreamableClientTransport{Endpoint: up.URL, MaxRetries: -1}
	default:
		return nil, fmt.Errorf("mcpproxy: upstream %s: no command and no URL", up.Name)
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

func (r *remote) close() error { return r.session.Close() }
