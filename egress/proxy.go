// Package egress is the network a sandboxed session gets when policy says
// it may have one: an HTTP proxy (CONNECT for HTTPS, absolute-form requests
// for plain HTTP) served on the session socket. A sandbox has no network
// interface of its own; every destination it reaches goes through here and
// is decided by parachute.egress, host by host.
//
// A name that policy allows is then resolved by the gateway, and every
// address it resolves to must be public (see Public): a hostname that
// resolves to a loopback, private or link-local address is refused even
// when its name is on the allowlist (DNS rebinding), and the connection goes
// to the checked address, not to a second resolution.
//
// Every attempt ends in one audit record saying what was finally decided:
// the policy's deny, or the proxy's own refusal after it (an address that is
// not public, a name that does not resolve, a TLS server name that is not
// the CONNECT host), or the allow with the address dialled. The record is
// written before the connection is made; if it cannot be written the
// connection is refused (audit-unavailable). Attempts beyond a per-session
// rate are refused without asking policy, and only a bounded number of those
// refusals are recorded one by one; the rest are counted into one summary
// record per window.
package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/engine/ratelimit"
)

// Decider decides policy inputs in two steps, so that the proxy's own
// checks after policy (resolution, addresses, TLS server name) end in the
// same single record; *engine.Engine implements it.
type Decider interface {
	// Evaluate asks policy without recording or spending anything.
	Evaluate(ctx context.Context, in engine.Input) engine.Decision
	// Commit records d; a decision that cannot be recorded becomes a deny.
	Commit(ctx context.Context, in engine.Input, d *engine.Decision)
	// Deny is a refusal the proxy makes without policy, for Commit.
	Deny(in engine.Input, reasons ...string) engine.Decision
}

// Reasons the proxy adds. The policy's own (network-disabled,
// egress-host-not-allowed, …) are listed in policies/README.md.
const (
	// ReasonInvalidHost: the request does not name a host:port.
	ReasonInvalidHost = "invalid-host"
	// ReasonPrivateAddress: the host resolved to an address that is not
	// public (or is a non-public literal).
	ReasonPrivateAddress = "egress-private-address"
	// ReasonUnresolvable: the host has no address.
	ReasonUnresolvable = "egress-unresolvable"
	// ReasonRateLimited: the session made attempts faster than
	// Options.AttemptRate allows.
	ReasonRateLimited = "egress-rate-limited"
	// ReasonConnectionLimit: the session already holds Options.MaxConns
	// connections.
	ReasonConnectionLimit = "egress-connection-limit"
	// ReasonSNIMismatch: the role requires the TLS server name of a tunnel
	// to be its CONNECT host, and it is not (absent, another name,
	// encrypted, or not TLS).
	ReasonSNIMismatch = "egress-sni-mismatch"
)

// Defaults for Options left zero.
const (
	DefaultDialTimeout    = 10 * time.Second
	DefaultIdleTimeout    = time.Minute
	DefaultReadTimeout    = 30 * time.Second
	DefaultRequestTimeout = 5 * time.Minute
	DefaultMaxConns       = 32
	DefaultAttemptRate    = 10 // attempts per second, per session
	DefaultAttemptBurst   = 40
	DefaultSummaryWindow  = time.Second
)

// Options configure a Proxy. Every bound has a default; none can be turned
// off.
type Options struct {
	Decider Decider
	// Session returns the facts of the session a request belongs to (the
	// session socket is the identity).
	Session func(*http.Request) (engine.SessionFacts, bool)
	// Resolve looks a host up (default net.DefaultResolver).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// AddrAllowed vets each resolved address (default Public). Tests that
	// point at loopback servers replace it; nothing else should.
	AddrAllowed func(netip.Addr) bool
	// DialTimeout bounds resolving and connecting upstream (default 10 s).
	DialTimeout time.Duration
	// IdleTimeout closes a tunnel when no byte has moved either way for
	// this long (default 1 min).
	IdleTimeout time.Duration
	// ReadTimeout bounds every wait for the other side while a plain-HTTP
	// request is in flight (the next bytes of the request body, the
	// upstream's response headers, the next bytes of its body, the client
	// taking them) and the wait for a tunnel's TLS ClientHello when the
	// role requires its server name to be checked (default 30 s).
	ReadTimeout time.Duration
	// RequestTimeout bounds one plain-HTTP exchange from start to end
	// (default 5 min).
	RequestTimeout time.Duration
	// MaxConns caps the tunnels and plain-HTTP requests a session holds at
	// once (default 32). A slot is reserved before policy is asked and
	// released when the connection ends.
	MaxConns int
	// AttemptRate and AttemptBurst bound a session's attempts (allowed or
	// not) with a token bucket (default 10 per second, burst 40).
	AttemptRate  float64
	AttemptBurst int
	// SummaryWindow: attempts refused by the rate limit are recorded one
	// at the start of a flood, then counted and written as one record per
	// window while the flood lasts (default 1 s).
	SummaryWindow time.Duration
	// Logger receives what cannot be told to the client (a summary that
	// could not be recorded). Default slog.Default().
	Logger *slog.Logger
}

// Proxy is the egress handler of one or more sessions.
type Proxy struct {
	opts    Options
	limiter *ratelimit.Limiter

	mu       sync.Mutex
	sessions map[string]*sessionState
}

// sessionState is what the proxy holds per session: the reserved
// connection slots and the count of unrecorded rate-limit refusals.
type sessionState struct {
	conns      int
	summary    bool  // a summary window is open
	suppressed int64 // refusals in the open window not yet recorded
}

// New returns a Proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Decider == nil || opts.Session == nil {
		return nil, errors.New("egress: Decider and Session are required")
	}
	if opts.Resolve == nil {
		opts.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if opts.AddrAllowed == nil {
		opts.AddrAllowed = Public
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.DialTimeout, DefaultDialTimeout)
	def(&opts.IdleTimeout, DefaultIdleTimeout)
	def(&opts.ReadTimeout, DefaultReadTimeout)
	def(&opts.RequestTimeout, DefaultRequestTimeout)
	def(&opts.SummaryWindow, DefaultSummaryWindow)
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.AttemptRate <= 0 {
		opts.AttemptRate = DefaultAttemptRate
	}
	if opts.AttemptBurst <= 0 {
		opts.AttemptBurst = DefaultAttemptBurst
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Proxy{
		opts:     opts,
		limiter:  ratelimit.New(ratelimit.Options{}),
		sessions: make(map[string]*sessionState),
	}, nil
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// No keep-alive on the session socket after an egress exchange: a
	// client cannot park idle connections here.
	w.Header().Set("Connection", "close")
	facts, ok := p.opts.Session(r)
	if !ok {
		http.Error(w, "no session for this socket", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodConnect {
		p.connect(w, r, facts)
		return
	}
	if !r.URL.IsAbs() || r.URL.Scheme != "http" {
		http.Error(w, "this is a proxy: send CONNECT host:443 or an absolute http:// URL", http.StatusBadRequest)
		return
	}
	p.forward(w, r, facts)
}

// attempt is one connection a session asks for, from admission to its
// record.
type attempt struct {
	p       *Proxy
	in      engine.EgressInput
	d       engine.Decision
	addr    netip.AddrPort // the checked address, once allowed
	release func()         // frees the connection slot; idempotent
}

// begin admits an attempt: it parses the target, takes a token from the
// session's attempt bucket and reserves a connection slot. When it returns
// nil the refusal has been recorded (or counted) and answered.
func (p *Proxy) begin(w http.ResponseWriter, r *http.Request, facts engine.SessionFacts, hostport, defaultPort string) *attempt {
	in, parsed := target(facts, hostport, defaultPort)
	if ok, retry := p.limiter.Allow("egress:"+facts.ID, p.opts.AttemptRate, float64(p.opts.AttemptBurst)); !ok {
		p.rateLimited(w, r.Context(), in, retry)
		return nil
	}
	if !parsed {
		d := p.opts.Decider.Deny(in, ReasonInvalidHost)
		d.Detail = map[string]string{"error": fmt.Sprintf("%q is not host:port", truncate(hostport))}
		p.opts.Decider.Commit(r.Context(), in, &d)
		refuse(w, &d)
		return nil
	}
	release, ok := p.reserve(facts.ID)
	if !ok {
		d := p.opts.Decider.Deny(in, ReasonConnectionLimit)
		d.Detail = map[string]string{"max_conns": strconv.Itoa(p.opts.MaxConns)}
		p.opts.Decider.Commit(r.Context(), in, &d)
		refuse(w, &d)
		return nil
	}
	return &attempt{p: p, in: in, release: release}
}

// target parses host:port into the policy input, folding case and a
// trailing dot. A target that does not parse keeps the raw text (bounded)
// as its host, for the record.
func target(facts engine.SessionFacts, hostport, defaultPort string) (engine.EgressInput, bool) {
	in := engine.EgressInput{Session: facts, Host: truncate(hostport)}
	h, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		h, ps = hostport, defaultPort
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port <= 0 || port > 65535 || h == "" || strings.ContainsAny(h, "/?#@ \t\r\n") {
		return in, false
	}
	in.Host, in.Port = strings.TrimSuffix(strings.ToLower(h), "."), port
	return in, true
}

func truncate(s string) string {
	if len(s) > 256 {
		return s[:256] + "…"
	}
	return s
}

// decide asks policy, then resolves an allowed host and checks every
// address. The decision is not committed: the caller may still refuse
// (SNI), and commits once.
func (a *attempt) decide(ctx context.Context) {
	p := a.p
	a.d = p.opts.Decider.Evaluate(ctx, a.in)
	if !a.d.Allow {
		return
	}
	var addrs []netip.Addr
	if lit, err := netip.ParseAddr(a.in.Host); err == nil {
		addrs = []netip.Addr{lit}
	} else {
		rctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
		addrs, err = p.opts.Resolve(rctx, a.in.Host)
		cancel()
		if err != nil || len(addrs) == 0 {
			msg := "no address"
			if err != nil {
				msg = err.Error()
			}
			a.refuse(ReasonUnresolvable, map[string]string{"error": msg})
			return
		}
	}
	list := make([]string, len(addrs))
	bad := false
	for i, ad := range addrs {
		list[i] = ad.String()
		if !p.opts.AddrAllowed(ad) {
			bad = true
		}
	}
	if bad {
		a.refuse(ReasonPrivateAddress, map[string]string{"addrs": strings.Join(list, ",")})
		return
	}
	a.addr = netip.AddrPortFrom(addrs[0].Unmap(), uint16(a.in.Port))
	a.d.Detail = map[string]string{"addr": a.addr.String()}
}

// refuse turns the evaluated decision into the proxy's deny.
func (a *attempt) refuse(reason string, detail map[string]string) {
	a.d.Allow = false
	a.d.Reasons = []string{reason}
	a.d.Detail = detail
}

// commit records the decision; false means the attempt ends here (denied,
// or the record could not be written) and the slot is released.
func (a *attempt) commit(ctx context.Context) bool {
	a.p.opts.Decider.Commit(ctx, a.in, &a.d)
	if !a.d.Allow {
		a.release()
		return false
	}
	return true
}

func (a *attempt) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: a.p.opts.DialTimeout}
	return d.DialContext(ctx, "tcp", a.addr.String())
}

// reserve takes one of the session's connection slots.
func (p *Proxy) reserve(id string) (func(), bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state(id)
	if st.conns >= p.opts.MaxConns {
		return nil, false
	}
	st.conns++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			st.conns--
			p.gc(id, st)
			p.mu.Unlock()
		})
	}, true
}

// state returns the session's state; p.mu must be held.
func (p *Proxy) state(id string) *sessionState {
	st, ok := p.sessions[id]
	if !ok {
		st = &sessionState{}
		p.sessions[id] = st
	}
	return st
}

// gc drops a session's state that holds nothing; p.mu must be held. The
// attempt bucket lives in the limiter, which bounds its own memory.
func (p *Proxy) gc(id string, st *sessionState) {
	if st.conns == 0 && !st.summary {
		delete(p.sessions, id)
	}
}

// rateLimited answers an attempt refused by the attempt bucket. The first
// refusal of a flood is recorded; later ones within the window are counted
// and written as one summary record when the window closes.
func (p *Proxy) rateLimited(w http.ResponseWriter, ctx context.Context, in engine.EgressInput, retry time.Duration) {
	p.mu.Lock()
	st := p.state(in.Session.ID)
	counted := st.summary
	if counted {
		st.suppressed++
	} else {
		st.summary = true
	}
	p.mu.Unlock()
	d := p.opts.Decider.Deny(in, ReasonRateLimited)
	d.RetryAfter = retry
	if !counted {
		d.Detail = map[string]string{"summary_window": p.opts.SummaryWindow.String()}
		p.opts.Decider.Commit(ctx, in, &d)
		facts := in.Session
		time.AfterFunc(p.opts.SummaryWindow, func() { p.summarise(facts) })
	}
	refuse(w, &d)
}

// summarise writes the count of rate-limited attempts that were not
// recorded one by one, and keeps the window open while the flood goes on.
func (p *Proxy) summarise(facts engine.SessionFacts) {
	p.mu.Lock()
	st := p.state(facts.ID)
	n := st.suppressed
	st.suppressed = 0
	if n == 0 {
		st.summary = false
		p.gc(facts.ID, st)
	}
	p.mu.Unlock()
	if n == 0 {
		return
	}
	in := engine.EgressInput{Session: facts}
	d := p.opts.Decider.Deny(in, ReasonRateLimited)
	d.Detail = map[string]string{"suppressed": strconv.FormatInt(n, 10), "summary_window": p.opts.SummaryWindow.String()}
	p.opts.Decider.Commit(context.Background(), in, &d)
	if containsReason(d.Reasons, engine.ReasonAuditUnavailable) {
		p.opts.Logger.Error("egress: the summary of rate-limited attempts could not be recorded",
			"session", facts.ID, "suppressed", n)
	}
	time.AfterFunc(p.opts.SummaryWindow, func() { p.summarise(facts) })
}

// hints tell the user what to do about a refusal.
var hints = map[string]string{
	"network-disabled":            "this session has no network: the policy did not grant it",
	"egress-host-not-allowed":     "the host is not on the role's egress_hosts; ask the operator to add it",
	"egress-port-not-allowed":     "the port is not on the role's egress_ports; ask the operator to add it",
	ReasonInvalidHost:             "send CONNECT host:port or an absolute http://host[:port]/ URL",
	ReasonPrivateAddress:          "the host is, or resolves to, an address that is not public (loopback, private, link-local, transition or reserved); the gateway never connects a sandbox there",
	ReasonUnresolvable:            "the host has no address in DNS",
	ReasonRateLimited:             "too many connection attempts; slow down",
	ReasonConnectionLimit:         "this session holds as many connections as it may; close some",
	ReasonSNIMismatch:             "the role requires the TLS server name to be the CONNECT host",
	engine.ReasonAuditUnavailable: "the gateway cannot write its audit log, so nothing is let through; tell the operator",
}

// refuse answers a denied attempt: the reasons in X-Parachute-Reasons and a
// body naming them and what to do.
func refuse(w http.ResponseWriter, d *engine.Decision) {
	status := http.StatusForbidden
	switch {
	case containsReason(d.Reasons, engine.ReasonAuditUnavailable):
		status = http.StatusServiceUnavailable
	case containsReason(d.Reasons, ReasonRateLimited), containsReason(d.Reasons, ReasonConnectionLimit):
		status = http.StatusTooManyRequests
	case containsReason(d.Reasons, ReasonUnresolvable):
		status = http.StatusBadGateway
	case containsReason(d.Reasons, ReasonInvalidHost):
		status = http.StatusBadRequest
	}
	if d.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((d.RetryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("X-Parachute-Reasons", strings.Join(d.Reasons, ","))
	msg := "egress refused: " + strings.Join(d.Reasons, ", ")
	for _, r := range d.Reasons {
		if h, ok := hints[r]; ok {
			msg += "\n" + r + ": " + h
		}
	}
	http.Error(w, msg, status)
}

func containsReason(rs []string, r string) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

func (p *Proxy) connect(w http.ResponseWriter, r *http.Request, facts engine.SessionFacts) {
	a := p.begin(w, r, facts, r.Host, "443")
	if a == nil {
		return
	}
	ctx := r.Context()
	a.decide(ctx)
	if !a.d.Allow || !a.d.Bool("require_sni") {
		if !a.commit(ctx) {
			refuse(w, &a.d)
			return
		}
		upstream, err := a.dial(ctx)
		if err != nil {
			a.release()
			http.Error(w, "egress: the destination could not be reached: "+err.Error(), http.StatusBadGateway)
			return
		}
		client, buf, ok := established(w)
		if !ok {
			upstream.Close()
			a.release()
			return
		}
		p.splice(client, upstream, buffered(buf), a.release)
		return
	}
	// The role requires the tunnel's TLS server name to be the CONNECT
	// host: the ClientHello is read and checked before the record and the
	// dial, so a refused hello never reaches the upstream.
	client, buf, ok := established(w)
	if !ok {
		a.release()
		return
	}
	_ = client.SetReadDeadline(time.Now().Add(p.opts.ReadTimeout))
	hello, h, err := readClientHello(buf)
	_ = client.SetReadDeadline(time.Time{})
	if why := sniProblem(a.in.Host, h, err); why != "" {
		a.refuse(ReasonSNIMismatch, map[string]string{"addr": a.addr.String(), "error": why})
	} else {
		a.d.Detail["sni"] = h.serverName
	}
	if !a.commit(ctx) {
		client.Close()
		return
	}
	upstream, err := a.dial(ctx)
	if err != nil {
		client.Close()
		a.release()
		return
	}
	p.splice(client, upstream, append(hello, buffered(buf)...), a.release)
}

// sniProblem says why a tunnel's ClientHello does not name host, or "".
func sniProblem(host string, h clientHello, err error) string {
	switch {
	case err != nil:
		return "no TLS ClientHello: " + err.Error()
	case h.ech:
		return "encrypted client hello: the server name is hidden"
	case h.serverName == "":
		return "the ClientHello names no server"
	case strings.TrimSuffix(strings.ToLower(h.serverName), ".") != host:
		return fmt.Sprintf("the ClientHello names %q, not %q", truncate(h.serverName), host)
	}
	return ""
}

// established takes the client connection over and tells it the tunnel is
// open.
func established(w http.ResponseWriter) (net.Conn, *bufio.Reader, bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "egress: connection cannot be taken over", http.StatusInternalServerError)
		return nil, nil, false
	}
	client, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n")); err != nil {
		client.Close()
		return nil, nil, false
	}
	return client, rw.Reader, true
}

// buffered returns the bytes the client sent that are already read.
func buffered(r *bufio.Reader) []byte {
	n := r.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := r.Peek(n)
	return append([]byte(nil), b...)
}

// splice writes head to b, then copies both ways until either side closes
// or no byte has moved either way for IdleTimeout. release runs before
// either connection is closed.
func (p *Proxy) splice(a, b net.Conn, head []byte, release func()) {
	var once sync.Once
	closeBoth := func() { once.Do(func() { release(); a.Close(); b.Close() }) }
	idle := p.opts.IdleTimeout
	var last atomic.Int64 // unix nanoseconds of the last byte either way
	last.Store(time.Now().UnixNano())
	if len(head) > 0 {
		_ = b.SetWriteDeadline(time.Now().Add(idle))
		if _, err := b.Write(head); err != nil {
			closeBoth()
			return
		}
	}
	copyIdle := func(dst, src net.Conn) {
		defer closeBoth()
		buf := make([]byte, 32<<10)
		for {
			_ = src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
			n, err := src.Read(buf)
			if n > 0 {
				last.Store(time.Now().UnixNano())
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
				last.Store(time.Now().UnixNano())
			}
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other direction moved: not idle
				}
				return
			}
		}
	}
	done := make(chan struct{})
	go func() { copyIdle(b, a); close(done) }()
	copyIdle(a, b)
	<-done
}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, facts engine.SessionFacts) {
	a := p.begin(w, r, facts, r.URL.Host, "80")
	if a == nil {
		return
	}
	defer a.release()
	ctx, cancel := context.WithTimeout(r.Context(), p.opts.RequestTimeout)
	defer cancel()
	a.decide(ctx)
	if !a.commit(ctx) {
		refuse(w, &a.d)
		return
	}
	end := time.Now().Add(p.opts.RequestTimeout)
	rc := http.NewResponseController(w)
	var tap atomic.Pointer[headTap]
	rp := &httputil.ReverseProxy{
		// ReverseProxy removes the hop-by-hop headers and every header
		// the Connection header names, both ways, and never follows a
		// redirect: a 3xx goes back to the client, whose next request is
		// decided again.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.Host = "" // the URL's host, the one policy decided, is the Host sent
			// No protocol switch through the proxy: an upgraded
			// connection would escape the timeouts.
			pr.Out.Header.Del("Connection")
			pr.Out.Header.Del("Upgrade")
			if pr.Out.Body != nil && pr.Out.Body != http.NoBody {
				pr.Out.Body = &deadlineBody{body: pr.Out.Body, rc: rc, step: p.opts.ReadTimeout, end: end}
			}
		},
		Transport: &http.Transport{
			Proxy: nil, // never chain to an environment proxy
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := a.dial(ctx) // the checked address, never a second resolution
				if err != nil {
					return nil, err
				}
				t := &headTap{Conn: c, step: p.opts.ReadTimeout}
				tap.Store(t)
				return t, nil
			},
			DisableKeepAlives:      true,
			ResponseHeaderTimeout:  p.opts.ReadTimeout,
			MaxResponseHeaderBytes: maxHead,
		},
		// Go's client drops a response's Connection header when it says
		// close, and with it the names ReverseProxy would remove: they
		// are read from the bytes received instead.
		ModifyResponse: func(res *http.Response) error {
			if t := tap.Load(); t != nil {
				t.body.Store(true)
				for _, name := range t.connectionTokens() {
					res.Header.Del(name)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			status := http.StatusBadGateway
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				status = http.StatusGatewayTimeout
			}
			http.Error(w, "egress: the destination could not be reached or answered too slowly", status)
		},
	}
	rp.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, step: p.opts.ReadTimeout, end: end}, r.WithContext(ctx))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// deadlineBody moves the client connection's read deadline before every
// read of the request body: each read must make progress within step, and
// none goes past end.
type deadlineBody struct {
	body io.ReadCloser
	rc   *http.ResponseController
	step time.Duration
	end  time.Time
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(minTime(time.Now().Add(b.step), b.end))
	return b.body.Read(p)
}

func (b *deadlineBody) Close() error { return b.body.Close() }

// deadlineWriter does the same for writes of the response to the client.
type deadlineWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	step time.Duration
	end  time.Time
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(minTime(time.Now().Add(w.step), w.end))
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flushes).
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// maxHead bounds an upstream's response head (status lines and headers).
const maxHead = 64 << 10

// headTap keeps the first maxHead bytes read from an upstream connection,
// so the Connection header of the response can be read as sent.
// Once the response head is in, every read of the body must make progress
// within step.
type headTap struct {
	net.Conn
	step time.Duration
	body atomic.Bool // the head is read; the body follows
	mu   sync.Mutex
	head []byte
}

func (c *headTap) Read(p []byte) (int, error) {
	if c.body.Load() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.step))
	}
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if room := maxHead - len(c.head); room > 0 {
		c.head = append(c.head, p[:min(n, room)]...)
	}
	c.mu.Unlock()
	return n, err
}

// connectionTokens returns the header names listed in the Connection
// headers of the response heads read so far (interim 1xx heads and the
// final one; not the body).
func (c *headTap) connectionTokens() []string {
	c.mu.Lock()
	head := string(c.head)
	c.mu.Unlock()
	var names []string
	interim := false
	for line := range strings.SplitSeq(head, "\n") {
		line = strings.TrimSuffix(line, "\r")
		switch {
		case line == "":
			if !interim {
				return names // the final head ends; the body follows
			}
		case strings.HasPrefix(line, "HTTP/"):
			_, code, _ := strings.Cut(line, " ")
			interim = strings.HasPrefix(code, "1")
		default:
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.EqualFold(strings.TrimSpace(k), "Connection") {
				for tok := range strings.SplitSeq(v, ",") {
					if tok = strings.TrimSpace(tok); tok != "" && !strings.EqualFold(tok, "close") {
						names = append(names, tok)
					}
				}
			}
		}
	}
	return names
}
