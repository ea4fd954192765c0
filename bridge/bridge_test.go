package bridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// socketPath returns a short socket path (sun_path is ~108 bytes).
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "br")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// connectProxy is a minimal egress proxy on a unix socket, standing in
// for the gateway's: CONNECT tunnels and absolute-URL requests.
type connectProxy struct {
	mu   sync.Mutex
	seen []string // "CONNECT host:port" or "GET http://…"
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.RequestURI)
	p.mu.Unlock()
	if r.Method != http.MethodConnect {
		resp, err := http.DefaultTransport.RoundTrip(r.Clone(context.Background()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	target, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer target.Close()
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() { _, _ = io.Copy(target, rw) }()
	_, _ = io.Copy(conn, target)
}

func (p *connectProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// serveUnix serves h on a new unix socket and returns its path.
func serveUnix(t testing.TB, h http.Handler) string {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return path
}

// startBridge runs a bridge to socket on a loopback port until the test ends.
// done is closed when Serve returns; *serveErr is its result then.
func startBridge(t testing.TB, socket string, maxConns int) (addr string, cancel context.CancelFunc, done <-chan struct{}, serveErr *error) {
	t.Helper()
	return serveBridge(t, newBridge(t, socket, maxConns))
}

func newBridge(t testing.TB, socket string, maxConns int) *Bridge {
	t.Helper()
	b, err := New(Options{Socket: socket, MaxConns: maxConns})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveBridge is startBridge for a bridge the test made (to reach its
// slots).
func serveBridge(t testing.TB, b *Bridge) (addr string, cancel context.CancelFunc, done <-chan struct{}, serveErr *error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	var err2 error
	go func() { err2 = b.Serve(ctx, ln); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			t.Error("bridge did not stop")
		}
	})
	return ln.Addr().String(), cancel, finished, &err2
}

func TestBridgeReachesTargetsThroughTheSocketProxy(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from target") })
	plain := httptest.NewServer(handler)
	defer plain.Close()
	secure := httptest.NewTLSServer(handler)
	defer secure.Close()

	proxy := &connectProxy{}
	addr, _, _, _ := startBridge(t, serveUnix(t, proxy), 4)
	proxyURL := &url.URL{Scheme: "http", Host: addr}

	tests := []struct {
		name     string
		target   string
		wantSeen string // the request line the socket's proxy received
	}{
		{"https via CONNECT", secure.URL + "/x", "CONNECT " + strings.TrimPrefix(secure.URL, "https://")},
		{"http via absolute URL", plain.URL + "/y", "GET " + plain.URL + "/y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{
				Timeout: 10 * time.Second,
				Transport: &http.Transport{
					Proxy:           http.ProxyURL(proxyURL),
					TLSClientConfig: &tls.Config{RootCAs: secure.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
				},
			}
			resp, err := client.Get(tc.target)
			if err != nil {
				t.Fatalf("GET %s through the bridge: %v", tc.target, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "hello from target" {
				t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, body, "hello from target")
			}
			found := false
			for _, s := range proxy.requests() {
				found = found || s == tc.wantSeen
			}
			if !found {
				t.Errorf("socket proxy saw %q; want it to include %q", proxy.requests(), tc.wantSeen)
			}
		})
	}
}

// echoSocket serves a unix socket that echoes every byte back.
func echoSocket(t testing.TB) string {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return path
}

// roundTrip writes msg on c and reads it back (through the echo socket).
func roundTrip(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("read %q; want %q", buf, msg)
	}
	return nil
}

func TestBridgeForwardsBytesAndHalfCloses(t *testing.T) {
	addr, _, _, _ := startBridge(t, echoSocket(t), 4)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := strings.Repeat("\x00\xffbinary\r\n", 10000)
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	// After our half-close the echo peer sees EOF, closes, and we see EOF.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != payload {
		t.Fatalf("echoed %d bytes; want the %d sent, unchanged", len(got), len(payload))
	}
}

func TestBridgeConnectionLimit(t *testing.T) {
	b := newBridge(t, echoSocket(t), 1)
	addr, _, _, _ := serveBridge(t, b)

	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(first, "one"); err != nil {
		t.Fatalf("first connection: %v", err)
	}

	// The one slot is taken: the next connection is closed unanswered.
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := roundTrip(second, "two"); err == nil {
		t.Fatal("second connection was served; want it closed at the limit of 1")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("second connection hung; want it closed at once")
	}

	// Once the first ends, the slot is free again. Wait for its release
	// by taking the bridge's one slot ourselves, then give it back.
	first.Close()
	select {
	case b.slots <- struct{}{}:
		<-b.slots
	case <-time.After(5 * time.Second):
		t.Fatal("the first connection's slot was not released within 5 s of its close")
	}
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if err := roundTrip(third, "three"); err != nil {
		t.Fatalf("a connection after the first closed: %v; want it served", err)
	}
}

func TestBridgeShutdownClosesConnections(t *testing.T) {
	addr, cancel, done, serveErr := startBridge(t, echoSocket(t), 4)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "ping"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
		if *serveErr != nil {
			t.Fatalf("Serve returned %v after cancel; want nil", *serveErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(c).ReadByte(); err == nil {
		t.Fatal("open connection still readable after shutdown; want it closed")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("open connection left hanging after shutdown; want it closed")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("bridge still accepting after shutdown")
	}
}

func TestListenOnlyOnLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"localhost:0", true},
		{"0.0.0.0:0", false},
		{":0", false},
		{"10.0.0.1:3128", false},
		{"example.com:3128", false},
		{"127.0.0.1", false}, // no port
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			ln, err := Listen(context.Background(), tc.addr)
			if ln != nil {
				ln.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("Listen(%q) error = %v; want ok=%v", tc.addr, err, tc.ok)
			}
		})
	}
}

func TestBridgeUnreachableSocketClosesClient(t *testing.T) {
	addr, _, _, _ := startBridge(t, filepath.Join(t.TempDir(), "missing.sock"), 4)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read = %v; want EOF when the gateway socket is missing", err)
	}
}
