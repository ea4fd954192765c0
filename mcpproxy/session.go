package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	s := &Session{p: p, facts: so.Facts, guard: g, client: so.ClientRoot}
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

// Close records the refusals not yet recorded and releases the session's
// workspace root.
func (s *Session) Close() error {
	s.flushRefusals(context.Background())
	if s.vault != nil {
		return s.vault.Close()
	}
	return nil
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
