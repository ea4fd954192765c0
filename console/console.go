// Package console is the operator console: server-rendered pages under
// /console/ on the gateway's loopback admin listener for sessions,
// approvals, live decisions, turn traces, the audit trail, the policy and
// the gateway's health.
//
// The console is a client of the operator API, not a second one: every
// action is served by the very http.Handler the admin socket serves
// (Backend.Admin), in process, with the console session as its actor, so
// its checks and its records are the CLI's. What the console adds is the
// wall in front of it, because a loopback TCP port admits every local
// process and every page a local browser opens:
//
//   - a login: one-time tokens (32 random bytes, kept as their SHA-256,
//     10 minutes, consumed on first use) exchanged for a session cookie
//     (HttpOnly, SameSite=Strict, Path=/console, 8 hours);
//   - the Host header must name the listener's own loopback address (a
//     page on a rebinding DNS name that resolves to 127.0.0.1 is refused
//     with 421 before anything is read);
//   - every state change is a POST carrying the session cookie, the
//     session's synchronizer token in the form field csrf, and no
//     cross-site Sec-Fetch-Site or foreign Origin;
//   - a strict Content-Security-Policy: no inline script or style, no
//     external asset; everything is embedded in the binary.
//
// Tokens and sessions live in memory only: a restart logs every operator
// out and voids every token (fail closed), and mints a fresh token.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/engine"
)

// Prefix is where the console is mounted on the admin listener.
const Prefix = "/console/"

// Backend is what the console needs from the gateway. The gateway
// implements it; the console never imports the gateway.
type Backend interface {
	// Admin is the operator API's handler (the one the admin socket
	// serves) acting for actor: its checks and records are the CLI's.
	Admin(actor string) http.Handler
	// Record appends one audit record, durable when it returns; the
	// console records every login, logout and token before it takes effect.
	Record(ctx context.Context, r audit.Record) error
	// AuditDir is the audit log's folder.
	AuditDir() string
	// VerifyAudit checks the log's hash chain and signed checkpoints as
	// `parachute audit verify` does (the gateway's key and anchor).
	VerifyAudit() (audit.VerifyReport, error)
	// Policy is the policy in force and the last refused reload.
	Policy() PolicyStatus
	// Explain evaluates doc against entry on the policy in force, with
	// its trace. Nothing is spent, cached or recorded.
	Explain(ctx context.Context, entry engine.Entry, doc any) (engine.Decision, []*topdown.Event)
	// Metrics is the gateway's own Prometheus registry.
	Metrics() prometheus.Gatherer
	// Health is the state of the connectors and sandboxes now.
	Health(ctx context.Context) Health
}

// PolicyStatus is what the policy page shows.
type PolicyStatus struct {
	Revision string
	Dir      string
	Refused  *engine.ReloadRefusal
}

// Health is what the health page shows besides the charts.
type Health struct {
	Connectors []ConnectorHealth
	// Sandboxes counts the live sandboxes per runtime class.
	Sandboxes map[string]int
	// PoolReady is how many pre-started sandboxes wait in the warm pool;
	// PoolSize is runtime.warm_pool (0: no pool).
	PoolReady, PoolSize int
	// Audit is nil while the audit log can be written.
	Audit error
	// PolicyRefused is set while the last reload was refused.
	PolicyRefused bool
}

// Connector states.
const (
	ConnectorStarting   = "starting"
	ConnectorRunning    = "running"
	ConnectorBackingOff = "backing off"
	ConnectorStopped    = "stopped"
)

// ConnectorHealth is one connector's state: running, backing off after an
// error (restarted with backoff), or stopped (credentials refused, or the
// gateway is stopping) and why.
type ConnectorHealth struct {
	Name  string
	State string
	Error string
	Since time.Time
}

// Options configure a Console.
type Options struct {
	Backend Backend
	// Addr is the admin listener's address (host:port): the only Host
	// the console answers and the origin of every URL it prints.
	Addr string
	// Logger receives what an operator cannot see on a page.
	Logger zerolog.Logger
	// Now is the clock (default time.Now): tests move it.
	Now func() time.Time
	// SampleEvery is how often the health charts sample the metrics
	// (default DefaultSampleEvery).
	SampleEvery time.Duration
	// FollowPoll is how often the live stream polls the audit log for new
	// records (default DefaultFollowPoll).
	FollowPoll time.Duration
}

// Defaults.
const (
	TokenTTL           = 10 * time.Minute
	SessionTTL         = 8 * time.Hour
	DefaultSampleEvery = 3 * time.Second
	DefaultFollowPoll  = 200 * time.Millisecond
	// Samples is how many samples a chart shows (3 minutes at 3 s).
	Samples = 60
	// CookieName is the session cookie.
	CookieName = "parachute_console"
	// maxTokens bounds outstanding login tokens; minting past it drops
	// the expired ones first and is refused if none has expired.
	maxTokens = 256
	// maxSessions bounds console sessions; the oldest is logged out.
	maxSessions = 64
	// MaxStreams bounds the live streams open at once (each follows the
	// audit log in its own goroutine); past it a stream is refused (503).
	MaxStreams = 16
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Console serves the operator console. Create with New.
type Console struct {
	b          Backend
	addr       string
	log        zerolog.Logger
	now        func() time.Time
	every      time.Duration
	followPoll time.Duration
	pages      map[string]*template.Template

	mu       sync.Mutex
	tokens   map[string]*token   // by SHA-256 hex of the token
	sessions map[string]*session // by SHA-256 hex of the cookie

	// Refused logins in the current window (countRefusal): when it began,
	// how many, and how many of them were counted and not recorded.
	refusedAt            time.Time
	refusedN, refusedCut int

	lastVerify *verifyView // the audit page's last verification (verifyEvery)

	samples *sampler
	// stopped is closed when Run returns: open live streams end with it,
	// so that the admin listener's shutdown is not held up by them.
	stopped   chan struct{}
	closeOnce sync.Once
	streams   atomic.Int32 // live streams open
}

// New returns a console for the listener at opts.Addr.
func New(opts Options) (*Console, error) {
	if opts.Backend == nil {
		return nil, errors.New("console: no backend")
	}
	host, port, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("console: listener address %q: %w", opts.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("console: listener address %q is not on loopback; the console is never exposed", opts.Addr)
	}
	if port == "0" {
		return nil, fmt.Errorf("console: listener address %q has no port yet: pass the bound address", opts.Addr)
	}
	c := &Console{b: opts.Backend, addr: opts.Addr, log: opts.Logger, now: opts.Now,
		every: opts.SampleEvery, followPoll: opts.FollowPoll,
		tokens: map[string]*token{}, sessions: map[string]*session{}, stopped: make(chan struct{})}
	if c.now == nil {
		c.now = time.Now
	}
	if c.every <= 0 {
		c.every = DefaultSampleEvery
	}
	if c.followPoll <= 0 {
		c.followPoll = DefaultFollowPoll
	}
	c.samples = newSampler(Samples)
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	return c, nil
}

// Addr is the listener address the console answers on.
func (c *Console) Addr() string { return c.addr }

// Run samples the metrics for the health charts until ctx ends; then it
// ends every open live stream.
func (c *Console) Run(ctx context.Context) {
	defer c.closeOnce.Do(func() { close(c.stopped) })
	c.sample()
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sample()
			c.recordCut(ctx)
		}
	}
}

func (c *Console) sample() {
	if err := c.samples.add(c.now(), c.b.Metrics()); err != nil {
		c.log.Warn().Err(err).Msg("console: metrics not sampled")
	}
}

// Handler serves everything under Prefix. Mount it with
// mux.Handle(console.Prefix, c.Handler()).
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	// The two assets, by name (no listing); public, as the login page
	// needs them.
	for name, ctype := range map[string]string{"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"} {
		body, _ := fs.ReadFile(staticFS, "static/"+name)
		mux.HandleFunc("GET /console/static/"+name, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", ctype)
			_, _ = w.Write(body)
		})
	}
	mux.HandleFunc("GET /console/login", c.loginPage)
	mux.HandleFunc("POST /console/login", c.loginPost)
	mux.Handle("POST /console/logout", c.action(c.logout))

	mux.Handle("GET /console/{$}", c.page(c.healthPage))
	mux.Handle("GET /console/health/charts", c.page(c.chartsFragment))
	mux.Handle("GET /console/sessions", c.page(c.sessionsPage))
	mux.Handle("POST /console/sessions/{id}/stop", c.action(c.sessionStop))
	mux.Handle("GET /console/access", c.page(c.accessPage))
	mux.Handle("POST /console/access/pairings/{code}", c.action(c.pairingAction))
	mux.Handle("POST /console/access/invites", c.action(c.inviteCreate))
	mux.Handle("POST /console/access/invites/{hash}/revoke", c.action(c.inviteRevoke))
	mux.Handle("POST /console/access/bindings/revoke", c.action(c.bindingRevoke))
	mux.Handle("GET /console/live", c.page(c.livePage))
	mux.Handle("GET /console/live/events", c.page(c.liveEvents))
	mux.Handle("GET /console/trace/{turn}", c.page(c.tracePage))
	mux.Handle("GET /console/audit", c.page(c.auditPage))
	mux.Handle("GET /console/policy", c.page(c.policyPage))
	mux.Handle("POST /console/policy/eval", c.action(c.policyEval))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w.Header())
		if !c.hostOK(r.Host) {
			refuse(w, http.StatusMisdirectedRequest, ReasonHost,
				fmt.Sprintf("this console answers only as http://%s/ (the admin listener); the Host %q is not it. A page on another name that resolves to loopback is refused here.", c.addr, r.Host))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// CSP is the Content-Security-Policy of every console response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func secureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
}

// hostOK: the Host header is the listener's address, or localhost with
// its port when the listener is on a loopback address.
func (c *Console) hostOK(host string) bool {
	if host == c.addr {
		return true
	}
	h, p, err := net.SplitHostPort(host)
	if err != nil {
		return false
	}
	_, lp, _ := net.SplitHostPort(c.addr)
	return p == lp && strings.EqualFold(h, "localhost")
}

// origin is the console's own origin.
func (c *Console) origin() string { return "http://" + c.addr }
