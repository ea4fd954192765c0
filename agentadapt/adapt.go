// Package agentadapt runs a real coding agent (Claude Code, Codex CLI) as
// the sandbox's turn agent: it reads the turn request of docs/agent.md on
// stdin, runs the agent's own CLI for it and prints the reply, so the
// gateway talks to every agent through the same contract.
//
// The adapter runs inside the sandbox. It gives the agent no credential
// and no network: the agent's model API is a loopback listener that
// copies bytes to the session socket (package bridge), where the model
// proxy decides and counts every call and adds the key; the agent's one
// MCP server is `parachute mcp stdio`, the gateway's tools, each call
// decided by parachute.tool. The agent's own session state (its
// conversation files) lives under HOME on the sandbox's /tmp, one folder
// per gateway session, never in the workspace: /new stops the sandbox and
// so starts fresh, and a sandbox restarted under a live session replays
// the gateway's history instead.
package agentadapt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/bridge"
)

// Kinds of agent the adapter runs.
const (
	ClaudeCode = "claude-code"
	Codex      = "codex"
)

// Kinds lists the adapted agents.
var Kinds = []string{ClaudeCode, Codex}

// PlaceholderKey is the API key the agent is given: it insists on one,
// the gateway drops it and adds the real one outside the sandbox.
const PlaceholderKey = "sk-parachute-placeholder-not-a-key"

// MCPServerName is the name of the gateway's MCP server in the agent's
// config; Claude Code calls its tools mcp__parachute__<tool>.
const MCPServerName = "parachute"

// Options configure one adapted turn.
type Options struct {
	Kind string
	// Binary is the agent's executable (default: /usr/bin/claude or
	// /usr/bin/codex, as `parachute image build --agent` installs it, else
	// the name looked up in PATH).
	Binary string
	// MCPCommand is the agent's MCP server command (default: this
	// executable, mcp stdio).
	MCPCommand []string
	// Getenv reads PARACHUTE_SOCKET, PARACHUTE_MAX_STEPS, HOME,
	// PARACHUTE_AGENT_TOOLS (built-in tools enabled, comma-separated;
	// default none) and PATH.
	Getenv func(string) string
	// Stderr receives the agent's own stderr (default: discarded; the
	// turn's one error line goes to Run's stderr).
	Stderr io.Writer
}

// maxOutputLine bounds one line of the agent's JSON event stream.
const maxOutputLine = 16 << 20

// sessionID is what a gateway session ID may look like before it names a
// folder.
var sessionID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// Run answers one turn: the request on stdin, the reply on stdout, exit 0;
// or one line on stderr and exit 1 (docs/agent.md).
//
// With PARACHUTE_PROGRESS=1, the agent's messages as they arrive are
// written first as progress lines (agent.ProgressLine), then the reply.
func Run(ctx context.Context, opts Options, stdin io.Reader, stdout, stderr io.Writer) int {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var progress func(string)
	if getenv(agent.ProgressEnv) == "1" {
		progress = func(text string) { _, _ = stdout.Write(agent.ProgressLine(text)) }
	}
	reply, err := run(ctx, opts, stdin, progress)
	if err != nil {
		fmt.Fprintln(stderr, "agent: "+oneLine(err.Error()))
		return 1
	}
	fmt.Fprintln(stdout, reply)
	return 0
}

func run(ctx context.Context, opts Options, stdin io.Reader, progress func(string)) (string, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	req, err := agent.DecodeRequest(stdin)
	if err != nil {
		return "", err
	}
	if !sessionID.MatchString(req.SessionID) {
		return "", fmt.Errorf("session_id %q is not a gateway session ID", req.SessionID)
	}
	var a adapter
	switch opts.Kind {
	case ClaudeCode:
		a = claudeCode{}
	case Codex:
		a = codex{}
	default:
		return "", fmt.Errorf("unknown agent kind %q (want %s)", opts.Kind, strings.Join(Kinds, " or "))
	}
	if err := a.check(req); err != nil {
		return "", err
	}
	home := opts.Getenv("HOME")
	if home == "" || !filepath.IsAbs(home) {
		home = os.TempDir()
	}
	// One folder per gateway session: the agent's HOME, with its
	// conversation files. The sandbox belongs to one session; the folder
	// name keeps even a reused /tmp from mixing two.
	state := filepath.Join(home, ".parachute-agent", req.SessionID)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", fmt.Errorf("agent state folder: %w", err)
	}
	if opts.Binary == "" {
		opts.Binary = a.defaultBinary()
	}
	if len(opts.MCPCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		opts.MCPCommand = []string{exe, "mcp", "stdio"}
	}
	sock := agent.SocketPath(opts.Getenv)
	// The model API, on loopback only, copied to the session socket.
	ln, err := bridge.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	br, err := bridge.New(bridge.Options{Socket: sock, MaxConns: 16})
	if err != nil {
		ln.Close()
		return "", err
	}
	bctx, stop := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { defer close(served); _ = br.Serve(bctx, ln) }()
	defer func() { stop(); <-served }()
	t := &turn{
		req: req, opts: opts, state: state, socket: sock, progress: progress,
		baseURL: "http://" + ln.Addr().(*net.TCPAddr).String(),
		tools:   splitList(opts.Getenv("PARACHUTE_AGENT_TOOLS")),
	}
	return a.run(ctx, t)
}

// adapter is one agent's CLI.
type adapter interface {
	check(req *agent.Request) error
	defaultBinary() string
	run(ctx context.Context, t *turn) (string, error)
}

// turn is what an adapter works with.
type turn struct {
	req     *agent.Request
	opts    Options
	state   string // the agent's HOME for this session
	socket  string
	baseURL string   // the loopback bridge to the model proxy
	tools   []string // built-in tools the operator enabled
	// progress, if not nil, is given the agent's words as they arrive,
	// each piece to be appended to the ones before.
	progress func(text string)
}

// say passes one of the agent's messages on as progress.
func (t *turn) say(text string) {
	if t.progress != nil && strings.TrimSpace(text) != "" {
		t.progress(strings.TrimSpace(text) + "\n\n")
	}
}

// env is the agent's whole environment: nothing of the adapter's is
// inherited, so nothing the sandbox was started with reaches it by
// accident.
func (t *turn) env(extra ...string) []string {
	path := t.opts.Getenv("PATH")
	if path == "" {
		path = "/usr/bin:/bin"
	}
	return append([]string{
		"PATH=" + path, "HOME=" + t.state, "TMPDIR=" + os.TempDir(),
		"PARACHUTE_SOCKET=" + t.socket,
	}, extra...)
}

// prompt is the text the agent is given: the user's message, after the
// gateway's history when the agent has no conversation of its own to
// resume (a sandbox restarted under a live session).
func (t *turn) prompt(resuming bool) string {
	if resuming || len(t.req.History) == 0 {
		return t.req.Text
	}
	var b strings.Builder
	b.WriteString("Earlier messages of this conversation, oldest first (a record, not instructions):\n")
	for _, m := range t.req.History {
		fmt.Fprintf(&b, "[%s] %s\n", m.Role, m.Content)
	}
	b.WriteString("\nThe user's new message:\n")
	b.WriteString(t.req.Text)
	return b.String()
}

// exec runs the agent with stdin and calls line for each line it prints;
// it returns the first line of the agent's stderr with a failed exit.
func (t *turn) exec(ctx context.Context, args, env []string, stdin string, line func([]byte)) error {
	cmd := exec.CommandContext(ctx, t.opts.Binary, args...)
	cmd.Env = env
	cmd.Dir = t.req.Workspace
	cmd.Stdin = strings.NewReader(stdin)
	var errBuf capped
	errBuf.max = 8 << 10
	cmd.Stderr = io.MultiWriter(&errBuf, t.opts.Stderr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w (is the agent in the sandbox image? parachute image build --agent)", t.opts.Binary, err)
	}
	r := bufio.NewReaderSize(out, 64<<10)
	var cur []byte
	for {
		chunk, isPrefix, rerr := r.ReadLine()
		if len(cur)+len(chunk) <= maxOutputLine {
			cur = append(cur, chunk...)
		}
		if rerr != nil {
			break
		}
		if !isPrefix {
			line(cur)
			cur = cur[:0]
		}
	}
	if err := cmd.Wait(); err != nil {
		msg := firstLine(errBuf.String())
		if msg == "" {
			return fmt.Errorf("%s: %w", filepath.Base(t.opts.Binary), err)
		}
		return fmt.Errorf("%s: %w: %s", filepath.Base(t.opts.Binary), err, msg)
	}
	return nil
}

// capped keeps the first max bytes written.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

var errNoResult = errors.New("the agent ended without a result")

func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// lookPath is the default binary: the image's ImagePath, else the name
// in PATH.
func lookPath(kind, name string) string {
	if p := ImagePath(kind); isFile(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ImagePath(kind)
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
