package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy"
)

func init() {
	register(&command{name: "mcp proxy", summary: "policy-enforcing stdio MCP proxy: [flags] [-- UPSTREAM-COMMAND…]", run: mcpProxy})
	register(&command{name: "mcp stdio", summary: "bridge a stdio MCP client to the session socket's /mcp (inside the sandbox)", run: mcpStdio})
	register(&command{name: "mcp approve", summary: "approve MCP tools whose definition changed: [--state DIR] TOOL…", run: mcpApprove})
}

// mcpStdin is what the stdio commands read (tests replace it).
var mcpStdin io.Reader = os.Stdin

// defaultSocket is where a sandboxed session finds its socket.
const defaultSocket = "/run/parachute/parachute.sock"

// mcpProxyFlags are the flags of `parachute mcp proxy`.
type mcpProxyFlags struct {
	identity, workspace, vault, trust, role string
	configFile, policies, state, audit      string
	readOnly, upstreamOnHost                bool
}

func mcpProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f mcpProxyFlags
	fs := newFlags("mcp proxy [flags] [-- UPSTREAM-COMMAND…]", stderr)
	fs.StringVar(&f.identity, "identity", "", `identity decisions are made about (default "local:$USER")`)
	fs.StringVar(&f.workspace, "workspace", "", "workspace: vault-relative (users/…, workspaces/…) or a folder inside the vault (default: the identity's personal workspace)")
	fs.StringVar(&f.vault, "vault", "", "vault folder (default: the config's vault)")
	fs.StringVar(&f.trust, "trust", "sandboxed", "trust level: sandboxed or direct")
	fs.StringVar(&f.role, "role", "", `role (default: the config's role for the identity, else "owner")`)
	fs.BoolVar(&f.readOnly, "read-only", false, "refuse every write")
	fs.BoolVar(&f.upstreamOnHost, "upstream-on-host", false, "run UPSTREAM-COMMAND on this host, outside any sandbox (required with an upstream command)")
	fs.StringVar(&f.configFile, "config", "", "gateway config: vault, policies, state, audit, roles, upstreams (default $"+EnvConfig+", else ./parachute.yaml, else /etc/parachute/config.yaml)")
	fs.StringVar(&f.policies, "policies", "", `policy folder (default: the config's, else "policies")`)
	fs.StringVar(&f.state, "state", "", "state folder holding the tool pins (default: the config's state_dir, else ~/.local/state/parachute)")
	fs.StringVar(&f.audit, "audit", "", "audit log folder (default: the config's, else STATE/audit)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// The gateway's config, found as every operator command finds it;
	// without one, --vault is enough.
	var cfg *config.Config
	var op *opConfig
	if path, err := findConfig(f.configFile); err == nil {
		if op, err = loadOpConfig(path); err != nil {
			return err
		}
		cfg = op.Cfg
	} else if f.vault == "" {
		return fmt.Errorf("%w: give --vault or a config (%w)", errUsage, err)
	}
	if err := f.fill(cfg); err != nil {
		return err
	}
	// A running gateway is the one writer of its audit log: two processes
	// appending to one hash chain would break it.
	if op != nil && filepath.Clean(f.audit) == filepath.Clean(cfg.Audit.Dir) {
		switch _, err := dialAdmin(ctx, op); {
		case err == nil:
			return fmt.Errorf("the gateway of %s is running and is the one writer of its audit log %s: pass --audit DIR for this proxy's own log", op.Path, cfg.Audit.Dir)
		case err != errNoGateway:
			return err
		}
	}
	ws, err := vaultRelative(f.vault, f.workspace)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(f.vault, ws), 0o700); err != nil {
		return fmt.Errorf("workspace: %w", err)
	}
	log, err := audit.Open(f.audit, audit.Options{})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer log.Close()
	var data map[string]any
	if cfg != nil {
		data = cfg.PolicyData()
	}
	eng, err := engine.New(ctx, engine.Options{PolicyDir: f.policies, Data: data, Recorder: audit.Recorder{Log: log}})
	if err != nil {
		return err
	}
	opts := mcpproxy.Options{
		Decider: eng, Vault: f.vault, StateDir: f.state, UpstreamStderr: stderr,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	switch {
	case len(fs.Args()) > 0:
		if !f.upstreamOnHost {
			return fmt.Errorf("an upstream command runs on this host, outside any sandbox, with your files: " +
				"pass --upstream-on-host to accept that, or configure it under mcp.upstreams in the gateway config, " +
				"where it runs in a sandbox per session")
		}
		opts.Upstreams = []mcpproxy.Upstream{{Name: filepath.Base(fs.Args()[0]), Command: fs.Args(), OnHost: true}}
	default:
		opts.Builtin = true
		if cfg != nil {
			opts.Upstreams = mcpproxy.UpstreamsFromConfig(cfg.MCP)
		}
	}
	p, err := mcpproxy.New(ctx, opts)
	if err != nil {
		return err
	}
	defer p.Close()
	host := filepath.Join(f.vault, ws)
	facts := engine.SessionFacts{
		ID: "mcp-proxy-" + fmt.Sprint(os.Getpid()), Identity: f.identity, Connector: "mcp-proxy",
		ConnectorType: strings.SplitN(f.identity, ":", 2)[0], Role: f.role, TrustLevel: f.trust,
		Workspace: ws, ReadOnly: f.readOnly,
	}
	s, err := p.NewSession(ctx, mcpproxy.SessionOptions{
		Facts: func() engine.SessionFacts { return facts }, Workspace: ws, ClientRoot: host,
	})
	if err != nil {
		return err
	}
	defer s.Close()
	return s.ServeStdio(ctx, mcpStdin, stdout)
}

// fill takes defaults from the config and the environment.
func (f *mcpProxyFlags) fill(cfg *config.Config) error {
	if f.identity == "" {
		f.identity = "local:" + os.Getenv("USER")
	}
	if !strings.Contains(f.identity, ":") {
		return fmt.Errorf("%w: --identity must be <connector-type>:<id>, got %q", errUsage, f.identity)
	}
	if f.trust != "sandboxed" && f.trust != "direct" {
		return fmt.Errorf("%w: --trust must be sandboxed or direct", errUsage)
	}
	home, _ := os.UserHomeDir()
	if cfg != nil {
		f.vault = or(f.vault, cfg.Vault)
		f.policies = or(f.policies, cfg.Policies)
		f.state = or(f.state, cfg.StateDir)
		f.audit = or(f.audit, cfg.Audit.Dir)
		if u, ok := cfg.Users[f.identity]; ok {
			f.role = or(f.role, u.Role)
		}
	}
	f.policies = or(f.policies, defaultPolicyDir)
	f.state = or(f.state, filepath.Join(home, ".local", "state", "parachute"))
	f.audit = or(f.audit, filepath.Join(f.state, "audit"))
	f.role = or(f.role, "owner")
	if f.vault == "" {
		return fmt.Errorf("%w: give --vault or --config", errUsage)
	}
	abs, err := filepath.Abs(f.vault)
	if err != nil {
		return err
	}
	f.vault = abs
	if f.workspace == "" {
		f.workspace = "users/" + url.QueryEscape(f.identity)
	}
	return nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// vaultRelative names the workspace relative to the vault: an absolute
// folder must lie inside it.
func vaultRelative(vault, ws string) (string, error) {
	if !filepath.IsAbs(ws) {
		return filepath.ToSlash(filepath.Clean(ws)), nil
	}
	rel, err := filepath.Rel(vault, filepath.Clean(ws))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: --workspace %s is not a folder inside the vault %s", errUsage, ws, vault)
	}
	return filepath.ToSlash(rel), nil
}

func mcpApprove(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mcp approve [--config FILE | --state DIR] [TOOL…]", stderr)
	cfgPath := configFlag(fs)
	state := fs.String("state", "", "state folder holding the tool pins (default: the config's state_dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *state == "" {
		op, err := loadOpConfig(*cfgPath)
		if err != nil {
			return fmt.Errorf("%w (or pass --state DIR)", err)
		}
		if err := op.mustExist("state_dir", op.Cfg.StateDir); err != nil {
			return err
		}
		*state = op.Cfg.StateDir
	}
	if fs.NArg() == 0 {
		pending, err := mcpproxy.Pending(*state)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			fmt.Fprintln(stdout, "no changed tools are waiting for approval")
			return nil
		}
		fmt.Fprintln(stdout, "changed tools waiting for approval (parachute mcp approve TOOL…):")
		for _, k := range pending {
			fmt.Fprintln(stdout, "  "+k)
		}
		return nil
	}
	done, err := mcpproxy.Approve(*state, fs.Args()...)
	if err != nil {
		return err
	}
	for _, k := range done {
		fmt.Fprintln(stdout, "approved "+k)
	}
	return nil
}

// mcpStdio bridges newline-delimited JSON-RPC on stdin/stdout to the
// stateless streamable HTTP endpoint /mcp on the session socket. The
// gateway does every check; this only carries messages.
func mcpStdio(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mcp stdio [--socket PATH]", stderr)
	sock := fs.String("socket", or(os.Getenv("PARACHUTE_SOCKET"), defaultSocket), "session socket (env PARACHUTE_SOCKET)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return stdioBridge(ctx, mcpStdin, stdout, *sock)
}

// stdioBridge sends each line of in as one POST and writes each JSON-RPC
// answer as one line of out. Requests other than initialize run
// concurrently (at most 16 at a time); their answers may come back in any
// order, as JSON-RPC allows.
func stdioBridge(ctx context.Context, in io.Reader, out io.Writer, sock string) error {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	var wmu sync.Mutex
	write := func(b []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = out.Write(append(bytes.TrimSpace(b), '\n'))
	}
	c := &sessionClient{hc: hc}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), mcpproxy.DefaultMaxMessageBytes+1)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		msg := append([]byte(nil), line...)
		if !concurrent(msg) {
			// initialize and notifications keep their order: the session ID
			// comes with the answer to initialize, and the server expects
			// notifications/initialized before any call.
			for _, answer := range c.post(ctx, msg) {
				if answer != nil {
					write(answer)
				}
			}
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			for _, answer := range c.post(ctx, msg) {
				if answer != nil {
					write(answer)
				}
			}
		}()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("mcp stdio: reading stdin: %w", err)
	}
	return nil
}

// sessionClient posts messages to /mcp and carries the MCP session ID the
// gateway hands out at initialize.
type sessionClient struct {
	hc *http.Client
	mu sync.Mutex
	id string
}

// post sends one message and returns the JSON-RPC messages of the answer:
// none for an accepted notification, the body of a JSON answer, the data
// events of an event stream, or a JSON-RPC error naming the failure.
func (c *sessionClient) post(ctx context.Context, msg []byte) [][]byte {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://parachute/mcp", bytes.NewReader(msg))
	if err != nil {
		return [][]byte{bridgeError(msg, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	c.mu.Lock()
	if c.id != "" {
		req.Header.Set("Mcp-Session-Id", c.id)
	}
	c.mu.Unlock()
	resp, err := c.hc.Do(req)
	if err != nil {
		return [][]byte{bridgeError(msg, err)}
	}
	defer resp.Body.Close()
	if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
		c.mu.Lock()
		c.id = id
		c.mu.Unlock()
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return [][]byte{bridgeError(msg, err)}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		var out [][]byte
		for _, l := range bytes.Split(body, []byte("\n")) {
			if d, ok := bytes.CutPrefix(l, []byte("data:")); ok && len(bytes.TrimSpace(d)) > 0 {
				out = append(out, d)
			}
		}
		return out
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	if !json.Valid(body) {
		return [][]byte{bridgeError(msg, fmt.Errorf("gateway answered %s", resp.Status))}
	}
	return [][]byte{body}
}

// concurrent reports whether msg is a request other than initialize, which
// may run beside others.
func concurrent(msg []byte) bool {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	return json.Unmarshal(msg, &m) == nil && len(m.ID) > 0 && m.Method != "initialize"
}

// bridgeError is a JSON-RPC error answering msg, or nil when msg is a
// notification, which gets no answer.
func bridgeError(msg []byte, err error) []byte {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(msg, &m) == nil && len(m.ID) == 0 {
		return nil
	}
	e := &mcpproxy.RPCError{ID: m.ID, Code: -32603, Message: "parachute mcp stdio: " + err.Error()}
	b, _ := e.MarshalJSON()
	return b
}
