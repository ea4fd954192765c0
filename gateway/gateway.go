// Package gateway wires the parts into `parachute serve`: the config, the
// policy engine, the audit log, the pairing and session stores, the sandbox
// runtimes, each session's socket (MCP, model and egress proxies), the chat
// connectors and the admin listener (metrics, health).
//
// The order of start is the order of trust: nothing listens before the
// policy compiled and the audit log opened, and on shutdown every sandbox
// is stopped before the audit log closes.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/console"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/engine/ratelimit"
	"github.com/parachute-gateway/parachute/mcpproxy/sandboxed"
	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/sessions"
)

// Options are what `parachute serve` passes besides the config.
type Options struct {
	Logger zerolog.Logger
	// Runtimes overrides the sandbox runtimes made from the config (tests).
	Runtimes map[string]sessions.Sandboxes
	// Connectors overrides the connectors made from the config (tests).
	Connectors []connectors.Connector
	// Getenv reads secrets (default os.Getenv).
	Getenv func(string) string
}

// Gateway is a configured, not yet running gateway.
type Gateway struct {
	cfg     *config.Config
	log     zerolog.Logger
	getenv  func(string) string
	Engine  *engine.Engine
	Audit   *audit.Log
	emit    *audit.Emitter // every append goes through it (checked kinds, metrics)
	Pairing *pairing.Store
	Store   *sessions.Store
	Manager *sessions.Manager
	Router  *connectors.Router
	conns   []connectors.Connector
	metrics *metrics
	closers []func(context.Context)
	// procs runs sandboxed MCP upstreams (nil when the runtimes were given
	// by the caller: such a gateway refuses a sandboxed upstream).
	procs sandboxed.Starter
	// pool is the warm pool, when runtime.warm_pool is set (its readiness
	// is a metric).
	pool *runtime.Pool

	limiter    *ratelimit.Limiter
	limitsPath string
	limitsMu   sync.Mutex
	limitsSeen uint64    // limiter.Changes() at the last save
	limitsNext time.Time // no periodic save before (saves take at most a tenth of the time)

	// applied is the config whose policy data is in force after a
	// reload (nil: cfg's); cfg stays the one the gateway started with.
	applied atomic.Pointer[config.Config]

	ready   chan struct{}
	admin   net.Listener
	console *console.Console // on the admin listener: console.go
	adminMu sync.Mutex

	connMu    sync.Mutex
	connState map[string]console.ConnectorHealth // by connector name, for the console
}

// New builds the gateway from a validated config: it opens the audit log,
// compiles the policies (refusing to start without a valid one), opens
// the stores and makes the runtimes and connectors. Nothing runs yet.
func New(ctx context.Context, cfg *config.Config, opts Options) (_ *Gateway, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: opts.Logger, getenv: opts.Getenv, ready: make(chan struct{})}
	if g.getenv == nil {
		g.getenv = os.Getenv
	}
	defer func() {
		if err != nil {
			g.close(context.WithoutCancel(ctx))
		}
	}()
	// Paths in the config are relative to where the gateway starts; the
	// runtime and the sandboxes need them absolute.
	for _, p := range []*string{&cfg.Vault, &cfg.StateDir, &cfg.Policies, &cfg.Audit.Dir, &cfg.Audit.KeyFile} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, fmt.Errorf("config path %q: %w", *p, err)
		}
		*p = abs
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	if err := os.MkdirAll(cfg.Vault, 0o750); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}

	// The checkpoint key and the newest checkpoint live outside the audit
	// folder; checkpoints also go to the process log, to be anchored there.
	key, err := audit.OpenKey(cfg.Audit.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("audit.key_file: %w", err)
	}
	g.Audit, err = audit.Open(cfg.Audit.Dir, audit.Options{MaxBytes: cfg.Audit.MaxBytes, Signer: key,
		CheckpointEvery: cfg.Audit.CheckpointEvery, CheckpointInterval: cfg.Audit.CheckpointInterval,
		CheckpointFile: filepath.Join(cfg.StateDir, audit.CheckpointFileName),
		Logger:         slog.New(zerolog.NewSlogHandler(g.log.With().Str("component", "audit").Logger()))})
	if err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	g.closers = append(g.closers, func(context.Context) { g.Audit.Close() })

	var mgr *sessions.Manager
	g.metrics = newMetrics(metricSources{
		active: func() float64 {
			if mgr == nil {
				return 0
			}
			return float64(mgr.Active())
		},
		reloadRefusals: func() float64 {
			if g.Engine == nil {
				return 0
			}
			return float64(g.Engine.Refusals())
		},
		auditRefused: func() float64 { return float64(g.Audit.Refused()) },
		pendingDenials: func() float64 {
			if g.Router == nil {
				return 0
			}
			return float64(g.Router.PendingDenials())
		},
		poolReady: func() float64 {
			if g.pool == nil {
				return 0
			}
			return float64(g.pool.ReadyTotal())
		},
		unrecorded: func() float64 {
			if mgr == nil {
				return 0
			}
			return float64(mgr.Unrecorded())
		},
	})
	g.emit = audit.NewEmitter(g.Audit, g.metrics)
	// Rate-limit buckets (messages, tools, denials) survive a restart: the
	// snapshot is read before anything is decided, and a snapshot that
	// cannot be read stops the start rather than hand every flooder a
	// fresh burst.
	g.limitsPath = filepath.Join(cfg.StateDir, RateLimitFileName)
	g.limiter = ratelimit.New(ratelimit.Options{})
	if err := g.limiter.ReadFile(g.limitsPath); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	g.Engine, err = engine.New(ctx, engine.Options{
		PolicyDir: cfg.Policies,
		Data:      cfg.PolicyData(),
		Recorder:  recorder{next: g.emit, m: g.metrics},
		Logger:    g.log.With().Str("component", "engine").Logger(),
		// A reload must pass the revision's own tests and examples, or
		// the last good revision stays (and /readyz says so).
		TestOnReload: true,
		Limiter:      g.limiter,
		Timeout:      cfg.PolicyTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	// Last of all on the way out (closers run in reverse): every spend
	// made until the end is in the final snapshot.
	g.closers = append(g.closers, func(context.Context) { g.saveLimits(true) })

	g.Pairing, err = pairing.Open(ctx, pairing.Options{Path: pairing.PathIn(cfg.StateDir), Recorder: authRecorder{g.emit}})
	if err != nil {
		return nil, fmt.Errorf("pairing store: %w", err)
	}
	g.Store, err = sessions.OpenStore(sessions.StoreOptions{Path: filepath.Join(cfg.StateDir, "sessions.db")})
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	g.closers = append(g.closers, func(context.Context) { g.Store.Close() })

	runtimes := opts.Runtimes
	if runtimes == nil {
		runtimes, err = g.runtimes(ctx)
		if err != nil {
			return nil, err
		}
	}
	for name, rt := range runtimes {
		runtimes[name] = countingRuntime{next: rt, name: name, m: g.metrics}
	}
	sock, err := g.socketHandler(ctx)
	if err != nil {
		return nil, err
	}
	mgr, err = sessions.NewManager(sessions.Options{
		Store: g.Store, Decider: g.Engine, Runtimes: runtimes, Audit: g.emit,
		Vault: cfg.Vault, SocketRoot: filepath.Join(cfg.StateDir, "s"), Socket: sock,
		Image: cfg.Runtime.Image, Agent: cfg.Runtime.AgentCommand, Model: sessions.Model{Provider: providerName(cfg.Model.Provider), Name: cfg.Model.Model},
		AgentFor:    agentFor(cfg),
		Hook:        runtime.RunPreSessionHook,
		IdleSandbox: cfg.Runtime.IdleTimeout,
		Logger:      g.log.With().Str("component", "sessions").Logger(),
	})
	if err != nil {
		return nil, err
	}
	g.Manager = mgr
	g.closers = append(g.closers, mgr.Close)

	// The duplicate filter survives restarts: a message redelivered after
	// a crash is not run twice.
	seen, err := connectors.OpenSeenStore(filepath.Join(cfg.StateDir, "seen.db"), 0, 0)
	if err != nil {
		return nil, err
	}
	g.closers = append(g.closers, func(context.Context) { seen.Close() })
	// Denials are throttled per sender and globally; the budgets live in
	// the persisted limiter, and the counts of what was suppressed are
	// recorded by the flusher in Run and, at shutdown, before the audit
	// log closes.
	ropts := connectors.RouterOptions{
		Decider: g.Engine, Turns: mgr, Pairing: g.Pairing, Seen: seen,
		Logger:  g.log.With().Str("component", "router").Logger(),
		Denials: connectors.DenialBudget{Limiter: g.limiter},
	}
	ropts.Approvals = g.chatApprovals() // owners answer pairing requests in a DM: approvals.go
	if cfg.Audit.RecordText {
		ropts.RecordText = g.recordText
	}
	g.Router, err = connectors.NewRouter(ropts)
	if err != nil {
		return nil, err
	}
	g.closers = append(g.closers, func(ctx context.Context) { g.Router.FlushDenials(ctx, true) })
	g.conns = opts.Connectors
	if g.conns == nil {
		g.conns, err = g.connectors()
		if err != nil {
			return nil, err
		}
	}
	return g, nil
}

func providerName(p string) string {
	if p == "none" {
		return ""
	}
	return p
}

// Run runs every connector, the admin listener, the policy watcher and
// the session reaper until ctx ends, then stops everything it started.
// A connector that fails is logged and retried; it never stops the others.
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	adminErr := make(chan error, 1)
	if err := g.startAdmin(ctx, &wg, adminErr); err != nil {
		g.close(context.WithoutCancel(ctx))
		return err
	}
	if err := g.startAdminSocket(ctx, &wg, adminErr); err != nil { // operator API: admin.go
		cancel()
		wg.Wait()
		g.close(context.WithoutCancel(ctx))
		return err
	}
	wg.Add(3)
	go func() { defer wg.Done(); _ = g.Engine.Watch(ctx) }()
	go func() { defer wg.Done(); g.Manager.Run(ctx, time.Minute) }()
	go func() { defer wg.Done(); g.persistLimits(ctx, LimitSaveInterval) }()
	wg.Add(1)
	go func() { defer wg.Done(); g.flushDenials(ctx, DenialFlushInterval) }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Each connector on its own: one that fails or panics is restarted
		// with backoff, one whose credentials are refused stops, and
		// neither stops the others.
		_ = connectors.RunAll(ctx, g.handler(), g.log, g.tracked()...)
	}()
	close(g.ready)
	g.log.Info().Int("connectors", len(g.conns)).Str("policy_revision", g.Engine.Revision()).Msg("gateway running")
	var err error
	select {
	case <-ctx.Done():
	case err = <-adminErr:
	}
	cancel()
	wg.Wait()
	g.close(context.WithoutCancel(ctx))
	return err
}

// handler is what connectors hand messages to: the router, with errors
// logged.
func (g *Gateway) handler() connectors.Handler {
	return loggingHandler{Router: g.Router, log: g.log}
}

// Ready is closed once Run has started everything.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// AdminAddr is the admin listener's address once running.
func (g *Gateway) AdminAddr() net.Addr {
	g.adminMu.Lock()
	defer g.adminMu.Unlock()
	if g.admin == nil {
		return nil
	}
	return g.admin.Addr()
}

// Connectors returns the gateway's connectors.
func (g *Gateway) Connectors() []connectors.Connector { return g.conns }

func (g *Gateway) startAdmin(ctx context.Context, wg *sync.WaitGroup, errc chan<- error) error {
	if err := loopbackOnly("admin.listen", g.cfg.Admin.Listen); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", g.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	g.adminMu.Lock()
	g.admin = ln
	g.adminMu.Unlock()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-g.ready:
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if err := g.Audit.Healthy(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if r := g.Engine.Refused(); r != nil {
			http.Error(w, fmt.Sprintf("not ready: policy reload refused at %s, revision %s kept in force: %v (fix the policy folder; the next good reload clears this)",
				r.At.UTC().Format(time.RFC3339), r.Revision, r.Err), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready policy_revision=" + g.Engine.Revision() + "\n"))
	})
	if err := g.startConsole(ctx, wg, mux, ln.Addr().String()); err != nil { // operator console: console.go
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin listener: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return nil
}

// loopbackOnly refuses a listen address that is not on loopback.
func loopbackOnly(field, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q: %w", field, addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s: %q is not a loopback address; the admin listener is never exposed", field, addr)
	}
	return nil
}

// RateLimitFileName is the rate-limit snapshot in the state dir.
const RateLimitFileName = "ratelimit"

// LimitSaveInterval is how often spent rate-limit tokens are saved: a
// kill -9 loses at most this much of them (a clean stop loses none).
const LimitSaveInterval = time.Second

// persistLimits saves the rate-limit snapshot every interval in which a
// token was spent, until ctx ends (the final save is a closer).
func (g *Gateway) persistLimits(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.saveLimits(false)
		}
	}
}

// DenialFlushInterval is how often the summaries of suppressed denials
// whose window ended are recorded.
const DenialFlushInterval = 5 * time.Second

func (g *Gateway) flushDenials(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Router.FlushDenials(ctx, false)
		}
	}
}

// saveLimits writes the snapshot if a token was spent since the last
// one. A periodic save (not forced) waits ten times as long as the last
// one took, so a limiter swollen by a crowd of senders (about 80 ms per
// 100,000 buckets) costs the disk at most a tenth of its time; the loss
// window on kill -9 grows to match (0.8 s at 100,000, 8 s at the 2^20
// maximum).
func (g *Gateway) saveLimits(force bool) {
	g.limitsMu.Lock()
	defer g.limitsMu.Unlock()
	n := g.limiter.Changes()
	if n == g.limitsSeen || (!force && time.Now().Before(g.limitsNext)) {
		return
	}
	start := time.Now()
	if err := g.limiter.WriteFile(g.limitsPath); err != nil {
		g.log.Error().Err(err).Msg("rate limits not saved; a restart now would forget spends since the last save")
		return
	}
	g.limitsSeen = n
	g.limitsNext = start.Add(10 * time.Since(start))
}

// close stops what New and Run opened, in reverse order.
func (g *Gateway) close(ctx context.Context) {
	for i := len(g.closers) - 1; i >= 0; i-- {
		g.closers[i](ctx)
	}
	g.closers = nil
}

// authRecorder puts pairing and invite events in the audit log.
type authRecorder struct{ log *audit.Emitter }

func (a authRecorder) RecordAuth(ctx context.Context, e pairing.Event) error {
	kind := audit.KindPairing
	switch e.Kind {
	case pairing.KindInviteCreate, pairing.KindInviteRedeem, pairing.KindInviteRevoke:
		kind = audit.KindInvite
	case pairing.KindRevoke:
		kind = audit.KindAdmin
	}
	r := audit.Record{Kind: kind, Connector: e.Connector, User: e.Identity, Decision: "deny", Workspace: e.Workspace,
		Detail: map[string]string{"event": e.Kind, "actor": e.Actor}}
	if e.OK {
		r.Decision = "allow"
	}
	if e.Reason != "" {
		r.Reasons = []string{e.Reason}
	}
	for k, v := range map[string]string{"role": e.Role, "previous_role": e.Previous} {
		if v != "" {
			r.Detail[k] = v
		}
	}
	if !e.Queued.IsZero() {
		r.Detail["queued_at"] = e.Queued.UTC().Format(time.RFC3339Nano)
	}
	_, err := a.log.Append(ctx, r)
	return err
}

// recordText appends a message's text to the audit log just before its
// decision is recorded, when audit.record_text is on (it is off by
// default: the log then holds who did what, not what they said). The
// router calls it only for decisions it records, so duplicates, edits and
// denials past the budget leave no text behind.
func (g *Gateway) recordText(ctx context.Context, m *connectors.Message, decisionID string) error {
	if _, err := g.emit.Append(ctx, audit.Record{Kind: audit.KindMessageText, DecisionID: decisionID, Connector: m.Connector, User: m.Identity(),
		Detail: map[string]string{"chat_id": m.ChatID, "message_id": m.MessageID, "text": m.Text}}); err != nil {
		return fmt.Errorf("gateway: recording message text: %w", err)
	}
	return nil
}

// loggingHandler logs what the router could not handle (the user was
// already told); it embeds the Router for connectors that ask it more.
type loggingHandler struct {
	*connectors.Router
	log zerolog.Logger
}

func (l loggingHandler) Handle(ctx context.Context, m *connectors.Message, r connectors.Replier) error {
	err := l.Router.Handle(ctx, m, r)
	if err != nil && ctx.Err() == nil {
		l.log.Error().Err(err).Str("connector", m.Connector).Str("identity", m.Identity()).Str("chat_id", m.ChatID).Msg("message not handled")
	}
	return err
}
