package egress_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parachute-gateway/parachute/egress"
	"github.com/parachute-gateway/parachute/engine"
)

// bound is how long a test waits for something that must happen before it
// fails loudly. It is far above every timeout the tests configure.
const bound = 10 * time.Second

// A refusal after policy allowed the name (the name resolves to an address
// that is not public, or to none) is one record, a deny with its reason,
// for CONNECT and plain HTTP alike; an allow is one record naming the
// address dialled.
func TestEveryAttemptIsOneRecordOfItsOutcome(t *testing.T) {
	cases := []struct {
		name       string
		host       string
		loopbackOK bool
		wantAllow  bool
		wantReason string
		wantDetail [2]string
	}{
		{name: "allowed", host: "allowed.test", loopbackOK: true, wantAllow: true, wantDetail: [2]string{"addr", "127.0.0.1:"}},
		{name: "allowed name resolving to loopback", host: "allowed.test", wantReason: egress.ReasonPrivateAddress, wantDetail: [2]string{"addrs", "127.0.0.1"}},
		{name: "one public and one private address", host: "mixed.wild.test", wantReason: egress.ReasonPrivateAddress, wantDetail: [2]string{"addrs", "1.1.1.1,10.0.0.1"}},
		{name: "name without address", host: "nx.wild.test", loopbackOK: true, wantReason: egress.ReasonUnresolvable, wantDetail: [2]string{"error", "no such host"}},
		{name: "policy deny", host: "evil.test", loopbackOK: true, wantReason: "egress-host-not-allowed"},
	}
	for _, tc := range cases {
		for _, method := range []string{"CONNECT", "GET"} {
			t.Run(method+" "+tc.name, func(t *testing.T) {
				e := setupWith(t, config{network: true, trustLoopback: tc.loopbackOK})
				target := net.JoinHostPort(tc.host, strconv.Itoa(e.port))
				var status int
				if method == "CONNECT" {
					var conn net.Conn
					status, _, conn = connect(t, e.proxy, target)
					if conn != nil {
						conn.Close()
					}
				} else {
					resp, err := client(e.proxy).Get("http://" + target + "/")
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					status = resp.StatusCode
				}
				got := e.rec.all()
				if len(got) != 1 {
					t.Fatalf("%d records, want 1: %+v", len(got), got)
				}
				d := got[0]
				if d.Allow != tc.wantAllow || (!tc.wantAllow && !contains(d.Reasons, tc.wantReason)) {
					t.Fatalf("recorded allow=%v reasons=%v, want allow=%v %q", d.Allow, d.Reasons, tc.wantAllow, tc.wantReason)
				}
				if (status == 200) != tc.wantAllow {
					t.Errorf("status %d, allow %v", status, tc.wantAllow)
				}
				if k := tc.wantDetail[0]; k != "" && !strings.Contains(d.Detail[k], tc.wantDetail[1]) {
					t.Errorf("detail %v, want %s containing %q", d.Detail, k, tc.wantDetail[1])
				}
			})
		}
	}
}

// If the decision cannot be recorded nothing is connected and the client is
// told why.
func TestAuditDownConnectsNothing(t *testing.T) {
	for _, method := range []string{"CONNECT", "GET"} {
		t.Run(method, func(t *testing.T) {
			e := setupWith(t, config{network: true, trustLoopback: true})
			e.rec.fail.Store(true)
			target := net.JoinHostPort("allowed.test", strconv.Itoa(e.port))
			var status int
			var reasons string
			if method == "CONNECT" {
				status, reasons, _ = connect(t, e.proxy, target)
			} else {
				resp, err := client(e.proxy).Get("http://" + target + "/")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				status, reasons = resp.StatusCode, resp.Header.Get("X-Parachute-Reasons")
			}
			if status != http.StatusServiceUnavailable || !strings.Contains(reasons, engine.ReasonAuditUnavailable) {
				t.Errorf("status %d reasons %q, want 503 audit-unavailable", status, reasons)
			}
			if n := e.accepted.Load(); n != 0 {
				t.Errorf("the upstream accepted %d connections", n)
			}
		})
	}
}

// A flood of denied CONNECTs writes a bounded number of records: one each
// up to the attempt burst, then one for the first rate-limited attempt,
// then one summary per window with the count of the rest.
func TestAttemptFloodWritesBoundedRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		p := newProxy(t, config{network: true, opts: func(o *egress.Options) {
			o.AttemptRate, o.AttemptBurst, o.SummaryWindow = 10, 40, time.Second
		}}, 443, rec)
		statuses := map[int]int{}
		for range 300 {
			w := httptest.NewRecorder()
			p.ServeHTTP(w, httptest.NewRequest(http.MethodConnect, "evil.test:443", nil))
			statuses[w.Code]++
			if w.Code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
				t.Fatal("rate-limited answer without Retry-After")
			}
		}
		if statuses[http.StatusForbidden] != 40 || statuses[http.StatusTooManyRequests] != 260 {
			t.Fatalf("statuses %v, want 40 × 403 and 260 × 429", statuses)
		}
		if n := len(rec.all()); n != 41 {
			t.Fatalf("%d records during the flood, want 41 (40 policy denies, 1 rate-limited)", n)
		}
		time.Sleep(time.Second) // the summary window closes
		synctest.Wait()
		got := rec.all()
		if len(got) != 42 {
			t.Fatalf("%d records after the window, want 42", len(got))
		}
		sum := got[41]
		if sum.Allow || !contains(sum.Reasons, egress.ReasonRateLimited) || sum.Detail["suppressed"] != "259" {
			t.Fatalf("summary record %+v, want a deny egress-rate-limited with suppressed=259", sum)
		}
		time.Sleep(5 * time.Second) // quiet: no further record
		synctest.Wait()
		if n := len(rec.all()); n != 42 {
			t.Fatalf("%d records after a quiet period, want 42", n)
		}
		// The bucket has refilled: attempts are decided again.
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodConnect, "evil.test:443", nil))
		if w.Code != http.StatusForbidden || len(rec.all()) != 43 {
			t.Fatalf("after the flood: status %d, %d records", w.Code, len(rec.all()))
		}
	})
}

// A session holds at most MaxConns connections; the refusal is recorded,
// and closing a tunnel frees its slot.
func TestConnectionCap(t *testing.T) {
	e := setupWith(t, config{network: true, trustLoopback: true, opts: func(o *egress.Options) { o.MaxConns = 2 }})
	target := net.JoinHostPort("allowed.test", strconv.Itoa(e.port))
	var held []net.Conn
	for range 2 {
		status, _, c := connect(t, e.proxy, target)
		if status != 200 {
			t.Fatalf("tunnel %d: status %d", len(held), status)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	status, reasons, _ := connect(t, e.proxy, target)
	if status != http.StatusTooManyRequests || !strings.Contains(reasons, egress.ReasonConnectionLimit) {
		t.Fatalf("third tunnel: status %d reasons %q, want 429 %s", status, reasons, egress.ReasonConnectionLimit)
	}
	if d := e.rec.last(t); d.Allow || !contains(d.Reasons, egress.ReasonConnectionLimit) {
		t.Fatalf("recorded %+v", d)
	}
	resp, err := client(e.proxy).Get("http://" + target + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("plain HTTP past the cap: status %d", resp.StatusCode)
	}
	held[0].Close()
	select {
	case <-e.closed: // the proxy frees the slot before it closes the upstream side
	case <-time.After(bound):
		t.Fatal("the proxy did not close the upstream side of a closed tunnel")
	}
	status, _, c := connect(t, e.proxy, target)
	if status != 200 {
		t.Fatalf("after a tunnel closed: status %d", status)
	}
	held = append(held, c)
}

// waitClosed reads c until it fails and returns how long that took; it
// fails the test if c is still open after bound.
func waitClosed(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(bound))
	_, err := io.Copy(io.Discard, c)
	if err != nil && isTimeout(err) {
		t.Fatalf("connection still open after %v", bound)
	}
	return time.Since(start)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Slow or idle clients and upstreams are cut after a bound.
func TestTimeouts(t *testing.T) {
	const short = 200 * time.Millisecond
	opts := func(o *egress.Options) { o.IdleTimeout, o.ReadTimeout = short, short }

	t.Run("idle tunnel", func(t *testing.T) {
		e := setupWith(t, config{network: true, trustLoopback: true, opts: opts})
		_, _, c := connect(t, e.proxy, net.JoinHostPort("allowed.test", strconv.Itoa(e.port)))
		defer c.Close()
		if took := waitClosed(t, c); took < short/2 {
			t.Errorf("closed after %v, before the idle timeout", took)
		}
	})

	t.Run("stalled request body", func(t *testing.T) {
		e := setupWith(t, config{network: true, trustLoopback: true, opts: opts, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
		})})
		c, err := net.Dial("tcp", e.proxy.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1000\r\n\r\nonly a few bytes", e.port)
		waitClosed(t, c)
	})

	t.Run("upstream that never answers", func(t *testing.T) {
		stop := make(chan struct{})
		defer close(stop)
		e := setupWith(t, config{network: true, trustLoopback: true, opts: opts, upstream: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			<-stop
		})})
		c, err := net.Dial("tcp", e.proxy.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(bound))
		fmt.Fprintf(c, "GET http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", e.port)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("status %d, want 504", resp.StatusCode)
		}
	})

	t.Run("upstream body that stalls", func(t *testing.T) {
		stop := make(chan struct{})
		defer close(stop)
		e := setupWith(t, config{network: true, trustLoopback: true, opts: opts, upstream: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write([]byte("a little"))
			w.(http.Flusher).Flush()
			<-stop
		})})
		c, err := net.Dial("tcp", e.proxy.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", e.port)
		waitClosed(t, c)
	})

	t.Run("no idle keep-alive after an egress exchange", func(t *testing.T) {
		e := setupWith(t, config{network: true, trustLoopback: true})
		c, err := net.Dial("tcp", e.proxy.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", e.port)
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(bound))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if _, err := br.ReadByte(); err == nil || isTimeout(err) {
			t.Fatalf("the connection stayed open after the exchange (%v)", err)
		}
	})
}

// Headers named in Connection, and the hop-by-hop set, do not cross the
// proxy either way; a redirect is handed back, not followed.
func TestForwardHeadersAndRedirects(t *testing.T) {
	seen := make(chan http.Header, 4)
	e := setupWith(t, config{network: true, trustLoopback: true, upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://evil.test/steal", http.StatusTemporaryRedirect)
			return
		}
		fmt.Fprint(w, "ok")
	})})
	base := "http://allowed.test:" + strconv.Itoa(e.port)

	c, err := net.Dial("tcp", e.proxy.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s/ HTTP/1.1\r\nHost: allowed.test\r\nConnection: keep-alive, Authorization, X-Secret\r\n"+
		"Authorization: Bearer key\r\nX-Secret: 1\r\nX-Kept: 1\r\nUpgrade: websocket\r\nTe: gzip\r\nProxy-Authorization: Basic x\r\n\r\n", base)
	_ = c.SetReadDeadline(time.Now().Add(bound))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-seen
	for _, name := range []string{"Authorization", "X-Secret", "Upgrade", "Te", "Proxy-Authorization", "Keep-Alive"} {
		if v := h.Get(name); v != "" {
			t.Errorf("upstream got %s: %q", name, v)
		}
	}
	if h.Get("X-Kept") != "1" {
		t.Errorf("an ordinary header was dropped: %v", h)
	}
	rawUpstreamResponse(t)

	before := len(e.rec.all())
	noFollow := client(e.proxy)
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r2, err := noFollow.Get(base + "/redirect")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	<-seen
	if r2.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("status %d, want the upstream's 307 handed back", r2.StatusCode)
	}
	if n := len(e.rec.all()) - before; n != 1 {
		t.Errorf("%d decisions for one request with a redirect, want 1 (the proxy followed it)", n)
	}
}

// captureHello returns the TLS ClientHello crypto/tls sends for serverName
// ("" sends none).
func captureHello(t *testing.T, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		_ = tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: serverName == ""}).Handshake()
	}()
	_ = b.SetReadDeadline(time.Now().Add(bound))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// split re-frames a one-record hello as two handshake records.
func split(hello []byte) []byte {
	body := hello[5:]
	half := len(body) / 2
	rec := func(p []byte) []byte {
		return append([]byte{22, 3, 1, byte(len(p) >> 8), byte(len(p))}, p...)
	}
	return append(rec(body[:half]), rec(body[half:])...)
}

// With egress_require_sni, a tunnel's first bytes must be a ClientHello
// naming the CONNECT host; anything else is refused and recorded before the
// upstream is dialled.
func TestTunnelSNI(t *testing.T) {
	cases := []struct {
		name    string
		require bool
		first   func(t *testing.T) []byte
		wantOK  bool
	}{
		{name: "matching server name", require: true, first: func(t *testing.T) []byte { return captureHello(t, "allowed.test") }, wantOK: true},
		{name: "matching, hello split over two records", require: true, first: func(t *testing.T) []byte { return split(captureHello(t, "allowed.test")) }, wantOK: true},
		{name: "matching, other case", require: true, first: func(t *testing.T) []byte { return captureHello(t, "Allowed.Test") }, wantOK: true},
		{name: "domain fronting", require: true, first: func(t *testing.T) []byte { return captureHello(t, "evil.test") }},
		{name: "no server name", require: true, first: func(t *testing.T) []byte { return captureHello(t, "") }},
		{name: "not TLS", require: true, first: func(*testing.T) []byte { return []byte("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n") }},
		{name: "not required (default)", first: func(t *testing.T) []byte { return captureHello(t, "evil.test") }, wantOK: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan []byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(bound))
				buf := make([]byte, 64<<10)
				n, _ := io.ReadAtLeast(c, buf, 5)
				got <- buf[:n]
			}()
			port := ln.Addr().(*net.TCPAddr).Port
			role := map[string]any{}
			if tc.require {
				role["egress_require_sni"] = true
			}
			rec := &recorder{}
			p := newProxy(t, config{network: true, trustLoopback: true, role: role, opts: func(o *egress.Options) { o.ReadTimeout = time.Second }}, port, rec)
			srv := httptest.NewServer(p)
			defer srv.Close()
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			target := net.JoinHostPort("allowed.test", strconv.Itoa(port))
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			first := tc.first(t)
			if _, err := c.Write(first); err != nil {
				t.Fatal(err)
			}
			if tc.wantOK {
				select {
				case b := <-got:
					if !strings.HasPrefix(string(first), string(b)) || len(b) == 0 {
						t.Fatalf("upstream got %d bytes that are not the hello", len(b))
					}
				case <-time.After(bound):
					t.Fatal("the hello never reached the upstream")
				}
				if d := rec.last(t); !d.Allow {
					t.Fatalf("recorded %+v", d)
				}
				return
			}
			waitClosed(t, c)
			select {
			case b := <-got:
				t.Fatalf("the upstream was dialled and got %d bytes", len(b))
			default:
			}
			all := rec.all()
			if len(all) != 1 || all[0].Allow || !contains(all[0].Reasons, egress.ReasonSNIMismatch) {
				t.Fatalf("records %+v, want one deny %s", all, egress.ReasonSNIMismatch)
			}
		})
	}
}

// rawUpstreamResponse: headers an upstream names in its Connection header
// do not reach the client. The upstream is raw TCP, since Go's server
// rewrites a handler's Connection header.
func rawUpstreamResponse(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = http.ReadRequest(bufio.NewReader(c))
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nConnection: X-Upstream-Secret, close\r\nX-Upstream-Secret: s\r\nKeep-Alive: timeout=5\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok")
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	p := newProxy(t, config{network: true, trustLoopback: true}, port, &recorder{})
	srv := httptest.NewServer(p)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	resp, err := client(u).Get("http://allowed.test:" + strconv.Itoa(port) + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("X-Upstream-Secret"); v != "" {
		t.Errorf("client got X-Upstream-Secret %q, named in the upstream's Connection", v)
	}
	if v := resp.Header.Get("Keep-Alive"); v != "" {
		t.Errorf("client got Keep-Alive %q", v)
	}
	if resp.Header.Get("X-Kept") != "1" {
		t.Errorf("an ordinary response header was dropped: %v", resp.Header)
	}
}
