package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy/pathguard"
	"github.com/parachute-gateway/parachute/mcpproxy/vault"
)

// SessionOptions describe one agent session.
type SessionOptions struct {
	// Facts returns the session's facts for each decision (the turn ID
	// changes between turns). Required.
	Facts func() engine.SessionFacts
	// Workspace is the vault-relative workspace the session is bound to;
	// "" takes Facts().Workspace at creation. It never changes afterwards.
	Workspace string
	// ClientRoot is how the client names the workspace folder: "/workspace"
	// in a sandbox, the host folder for a direct session or a stdio proxy.
	ClientRoot string
	// Launcher runs this session's sandboxed upstreams (default:
	// Options.Launcher). The gateway gives each session one that starts
	// the upstream under the session's own profile.
	Launcher Launcher
}

// Session serves MCP to one agent session.
type Session struct {
	p      *Proxy
	facts  func() engine.SessionFacts
	guard  *pathguard.Guard
	vault  *vault.Server // nil unless the proxy serves the built-in tools
	server *mcp.Server
	client string // ClientRoot, to map host paths in results back

	refused refusals // budget of recorded refusals (refuse.go)

	launcher Launcher
	rmu      sync.Mutex
	remotes  map[string]*remote // sandboxed upstreams started for this session
	closed   bool
}

// NewSession binds a session to its workspace and builds its MCP server.
func (p *Proxy) NewSession(ctx context.Context, so SessionOptions) (*Session, error) {
	if so.Facts == nil {
		return nil, errors.New("mcpproxy: session facts are required")
	}
	ws := so.Workspace
	if ws == "" {
		ws = so.Facts().Workspace
	}
	g, err := pathguard.New(p.opts.Vault, ws, so.ClientRoot)
	if err != nil {
		return nil, fmt.Errorf("mcpproxy: session: %w", err)
	}
	s := &Session{p: p, facts: so.Facts, guard: g, client: so.ClientRoot, launcher: so.Launcher, remotes: map[string]*remote{}}
	if s.launcher == nil {
		s.launcher = p.opts.Launcher
	}
	if p.opts.Builtin {
		max := p.opts.MaxFileBytes
		if s.vault, err = vault.New(g.HostRoot(), vault.Options{MaxRead: max, MaxWrite: max}); err != nil {
			return nil, fmt.Errorf("mcpproxy: session: %w", err)
		}
	}
	s.server = mcp.NewServer(&mcp.Implementation{Name: "parachute", Version: "1"}, &mcp.ServerOptions{
		Logger: p.log,
	})
	for _, e := range p.catalog.order {
		s.server.AddTool(e.def, s.handler(e))
	}
	s.server.AddReceivingMiddleware(s.filterList, s.checkToolName)
	return s, nil
}

// Close records the refusals not yet recorded, stops the session's
// sandboxed upstreams and releases the session's workspace root.
func (s *Session) Close() error {
	s.flushRefusals(context.Background())
	s.rmu.Lock()
	s.closed = true
	remotes := s.remotes
	s.remotes = map[string]*remote{}
	s.rmu.Unlock()
	var errs []error
	for _, r := range remotes {
		errs = append(errs, r.close())
	}
	if s.vault != nil {
		errs = append(errs, s.vault.Close())
	}
	return errors.Join(errs...)
}

// remoteFor is the upstream connection a call to e goes to: the shared one,
// or for a sandboxed upstream this session's own, started at first use.
func (s *Session) remoteFor(ctx context.Context, e *entry) (*remote, error) {
	if !e.remote.up.sandboxed() {
		return e.remote, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.closed {
		return nil, errors.New("the session is closed")
	}
	if r := s.remotes[e.server]; r != nil {
		return r, nil
	}
	if s.launcher == nil {
		return nil, fmt.Errorf("upstream %s runs in a sandbox and this session has no sandbox runtime", e.server)
	}
	r, err := launch(ctx, s.launcher, e.remote.up, s.guard.HostRoot())
	if err != nil {
		return nil, err
	}
	s.remotes[e.server] = r
	return r, nil
}

// Handler serves the session's MCP over streamable HTTP (JSON responses,
// no server-initiated stream) behind the intake checks. The gateway mounts
// it at /mcp on the session's socket. MCP sessions (Mcp-Session-Id) only
// save the SDK re-initialising per request; they grant nothing, as whoever
// holds the socket is this session.
func (s *Session) Handler() http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.server },
		&mcp.StreamableHTTPOptions{
			JSONResponse:   true,
			SessionTimeout: 30 * time.Minute,
			Logger:         s.p.log,
			// The socket is private to one session; Host is meaningless.
			DisableLocalhostProtection: true,
			MaxRequestBodyBytes:        s.p.opts.MaxMessageBytes,
		})
	return Intake(h, s.p.opts.MaxMessageBytes, s.rejected)
}

// Server is the session's go-sdk server, for callers that bring their own
// transport. Prefer Handler or ServeStdio, which apply the intake checks.
func (s *Session) Server() *mcp.Server { return s.server }
