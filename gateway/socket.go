package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/egress"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy"
	"github.com/parachute-gateway/parachute/mcpproxy/sandboxed"
	"github.com/parachute-gateway/parachute/modelproxy"
	"github.com/parachute-gateway/parachute/sessions"
)

// socketHandler returns the factory of per-session socket handlers. A
// session's socket serves, and only serves:
//
//	/mcp                   the policy-enforcing MCP proxy over the workspace
//	/v1/chat/completions   or /v1/messages: the model proxy (key injected here)
//	CONNECT, absolute URLs the egress proxy, when the session has network
//
// Every request on it is about that session: the socket is the identity.
func (g *Gateway) socketHandler(ctx context.Context) (func(*sessions.Live) (http.Handler, error), error) {
	noModel := refuse(http.StatusServiceUnavailable, "model-not-configured",
		"no model is configured on this gateway: set model.provider in the gateway config")
	usage := sessions.Usage{Store: g.Store}
	// Every credential the gateway holds is redacted from model answers.
	var secrets []string
	for _, k := range g.cfg.Connectors {
		for _, env := range []string{k.TokenEnv, k.AccessTokenEnv, k.WebhookSecret, k.PickleKeyEnv, k.RecoveryKeyEnv} {
			if v := g.getenv(env); env != "" && v != "" {
				secrets = append(secrets, v)
			}
		}
	}
	mcpFor, err := g.mcpFactory(ctx)
	if err != nil {
		return nil, err
	}
	return func(l *sessions.Live) (http.Handler, error) {
		facts := func(*http.Request) (engine.SessionFacts, bool) { return l.Facts(), true }
		mcpH, mcpClose, err := mcpFor(l)
		if err != nil {
			return nil, err
		}
		mux := http.NewServeMux()
		mux.Handle("/mcp", mcpH)
		var model http.Handler = noModel
		if p := providerName(g.cfg.Model.Provider); p != "" {
			mp, err := modelproxy.New(modelproxy.Options{
				Provider: p, BaseURL: g.cfg.Model.BaseURL, APIKey: g.getenv(g.cfg.Model.APIKeyEnv), Secrets: secrets,
				Decider: g.Engine, Usage: usage, Session: facts,
			})
			if err != nil {
				return nil, err
			}
			model = mp
		}
		mux.Handle("/v1/", model)
		var out http.Handler = refuse(http.StatusForbidden, "network-disabled",
			"this session has no network: the policy did not grant it")
		if l.Profile.Network {
			ep, err := egress.New(egress.Options{Decider: g.Engine, Session: facts})
			if err != nil {
				return nil, err
			}
			out = ep
		}
		return &sessionSocket{mux: mux, egress: out, closer: mcpClose}, nil
	}, nil
}

// sessionSocket routes a session socket's requests; Close releases the
// session's MCP server when the session stops.
type sessionSocket struct {
	mux    *http.ServeMux
	egress http.Handler
	closer io.Closer
}

func (s *sessionSocket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect || r.URL.IsAbs() {
		s.egress.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Close implements io.Closer.
func (s *sessionSocket) Close() error { return s.closer.Close() }

// refuse answers every request with status and a JSON error naming the
// reason.
func refuse(status int, reason, msg string) http.Handler {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"type": reason, "message": msg}})
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Parachute-Reasons", reason)
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

// mcpFactory starts the MCP proxy shared by all sessions (the built-in
// vault tools plus the config's upstreams; an upstream that cannot be
// reached stops the gateway from starting) and returns the per-session
// handler factory. Each session's MCP server is bound to its workspace.
func (g *Gateway) mcpFactory(ctx context.Context) (func(*sessions.Live) (http.Handler, io.Closer, error), error) {
	ups := mcpproxy.UpstreamsFromConfig(g.cfg.MCP)
	launcher := func(l *sessions.Live) mcpproxy.Launcher {
		if g.procs == nil {
			return nil
		}
		ul := sandboxed.Launcher{Runtime: g.procs, Image: g.cfg.Runtime.Image, Session: "catalog",
			Profile: sandboxed.CatalogProfile, Stderr: upstreamLog{g.log}}
		if l != nil {
			ul.Session, ul.Owner, ul.Profile = l.Session.ID, l.Session.Owner, l.Profile
		}
		return ul
	}
	vault, err := filepath.Abs(g.cfg.Vault)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	p, err := mcpproxy.New(ctx, mcpproxy.Options{
		Decider: g.Engine, Vault: vault, Builtin: true, Upstreams: ups, Launcher: launcher(nil),
		StateDir: g.cfg.StateDir, // pins: <state_dir>/mcp-pins.json (parachute mcp approve --state)
		Logger:   mcpLogger(g.log),
	})
	if err != nil {
		return nil, fmt.Errorf("mcp: %w", err)
	}
	g.closers = append(g.closers, func(context.Context) { p.Close() })
	return func(l *sessions.Live) (http.Handler, io.Closer, error) {
		s, err := p.NewSession(ctx, mcpproxy.SessionOptions{Facts: l.Facts, Workspace: l.Session.Workspace,
			ClientRoot: l.ClientRoot, Launcher: launcher(l)})
		if err != nil {
			return nil, nil, err
		}
		return s.Handler(), s, nil
	}, nil
}

// mcpLogger routes the MCP proxy's slog output (upstream failures, catalog
// changes) into the gateway's zerolog logger, tagged component=mcp, at warn
// and above: an upstream that fails is visible in the gateway's own log. It
// never logs below the gateway's own level.
func mcpLogger(log zerolog.Logger) *slog.Logger {
	l := log.With().Str("component", "mcp").Logger()
	return slog.New(zerolog.NewSlogHandler(l.Level(max(log.GetLevel(), zerolog.WarnLevel))))
}
