package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/console"
	"github.com/parachute-gateway/parachute/engine"
)

// startConsole mounts the operator console on the admin listener's mux
// (docs/console.md), starts its metrics sampler under ctx and mints the
// login token logged at start.
func (g *Gateway) startConsole(ctx context.Context, wg *sync.WaitGroup, mux *http.ServeMux, addr string) error {
	c, err := console.New(console.Options{Backend: consoleBackend{g}, Addr: addr,
		Logger: g.log.With().Str("component", "console").Logger()})
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	mux.Handle(console.Prefix, c.Handler())
	g.adminMu.Lock()
	g.console = c
	g.adminMu.Unlock()
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(ctx) }()
	u, err := c.MintURL(ctx, "gateway start")
	if err != nil {
		g.log.Error().Err(err).Msg("console login token not minted; get one later with `parachute console url --config FILE`")
		return nil
	}
	g.log.Info().Str("url", u).Dur("valid", console.TokenTTL).
		Msg("operator console: open this URL once to sign in (single use); `parachute console url --config FILE` mints another")
	return nil
}

func (g *Gateway) consoleNow() *console.Console {
	g.adminMu.Lock()
	defer g.adminMu.Unlock()
	return g.console
}

// ConsoleURL mints a one-time console login URL for by, as `parachute
// console url` does over the admin socket (tests sign in with it). It
// fails before the admin listener runs.
func (g *Gateway) ConsoleURL(ctx context.Context, by string) (string, error) {
	c := g.consoleNow()
	if c == nil {
		return "", errors.New("gateway: the console is not running (Run starts it with the admin listener)")
	}
	return c.MintURL(ctx, by)
}

// consoleBackend is the gateway as the console sees it.
type consoleBackend struct{ g *Gateway }

func (b consoleBackend) Admin(actor string) http.Handler { return b.g.AdminHandlerAs(actor) }

func (b consoleBackend) Record(ctx context.Context, r audit.Record) error {
	_, err := b.g.emit.Append(ctx, r)
	return err
}

func (b consoleBackend) AuditDir() string { return b.g.cfg.Audit.Dir }

// VerifyAudit verifies as `parachute audit verify --config` does: the
// gateway's public key and its newest checkpoint as the anchor.
func (b consoleBackend) VerifyAudit() (audit.VerifyReport, error) {
	cfg := b.g.cfg
	opts := audit.VerifyOptions{}
	if k, err := audit.LoadPublicKey(cfg.Audit.KeyFile + audit.PublicKeySuffix); err == nil {
		opts.Key = &k
	}
	anchor := filepath.Join(cfg.StateDir, audit.CheckpointFileName)
	if note, err := os.ReadFile(anchor); err == nil {
		opts.Anchor, opts.AnchorName = string(note), anchor
	}
	return audit.VerifyWith(cfg.Audit.Dir, opts)
}

func (b consoleBackend) Policy() console.PolicyStatus {
	return console.PolicyStatus{Revision: b.g.Engine.Revision(), Dir: b.g.cfg.Policies, Refused: b.g.Engine.Refused()}
}

func (b consoleBackend) Explain(ctx context.Context, entry engine.Entry, doc any) (engine.Decision, []*topdown.Event) {
	return b.g.Engine.Explain(ctx, engine.RawInput{For: entry, Doc: doc})
}

func (b consoleBackend) Metrics() prometheus.Gatherer { return b.g.metrics.reg }

func (b consoleBackend) Health(ctx context.Context) console.Health {
	g := b.g
	h := console.Health{Sandboxes: map[string]int{}, PoolSize: g.cfg.Runtime.WarmPool, Audit: g.Audit.Healthy(),
		PolicyRefused: g.Engine.Refused() != nil}
	if g.pool != nil {
		h.PoolReady = g.pool.ReadyTotal()
	}
	if list, err := g.Store.List(ctx, ""); err == nil {
		for _, s := range list {
			if l := g.Manager.Live(s.ID); l != nil && s.Ended.IsZero() {
				h.Sandboxes[l.Profile.Runtime]++
			}
		}
	}
	g.connMu.Lock()
	for _, c := range g.conns {
		st := g.connState[c.Name()]
		if st.State == "" {
			st = console.ConnectorHealth{Name: c.Name(), State: console.ConnectorStarting}
		}
		h.Connectors = append(h.Connectors, st)
	}
	g.connMu.Unlock()
	return h
}

// trackedConnector records its connector's state for the console's health
// page: running while Run runs; after Run returns, stopped (credentials
// refused, or shutdown) or backing off (the supervisor restarts it).
type trackedConnector struct {
	connectors.Connector
	g *Gateway
}

func (t trackedConnector) set(state string, err error) {
	st := console.ConnectorHealth{Name: t.Name(), State: state, Since: time.Now()}
	if err != nil {
		st.Error = err.Error()
	}
	t.g.connMu.Lock()
	if t.g.connState == nil {
		t.g.connState = map[string]console.ConnectorHealth{}
	}
	t.g.connState[t.Name()] = st
	t.g.connMu.Unlock()
}

func (t trackedConnector) Run(ctx context.Context, h connectors.Handler) (err error) {
	t.set(console.ConnectorRunning, nil)
	defer func() {
		if p := recover(); p != nil {
			t.set(console.ConnectorBackingOff, fmt.Errorf("panicked: %v", p))
			panic(p)
		}
		switch {
		case ctx.Err() != nil:
			t.set(console.ConnectorStopped, errors.New("the gateway is stopping"))
		case errors.Is(err, connectors.ErrUnauthorized):
			t.set(console.ConnectorStopped, err)
		case err == nil:
			t.set(console.ConnectorBackingOff, errors.New("returned before shutdown; restarting with backoff"))
		default:
			t.set(console.ConnectorBackingOff, fmt.Errorf("%w; restarting with backoff", err))
		}
	}()
	return t.Connector.Run(ctx, h)
}

// tracked wraps the connectors for RunAll.
func (g *Gateway) tracked() []connectors.Connector {
	out := make([]connectors.Connector, len(g.conns))
	for i, c := range g.conns {
		out[i] = trackedConnector{Connector: c, g: g}
	}
	return out
}
