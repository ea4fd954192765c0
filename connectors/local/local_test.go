package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/engine"
)

func policyDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "policies")
}

// data: connector "dev" with n allowed users u0…u(n-1) and, for the
// benchmark, a member rate limit high enough not to be what is measured.
func data(n int) map[string]any {
	users := make([]any, n)
	for i := range users {
		users[i] = fmt.Sprintf("u%d", i)
	}
	return map[string]any{
		"connectors": map[string]any{"dev": map[string]any{
			"type": "local", "owners": []any{"owner"}, "allowed_users": users,
		}},
		"roles": map[string]any{"member": map[string]any{"messages_per_minute": 6e7, "message_burst": 1e6}},
	}
}

type countRecorder struct{ n atomic.Int64 }

func (r *countRecorder) Record(_ context.Context, in engine.Input, d *engine.Decision) error {
	r.n.Add(1)
	return json.NewEncoder(io.Discard).Encode(map[string]any{"id": d.ID, "allow": d.Allow, "reasons": d.Reasons, "input": in.Value().String()})
}

func server(tb testing.TB, token string, users int) (*httptest.Server, *countRecorder) {
	tb.Helper()
	rec := &countRecorder{}
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: data(users), Recorder: rec})
	if err != nil {
		tb.Fatal(err)
	}
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: connectors.EchoTurns{}})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := local.New(local.Options{Name: "dev", Listen: "127.0.0.1:0", Token: token})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(r))
	tb.Cleanup(srv.Close)
	return srv, rec
}

func post(t testing.TB, url, token, body string) (int, map[string]any) {
	req, _ := http.NewRequest("POST", url+"/v1/messages", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestLocalAPI(t *testing.T) {
	const tok = "s3cret-s3cret-s3cret"
	srv, rec := server(t, tok, 2)
	tests := []struct {
		name, token, body string
		status            int
		reply             string // substring of reply or error
	}{
		{"allowed user", tok, `{"user":"u0","text":"hello"}`, 200, "hello"},
		{"owner whoami", tok, `{"user":"owner","text":"/whoami"}`, 200, "Role: owner"},
		{"unknown user", tok, `{"user":"x","text":"hello"}`, 200, "/pair"},
		{"display name is not identity", tok, `{"user":"x","display_name":"owner","text":"/whoami"}`, 200, "/pair"},
		{"no token", "", `{"user":"u0","text":"hello"}`, 401, "bearer"},
		{"wrong token", "s3cret-s3cret-s3cre", `{"user":"u0","text":"hello"}`, 401, "bearer"},
		{"token prefix", "s3cret", `{"user":"u0","text":"hello"}`, 401, "bearer"},
		{"token with a suffix", tok + "x", `{"user":"u0","text":"hello"}`, 401, "bearer"},
		{"owner without token", "", `{"user":"owner","text":"/whoami"}`, 401, "bearer"},
		{"no user", tok, `{"text":"hello"}`, 400, "user is required"},
		{"unknown field", tok, `{"user":"u0","text":"hi","role":"owner"}`, 400, "unknown field"},
		{"not json", tok, `user=u0`, 400, "body"},
		{"bad chat kind", tok, `{"user":"u0","text":"hi","chat_kind":"room"}`, 400, "chat kind"},
		{"oversized body", tok, `{"user":"u0","text":"` + strings.Repeat("a", local.MaxBody) + `"}`, 400, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := post(t, srv.URL, tt.token, tt.body)
			got := fmt.Sprint(out["reply"], out["error"])
			if code != tt.status || !strings.Contains(got, tt.reply) {
				t.Fatalf("status %d %q, want %d containing %q", code, got, tt.status, tt.reply)
			}
		})
	}
	if rec.n.Load() != 4 {
		t.Fatalf("%d decisions recorded, want 4", rec.n.Load())
	}
}

// TestLocalAuthHeaderShapes: only the exact "Bearer <token>" header is
// accepted; case, spacing and other schemes are not.
func TestLocalAuthHeaderShapes(t *testing.T) {
	const tok = "0123456789abcdef0123"
	srv, rec := server(t, tok, 1)
	for _, h := range []string{"", "bearer " + tok, "Bearer  " + tok, "Basic " + tok, tok, "Bearer"} {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/messages", strings.NewReader(`{"user":"owner","text":"/whoami"}`))
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(out["error"], "Authorization: Bearer") || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Authorization %q: %d %v, want 401 with a JSON error naming the header", h, resp.StatusCode, out)
		}
	}
	if rec.n.Load() != 0 {
		t.Fatalf("%d decisions for unauthenticated requests, want 0", rec.n.Load())
	}
}

func TestLocalNewRefusesMissingToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts local.Options
		want string
	}{
		{"token_env unset", local.Options{Name: "dev", Listen: "127.0.0.1:0", TokenEnv: "LOCAL_TOKEN"}, "$LOCAL_TOKEN is unset"},
		{"token_env short", local.Options{Name: "dev", Listen: "127.0.0.1:0", TokenEnv: "LOCAL_TOKEN", Token: "short"}, "$LOCAL_TOKEN is unset or shorter"},
		{"short token", local.Options{Name: "dev", Listen: "127.0.0.1:0", Token: "short"}, "shorter than"},
		{"no listener", local.Options{Name: "dev"}, "set listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := local.New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// socketClient talks HTTP over the unix socket at path.
func socketClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

type peerLog struct {
	mu    sync.Mutex
	peers []string
}

func (p *peerLog) Handle(_ context.Context, m *connectors.Message, r connectors.Replier) error {
	p.mu.Lock()
	p.peers = append(p.peers, m.Peer)
	p.mu.Unlock()
	return r.SendText(context.Background(), m.ChatID, "ok")
}

// TestLocalSocket: the unix socket is 0600 from the start, needs no token
// (the peer's uid is the credential), carries the peer uid into the
// message, replaces a stale socket and refuses to replace anything else.
func TestLocalSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "local.sock")
	c, err := local.New(local.Options{Name: "dev", Socket: path, Listen: "127.0.0.1:0", Token: "0123456789abcdef0123"})
	if err != nil {
		t.Fatal(err)
	}
	h := &peerLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	waitListening(t, c, done)
	st, err := os.Lstat(path)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v %v, want a socket with mode 0600", path, st.Mode(), err)
	}
	resp, err := socketClient(path).Post("http://local/v1/messages", "application/json", strings.NewReader(`{"user":"owner","text":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("socket request: %d", resp.StatusCode)
	}
	// TCP still wants the token.
	code, _ := post(t, "http://"+c.Addr().String(), "", `{"user":"owner","text":"hi"}`)
	if code != 401 {
		t.Fatalf("TCP without token: %d, want 401", code)
	}
	h.mu.Lock()
	peers := append([]string(nil), h.peers...)
	h.mu.Unlock()
	if want := fmt.Sprintf("uid:%d pid:%d", os.Getuid(), os.Getpid()); len(peers) != 1 || peers[0] != want {
		t.Fatalf("peers %q, want [%q]", peers, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind after Run: %v", err)
	}

	// A stale socket (a crash) is replaced; a symlink or a file is refused.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	for _, tc := range []struct {
		name  string
		setup func()
		ok    bool
	}{
		{"stale socket", func() {}, true},
		{"symlink", func() { os.Remove(path); os.Symlink(filepath.Join(dir, "elsewhere"), path) }, false},
		{"regular file", func() { os.Remove(path); os.WriteFile(path, nil, 0o600) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			c, _ := local.New(local.Options{Name: "dev", Socket: path})
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- c.Run(ctx, h) }()
			select {
			case <-c.Listening():
				if !tc.ok {
					t.Fatalf("listened over a %s", tc.name)
				}
				cancel()
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			case err := <-errc:
				cancel()
				if tc.ok || err == nil || !strings.Contains(err.Error(), "not a socket") {
					t.Fatalf("Run over a %s: %v", tc.name, err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "elsewhere")); err == nil {
				t.Fatal("the symlink's target was created")
			}
		})
	}
}

// waitListening waits until Run has opened its listeners, failing the test
// if Run returns first (the error is put back on done) or 10 s pass.
func waitListening(t *testing.T, c *local.Connector, done chan error) {
	t.Helper()
	select {
	case <-c.Listening():
	case err := <-done:
		done <- err
		t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the local connector did not listen within 10 s")
	}
}

func TestLocalIdempotentRetry(t *testing.T) {
	srv, rec := server(t, "", 1)
	for range 3 {
		code, _ := post(t, srv.URL, "", `{"user":"u0","text":"once","message_id":"m-1"}`)
		if code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if rec.n.Load() != 1 {
		t.Fatalf("%d decisions for one message ID, want 1", rec.n.Load())
	}
}

func TestLocalRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "10.0.0.1:80", "example.com:80", "[::]:80"} {
		if _, err := local.New(local.Options{Name: "dev", Listen: addr}); err == nil {
			t.Errorf("listen %q accepted", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0"} {
		if _, err := local.New(local.Options{Name: "dev", Listen: addr}); err != nil {
			t.Errorf("listen %q refused: %v", addr, err)
		}
	}
}

func TestLocalRun(t *testing.T) {
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: data(1)})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: connectors.EchoTurns{}})
	c, _ := local.New(local.Options{Name: "dev", Listen: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, r) }()
	waitListening(t, c, done)
	code, out := post(t, "http://"+c.Addr().String(), "", `{"user":"u0","text":"hi"}`)
	if code != 200 || out["reply"] != "hi" {
		t.Fatalf("%d %v", code, out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLocalThroughput: messages through the local HTTP connector with
// the real policies, rate limits and recording on, a no-op agent.
func BenchmarkLocalThroughput(b *testing.B) {
	srv, _ := server(b, "", 1000)
	var seq atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			body := fmt.Sprintf(`{"user":"u%d","text":"ping %d"}`, n%1000, n)
			resp, err := client.Post(srv.URL+"/v1/messages", "application/json", bytes.NewBufferString(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkRouterLatency: inbound message → policy decision → reply handed
// to the platform, in process, warm, no-op agent. Reports the median.
func BenchmarkRouterLatency(b *testing.B) {
	rec := &countRecorder{}
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: data(1000), Recorder: rec})
	if err != nil {
		b.Fatal(err)
	}
	r, _ := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: connectors.EchoTurns{}})
	rep := &nopReplier{}
	lat := make([]time.Duration, 0, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		m := &connectors.Message{Connector: "dev", Type: "local", UserID: fmt.Sprintf("u%d", i%1000),
			ChatID: "c", ChatKind: connectors.KindDM, Text: "ping", MessageID: fmt.Sprint(i)}
		t0 := time.Now()
		if err := r.Handle(ctx, m, rep); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	if rep.n.Load() != int64(b.N) {
		b.Fatalf("%d replies for %d messages", rep.n.Load(), b.N)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

type nopReplier struct{ n atomic.Int64 }

func (r *nopReplier) SendText(context.Context, string, string) error { r.n.Add(1); return nil }
func (r *nopReplier) Typing(context.Context, string) error           { return nil }
