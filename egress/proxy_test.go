package egress_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parachute-gateway/parachute/egress"
	"github.com/parachute-gateway/parachute/engine"
)

func policyDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "policies")
}

// recorder keeps every decision the engine hands it; with fail set it
// refuses them, as a full disk would.
type recorder struct {
	mu   sync.Mutex
	got  []engine.Decision
	fail atomic.Bool
}

func (r *recorder) Record(_ context.Context, _ engine.Input, d *engine.Decision) error {
	if r.fail.Load() {
		return errors.New("disk full")
	}
	r.mu.Lock()
	r.got = append(r.got, *d)
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() []engine.Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]engine.Decision(nil), r.got...)
}

func (r *recorder) last(t *testing.T) engine.Decision {
	t.Helper()
	got := r.all()
	if len(got) == 0 {
		t.Fatal("no decision was recorded")
	}
	return got[len(got)-1]
}

// env is a proxy under test and what it talks to.
type env struct {
	proxy    *url.URL
	port     int // the upstream's port, the one policy allows
	rec      *recorder
	accepted atomic.Int64  // connections the upstream accepted
	closed   chan struct{} // one value per upstream connection closed
	p        *egress.Proxy
}

// config of an env.
type config struct {
	network       bool
	trustLoopback bool
	role          map[string]any // extra settings of role member
	opts          func(*egress.Options)
	upstream      http.Handler // default: echoes the Host and Proxy-Authorization it got
}

// setup starts an upstream HTTP server on loopback and an egress proxy whose
// policy lets role member reach "allowed.test" and "*.wild.test" on the
// upstream's port. The resolver maps *.test names to 127.0.0.1, except
// nx.wild.test (no address) and mixed.wild.test (a public and a private
// address); loopback addresses are let through only when trustLoopback is
// set (the default refuses them).
func setup(t *testing.T, network, trustLoopback bool) (proxyURL *url.URL, upstreamPort int, rec *recorder) {
	e := setupWith(t, config{network: network, trustLoopback: trustLoopback})
	return e.proxy, e.port, e.rec
}

func setupWith(t *testing.T, c config) *env {
	t.Helper()
	e := &env{rec: &recorder{}, closed: make(chan struct{}, 64)}
	h := c.upstream
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "host=%s proxy-auth=%q", r.Host, r.Header.Get("Proxy-Authorization"))
		})
	}
	upstream := httptest.NewUnstartedServer(h)
	upstream.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			e.accepted.Add(1)
		case http.StateClosed, http.StateHijacked:
			e.closed <- struct{}{}
		}
	}
	upstream.Start()
	t.Cleanup(upstream.Close)
	_, ps, _ := net.SplitHostPort(upstream.Listener.Addr().String())
	e.port, _ = strconv.Atoi(ps)
	e.p = newProxy(t, c, e.port, e.rec)
	srv := httptest.NewServer(e.p)
	t.Cleanup(srv.Close)
	e.proxy, _ = url.Parse(srv.URL)
	return e
}

func newProxy(t *testing.T, c config, port int, rec engine.Recorder) *egress.Proxy {
	t.Helper()
	role := map[string]any{
		"egress_hosts": []any{"allowed.test", "*.wild.test"},
		"egress_ports": []any{port},
	}
	for k, v := range c.role {
		role[k] = v
	}
	data := map[string]any{
		"connectors": map[string]any{"dev": map[string]any{"type": "local", "owners": []any{"owner"}}},
		"roles":      map[string]any{"member": role},
	}
	eng, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: data, Recorder: rec})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	facts := engine.SessionFacts{ID: "s1", Identity: "local:alice", Connector: "dev", ConnectorType: "local",
		Role: "member", TrustLevel: "sandboxed", Workspace: "users/local%3Aalice", Network: c.network}
	opts := egress.Options{
		Decider: eng,
		Session: func(*http.Request) (engine.SessionFacts, bool) { return facts, true },
		Resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
			switch {
			case host == "nx.wild.test":
				return nil, fmt.Errorf("no such host %s", host)
			case host == "mixed.wild.test":
				return []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("10.0.0.1")}, nil
			case strings.HasSuffix(host, ".test"):
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
			return nil, fmt.Errorf("no such host %s", host)
		},
	}
	if c.trustLoopback {
		opts.AddrAllowed = func(a netip.Addr) bool { return a.IsLoopback() }
	}
	if c.opts != nil {
		c.opts(&opts)
	}
	p, err := egress.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func client(proxy *url.URL) *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
}

// connect sends a raw CONNECT and returns the status line and the
// connection (for a tunnel) .
func connect(t *testing.T, proxy *url.URL, target string) (int, string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", proxy.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	reasons := resp.Header.Get("X-Parachute-Reasons")
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return resp.StatusCode, reasons, nil
	}
	return resp.StatusCode, reasons, c
}

func TestConnectDecidedByPolicy(t *testing.T) {
	cases := []struct {
		name       string
		network    bool
		loopbackOK bool
		host       string
		port       int // 0: the upstream's port
		wantStatus int
		wantReason string
	}{
		{name: "allowed host tunnels", network: true, loopbackOK: true, host: "allowed.test", wantStatus: 200},
		{name: "wildcard subdomain tunnels", network: true, loopbackOK: true, host: "api.wild.test", wantStatus: 200},
		{name: "case and trailing dot folded", network: true, loopbackOK: true, host: "ALLOWED.test.", wantStatus: 200},
		{name: "host not on the allowlist", network: true, loopbackOK: true, host: "evil.test", wantStatus: 403, wantReason: "egress-host-not-allowed"},
		{name: "wildcard does not match the apex", network: true, loopbackOK: true, host: "wild.test", wantStatus: 403, wantReason: "egress-host-not-allowed"},
		{name: "port not allowed", network: true, loopbackOK: true, host: "allowed.test", port: 22, wantStatus: 403, wantReason: "egress-port-not-allowed"},
		{name: "session without network", network: false, loopbackOK: true, host: "allowed.test", wantStatus: 403, wantReason: "network-disabled"},
		{name: "allowed name resolving to loopback (rebinding)", network: true, loopbackOK: false, host: "allowed.test", wantStatus: 403, wantReason: "egress-private-address"},
		{name: "IP literal of loopback", network: true, loopbackOK: true, host: "127.0.0.1", wantStatus: 403, wantReason: "egress-private-address"},
		{name: "localhost", network: true, loopbackOK: true, host: "localhost", wantStatus: 403, wantReason: "egress-private-address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proxy, port, rec := setup(t, tc.network, tc.loopbackOK)
			if tc.port != 0 {
				port = tc.port
			}
			status, reasons, conn := connect(t, proxy, net.JoinHostPort(tc.host, strconv.Itoa(port)))
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (reasons %q)", status, tc.wantStatus, reasons)
			}
			d := rec.last(t)
			if tc.wantStatus != 200 {
				if !strings.Contains(reasons, tc.wantReason) {
					t.Errorf("reasons header %q, want %q", reasons, tc.wantReason)
				}
				if d.Allow || !contains(d.Reasons, tc.wantReason) {
					t.Errorf("recorded decision allow=%v reasons=%v, want deny %q", d.Allow, d.Reasons, tc.wantReason)
				}
				return
			}
			defer conn.Close()
			if !d.Allow {
				t.Fatalf("recorded decision is a deny: %v", d.Reasons)
			}
			// Speak HTTP through the tunnel.
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
			body, _ := io.ReadAll(conn)
			if !strings.Contains(string(body), "host=allowed.test") {
				t.Errorf("tunnel did not reach the upstream: %q", body)
			}
		})
	}
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

func TestPlainHTTPForward(t *testing.T) {
	proxy, port, rec := setup(t, true, true)
	target := "http://allowed.test:" + strconv.Itoa(port) + "/x"

	t.Run("allowed, hop and proxy headers stripped", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
		resp, err := client(proxy).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `proxy-auth=""`) {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})

	t.Run("a Host header naming another site is not what reaches upstream", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Host = "evil.test"
		resp, err := client(proxy).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(body), "evil.test") {
			t.Fatalf("upstream saw the spoofed Host: %q", body)
		}
	})

	t.Run("host not allowed", func(t *testing.T) {
		resp, err := client(proxy).Get("http://evil.test:" + strconv.Itoa(port) + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !contains(rec.last(t).Reasons, "egress-host-not-allowed") {
			t.Fatalf("status %d, last decision %v", resp.StatusCode, rec.last(t).Reasons)
		}
	})

	t.Run("not a proxy request", func(t *testing.T) {
		resp, err := http.Get(proxy.String() + "/direct")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})
}

func TestPublic(t *testing.T) {
	cases := []struct {
		addr string
		want bool
		why  string
	}{
		{"1.1.1.1", true, "public IPv4"},
		{"2606:4700::1111", true, "public IPv6"},
		{"::ffff:1.1.1.1", true, "IPv4-mapped public: the dial goes to 1.1.1.1"},
		{"64:ff9b::101:101", true, "NAT64 well-known embedding 1.1.1.1 (DNS64)"},
		{"2002:101:101::1", true, "6to4 embedding 1.1.1.1"},

		{"127.0.0.1", false, "loopback"},
		{"10.1.2.3", false, "private"},
		{"172.16.0.1", false, "private"},
		{"192.168.1.1", false, "private"},
		{"169.254.169.254", false, "link-local, cloud metadata"},
		{"100.64.0.1", false, "CGNAT"},
		{"0.0.0.0", false, "unspecified"},
		{"0.1.2.3", false, "this network"},
		{"192.0.0.8", false, "IETF protocol assignments"},
		{"192.0.2.1", false, "documentation"},
		{"198.51.100.1", false, "documentation"},
		{"203.0.113.1", false, "documentation"},
		{"198.18.0.1", false, "benchmarking"},
		{"192.88.99.1", false, "6to4 relay anycast"},
		{"224.0.0.1", false, "multicast"},
		{"239.255.255.250", false, "multicast"},
		{"240.0.0.1", false, "reserved"},
		{"255.255.255.255", false, "broadcast"},

		{"::", false, "unspecified"},
		{"::1", false, "loopback"},
		{"::127.0.0.1", false, "IPv4-compatible loopback"},
		{"::1.1.1.1", false, "IPv4-compatible (deprecated)"},
		{"::ffff:10.0.0.1", false, "IPv4-mapped private"},
		{"::ffff:127.0.0.1", false, "IPv4-mapped loopback"},
		{"::ffff:0:7f00:1", false, "SIIT IPv4-translated loopback"},
		{"::ffff:0:101:101", false, "SIIT IPv4-translated"},
		{"64:ff9b::a00:1", false, "NAT64 well-known embedding 10.0.0.1"},
		{"64:ff9b::7f00:1", false, "NAT64 well-known embedding 127.0.0.1"},
		{"64:ff9b::a9fe:a9fe", false, "NAT64 well-known embedding 169.254.169.254"},
		{"64:ff9b:1::101:101", false, "NAT64 local-use"},
		{"64:ff9b:1:ffff::1", false, "NAT64 local-use"},
		{"2002:7f00:1::1", false, "6to4 embedding 127.0.0.1"},
		{"2002:a00:1::1", false, "6to4 embedding 10.0.0.1"},
		{"2002:a9fe:a9fe::", false, "6to4 embedding 169.254.169.254"},
		{"2001::1", false, "Teredo"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false, "Teredo"},
		{"2001:2::1", false, "benchmarking"},
		{"2001:10::1", false, "ORCHID"},
		{"2001:20::1", false, "ORCHIDv2"},
		{"2001:db8::1", false, "documentation"},
		{"3fff::1", false, "documentation (RFC 9637)"},
		{"100::1", false, "discard-only"},
		{"fc00::1", false, "unique local"},
		{"fd12:3456::1", false, "unique local"},
		{"fe80::1", false, "link-local"},
		{"fec0::1", false, "site-local (deprecated)"},
		{"feff::1", false, "site-local (deprecated)"},
		{"ff02::1", false, "multicast"},
		{"ff0e::1", false, "global multicast"},
		{"5f00::1", false, "SRv6 SIDs"},
		{"4000::1", false, "outside global unicast"},
		{"fe80::1%eth0", false, "zoned"},
		{"2606:4700::1111%eth0", false, "zoned global"},
	}
	for _, tc := range cases {
		if got := egress.Public(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Public(%s) = %v, want %v (%s)", tc.addr, got, tc.want, tc.why)
		}
	}
	if egress.Public(netip.Addr{}) {
		t.Error("the zero Addr is public")
	}
}
