// Package mcpproxy is the policy-enforcing MCP server that agent sessions
// talk to. It gathers the tools of the built-in vault server and of the
// configured upstream MCP servers into one catalog, shows each session only
// the tools policy lets it use, and decides every tools/call with the
// parachute.tool policy after resolving every path argument (package
// pathguard). An allowed call is forwarded with its paths rewritten to the
// resolved host paths; a denied one becomes a tool error naming the reasons.
//
// A session is fixed to one workspace when it is created; its identity
// comes from the session's facts, never from the client (on the gateway, the
// per-session unix socket is the identity). See docs/mcpproxy.md.
package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy/vault"
)

// BuiltinServer is the server name of the built-in vault tools.
const BuiltinServer = "vault"

// DefaultCallTimeout bounds one forwarded tool call.
const DefaultCallTimeout = 2 * time.Minute

// DefaultMaxMessageBytes bounds one JSON-RPC message from a client (1 MiB).
const DefaultMaxMessageBytes = 1 << 20

// Decider decides policy inputs; *engine.Engine implements it. Decide
// records every decision before returning it; a tools/list only Evaluates
// (no token taken, nothing recorded) and Commits one listing record.
type Decider interface {
	Decide(ctx context.Context, in engine.Input) engine.Decision
	Evaluate(ctx context.Context, in engine.Input) engine.Decision
	Commit(ctx context.Context, in engine.Input, d *engine.Decision)
	Deny(in engine.Input, reasons ...string) engine.Decision
}

// Options configure a Proxy.
type Options struct {
	Decider Decider
	// Vault is the host folder holding every workspace.
	Vault string
	// Builtin serves the built-in vault tools (server "vault").
	Builtin bool
	// Upstreams are further MCP servers; their tools join the catalog.
	Upstreams []Upstream
	// StateDir holds the pin store (PinsFile); "" keeps pins in memory, so
	// a changed tool is only caught within one run.
	StateDir string
	// MaxMessageBytes bounds a client's JSON-RPC message (default
	// DefaultMaxMessageBytes).
	MaxMessageBytes int64
	// MaxFileBytes bounds a file the built-in tools read or write (default
	// vault.DefaultMaxBytes).
	MaxFileBytes int64
	// CallTimeout bounds one forwarded call (default DefaultCallTimeout).
	CallTimeout time.Duration
	// Logger receives upstream and catalog events (default: discard).
	Logger *slog.Logger
	// UpstreamStderr receives upstream commands' stderr (default: discard).
	UpstreamStderr io.Writer
	// Launcher runs sandboxed upstreams (every Command upstream not
	// OnHost): once at New, over an empty folder, to list its tools, and
	// then once per session over that session's workspace. Required when
	// there is such an upstream.
	Launcher Launcher
}

// Proxy holds the tool catalog and the upstream connections shared by all
// sessions. It is safe for concurrent use.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	pins    *pins
	remotes []*remote
	catalog *catalog
}

// New connects to every upstream, lists their tools, checks them against
// the pin store and builds the catalog. An upstream that cannot be reached
// is an error: the proxy does not start with part of its tools missing.
func New(ctx context.Context, opts Options) (*Proxy, error) {
	if opts.Decider == nil {
		return nil, errors.New("mcpproxy: a Decider is required")
	}
	if !filepath.IsAbs(opts.Vault) {
		return nil, fmt.Errorf("mcpproxy: vault %q must be an absolute path", opts.Vault)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = vault.DefaultMaxBytes
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.UpstreamStderr == nil {
		opts.UpstreamStderr = io.Discard
	}
	p := &Proxy{opts: opts, log: opts.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if p.pins, err = loadPins(opts.StateDir); err != nil {
		return nil, err
	}
	var listing []*remote // sandboxed upstreams' listing instances
	defer func() {
		for _, r := range listing {
			_ = r.close()
		}
	}()
	for _, up := range opts.Upstreams {
		if err := checkUpstream(up, opts.Launcher); err != nil {
			p.Close()
			return nil, err
		}
		var r *remote
		if up.sandboxed() {
			// Its tools are listed from an instance that sees an empty
			// folder; every session then gets an instance of its own.
			r, err = listInstance(ctx, opts.Launcher, up)
			if r != nil {
				listing = append(listing, r)
			}
		} else {
			r, err = connect(ctx, up, opts.UpstreamStderr)
		}
		if err != nil {
			p.Close()
			return nil, err
		}
		p.remotes = append(p.remotes, r)
	}
	if p.catalog, err = p.buildCatalog(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// listInstance launches a sandboxed upstream over a new empty folder, to
// list its tools.
func listInstance(ctx context.Context, l Launcher, up Upstream) (*remote, error) {
	dir, err := os.MkdirTemp("", "parachute-upstream-")
	if err != nil {
		return nil, fmt.Errorf("mcpproxy: upstream %s: %w", up.Name, err)
	}
	r, err := launch(ctx, l, up, dir)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	stop := r.stop
	r.stop = func() error { return errors.Join(stop(), os.Remove(dir)) }
	return r, nil
}

// Close disconnects every shared upstream (stopping on-host commands).
// Sandboxed upstreams belong to sessions, which close them.
func (p *Proxy) Close() error {
	var errs []error
	for _, r := range p.remotes {
		if !r.up.sandboxed() {
			errs = append(errs, r.close())
		}
	}
	return errors.Join(errs...)
}

// Tools lists the catalog: every tool with its server and access class, and
// whether it is blocked because its definition changed.
func (p *Proxy) Tools() []ToolInfo {
	out := make([]ToolInfo, 0, len(p.catalog.order))
	for _, e := range p.catalog.order {
		out = append(out, ToolInfo{Name: e.def.Name, Server: e.server, Access: e.access,
			PathArgs: e.pathArgList, Changed: !e.approved.Load()})
	}
	return out
}

// ToolInfo describes one catalog entry.
type ToolInfo struct {
	Name, Server, Access string
	PathArgs             []string
	Changed              bool
}

// builtinTools is the catalog's view of the vault tools.
func builtinTools() []*mcp.Tool { return vault.Definitions() }
