// Package egress is the network a sandboxed session gets when policy says
// it may have one: an HTTP proxy (CONNECT for HTTPS, absolute-form requests
// for plain HTTP) served on the session socket. A sandbox has no network
// interface of its own; every destination it reaches goes through here and
// is decided by parachute.egress, host by host.
//
// A name that policy allows is then resolved by the gateway, and every
// address it resolves to must be public: a hostname that resolves to a
// loopback, private or link-local address is refused even when its name is
// on the allowlist (DNS rebinding), and the connection goes to the checked
// address, not to a second resolution.
package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// Decider decides policy inputs; *engine.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in engine.Input) engine.Decision
}

// Options configure a Proxy.
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
	// DialTimeout bounds connecting upstream (default 10 s).
	DialTimeout time.Duration
	// IdleTimeout closes a tunnel idle in both directions (default 5 min).
	IdleTimeout time.Duration
}

// Proxy is the egress handler.
type Proxy struct {
	opts      Options
	transport *http.Transport
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
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	p := &Proxy{opts: opts}
	p.transport = &http.Transport{
		Proxy:                 nil, // never chain to an environment proxy
		DialContext:           p.dialChecked,
		MaxIdleConns:          16,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: time.Minute,
	}
	return p, nil
}

// Public reports whether addr is a public unicast address: not loopback,
// private, link-local, CGNAT, multicast, unspecified or IPv4-mapped private.
func Public(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
		addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

var blocked = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"), // CGNAT
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach private IPv4
}

// errRefused carries the policy's reasons to the caller.
type errRefused struct{ reasons []string }

func (e errRefused) Error() string { return "refused by policy: " + strings.Join(e.reasons, ", ") }

type ctxKey struct{}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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

// decide asks policy about host:port.
func (p *Proxy) decide(ctx context.Context, facts engine.SessionFacts, hostport, defaultPort string) (host string, port int, err error) {
	h, ps, splitErr := net.SplitHostPort(hostport)
	if splitErr != nil {
		h, ps = hostport, defaultPort
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port <= 0 || port > 65535 || h == "" {
		return "", 0, fmt.Errorf("%q is not host:port", hostport)
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	d := p.opts.Decider.Decide(ctx, engine.EgressInput{Session: facts, Host: h, Port: port})
	if !d.Allow {
		return h, port, errRefused{d.Reasons}
	}
	return h, port, nil
}

// dialChecked resolves the host itself, refuses if any address is not
// allowed, and dials the first allowed address it checked.
func (p *Proxy) dialChecked(ctx context.Context, network, hostport string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		rctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
		addrs, err = p.opts.Resolve(rctx, host)
		cancel()
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("cannot resolve %s", host)
		}
	}
	for _, a := range addrs {
		if !p.opts.AddrAllowed(a) {
			return nil, errRefused{[]string{"egress-private-address"}}
		}
	}
	d := net.Dialer{Timeout: p.opts.DialTimeout}
	return d.DialContext(ctx, "tcp", net.JoinHostPort(addrs[0].String(), port))
}

func (p *Proxy) refuse(w http.ResponseWriter, err error) {
	var ref errRefused
	if errors.As(err, &ref) {
		w.Header().Set("X-Parachute-Reasons", strings.Join(ref.reasons, ","))
		http.Error(w, "egress "+err.Error(), http.StatusForbidden)
		return
	}
	http.Error(w, "egress: "+err.Error(), http.StatusBadGateway)
}

func (p *Proxy) connect(w http.ResponseWriter, r *http.Request, facts engine.SessionFacts) {
	host, port, err := p.decide(r.Context(), facts, r.Host, "443")
	if err != nil {
		p.refuse(w, err)
		return
	}
	upstream, err := p.dialChecked(r.Context(), "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		p.refuse(w, err)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		upstream.Close()
		http.Error(w, "egress: connection cannot be taken over", http.StatusInternalServerError)
		return
	}
	client, buf, err := hj.Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n")); err != nil {
		client.Close()
		upstream.Close()
		return
	}
	// Bytes the client sent after the CONNECT head are already buffered.
	if n := buf.Reader.Buffered(); n > 0 {
		head, _ := buf.Reader.Peek(n)
		if _, err := upstream.Write(head); err != nil {
			client.Close()
			upstream.Close()
			return
		}
	}
	p.splice(client, upstream)
}

// splice copies both ways until either side closes or the tunnel idles.
func (p *Proxy) splice(a, b net.Conn) {
	var once sync.Once
	closeBoth := func() { once.Do(func() { a.Close(); b.Close() }) }
	copyIdle := func(dst, src net.Conn) {
		defer closeBoth()
		buf := make([]byte, 32<<10)
		for {
			_ = src.SetReadDeadline(time.Now().Add(p.opts.IdleTimeout))
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	done := make(chan struct{})
	go func() { copyIdle(b, a); close(done) }()
	copyIdle(a, b)
	<-done
}

// hopHeaders are not forwarded (RFC 9110 section 7.6.1), nor are proxy
// credentials.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, facts engine.SessionFacts) {
	if _, _, err := p.decide(r.Context(), facts, r.URL.Host, "80"); err != nil {
		p.refuse(w, err)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Host = "" // the URL's host, the one policy decided, is the Host sent
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		p.refuse(w, unwrapRefusal(err))
		return
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func unwrapRefusal(err error) error {
	var ref errRefused
	if errors.As(err, &ref) {
		return ref
	}
	return errors.New("the destination could not be reached")
}
