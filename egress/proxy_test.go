package egress_test

import (
	"bufio"
	"context"
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
	"testing"

	"github.com/parachute-gateway/parachute/egress"
	"github.com/parachute-gateway/parachute/engine"
)

func policyDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "policies")
}

// recorder keeps every decision the engine hands it.
type recorder struct {
	mu  sync.Mutex
	got []engine.Decision
}

func (r *recorder) Record(_ context.Context, _ engine.Input, d *engine.Decision) error {
	r.mu.Lock()
	r.got = append(r.got, *d)
	r.mu.Unlock()
	return nil
}

func (r *recorder) last(t *testing.T) engine.Decision {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		t.Fatal("no decision was recorded")
	}
	return r.got[len(r.got)-1]
}

// setup starts an upstream HTTP server on loopback and an egress proxy whose
// policy lets role member reach "allowed.test" on the upstream's port. The
// resolver maps every *.test name to 127.0.0.1; loopback addresses are
// let through only when trustLoopback is set (the default refuses them).
func setup(t *testing.T, network, trustLoopback bool) (proxyURL *url.URL, upstreamPort int, rec *recorder) {
	t.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s proxy-auth=%q", r.Host, r.Header.Get("Proxy-Authorization"))
	}))
	t.Cleanup(upstream.Close)
	_, ps, _ := net.SplitHostPort(upstream.Listener.Addr().String())
	upstreamPort, _ = strconv.Atoi(ps)

	rec = &recorder{}
	data := map[string]any{
		"connectors": map[string]any{"dev": map[string]any{"type": "local", "owners": []any{"owner"}}},
		"roles": map[string]any{"member": map[string]any{
			"egress_hosts": []any{"allowed.test", "*.wild.test"},
			"egress_ports": []any{upstreamPort},
		}},
	}
	eng, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: data, Recorder: rec})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	facts := engine.SessionFacts{ID: "s1", Identity: "local:alice", Connector: "dev", ConnectorType: "local",
		Role: "member", TrustLevel: "sandboxed", Workspace: "users/local%3Aalice", Network: network}
	opts := egress.Options{
		Decider: eng,
		Session: func(*http.Request) (engine.SessionFacts, bool) { return facts, true },
		Resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
			if strings.HasSuffix(host, ".test") {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
			return nil, fmt.Errorf("no such host %s", host)
		},
	}
	if trustLoopback {
		opts.AddrAllowed = func(netip.Addr) bool { return true }
	}
	p, err := egress.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u, upstreamPort, rec
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
				if tc.wantReason != "egress-private-address" || strings.Contains(tc.host, "127") || tc.host == "localhost" {
					if d.Allow || !contains(d.Reasons, tc.wantReason) {
						t.Errorf("recorded decision allow=%v reasons=%v, want deny %q", d.Allow, d.Reasons, tc.wantReason)
					}
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
	cases := map[string]bool{
		"1.1.1.1": true, "2606:4700::1111": true,
		"127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "100.64.0.1": false, "0.0.0.0": false, "::1": false,
		"fe80::1": false, "fc00::1": false, "::ffff:10.0.0.1": false, "64:ff9b::a00:1": false,
		"224.0.0.1": false,
	}
	for s, want := range cases {
		if got := egress.Public(netip.MustParseAddr(s)); got != want {
			t.Errorf("Public(%s) = %v, want %v", s, got, want)
		}
	}
}
