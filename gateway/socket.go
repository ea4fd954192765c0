package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/parachute-gateway/parachute/egress"
	"github.com/parachute-gateway/parachute/engine"
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
func (g *Gateway) socketHandler() (func(*sessions.Live) (http.Handler, error), error) {
	noModel := refuse(http.StatusServiceUnavailable, "model-not-configured",
		"no model is configured on this gateway: set model.provider in the gateway config")
	usage := sessions.Usage{Store: g.Store}
	mcpFor, err := g.mcpFactory()
	if err != nil {
		return nil, err
	}
	return func(l *sessions.Live) (http.Handler, error) {
		facts := func(*http.Request) (engine.SessionFacts, bool) { return l.Facts(), true }
		mux := http.NewServeMux()
		mux.Handle("/mcp", mcpFor(l))
		mux.Handle("/mcp/", mcpFor(l))
		var model http.Handler = noModel
		if p := providerName(g.cfg.Model.Provider); p != "" {
			mp, err := modelproxy.New(modelproxy.Options{
				Provider: p, BaseURL: g.cfg.Model.BaseURL, APIKey: g.getenv(g.cfg.Model.APIKeyEnv),
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
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodConnect || r.URL.IsAbs() {
				out.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}), nil
	}, nil
}

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

// mcpFactory is filled in by the MCP proxy wiring.
func (g *Gateway) mcpFactory() (func(*sessions.Live) http.Handler, error) {
	return func(*sessions.Live) http.Handler {
		return refuse(http.StatusServiceUnavailable, "mcp-unavailable", "the MCP proxy is not wired yet")
	}, nil
}
