package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
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
	srv, rec := server(t, "s3cret", 2)
	tests := []struct {
		name, token, body string
		status            int
		reply             string // substring of reply or error
	}{
		{"allowed user", "s3cret", `{"user":"u0","text":"hello"}`, 200, "hello"},
		{"owner whoami", "s3cret", `{"user":"owner","text":"/whoami"}`, 200, "Role: owner"},
		{"unknown user", "s3cret", `{"user":"x","text":"hello"}`, 200, "/pair"},
		{"display name is not identity", "s3cret", `{"user":"x","display_name":"owner","text":"/whoami"}`, 200, "/pair"},
		{"no token", "", `{"user":"u0","text":"hello"}`, 401, "bearer"},
		{"wrong token", "s3cre", `{"user":"u0","text":"hello"}`, 401, "bearer"},
		{"no user", "s3cret", `{"text":"hello"}`, 400, "user is required"},
		{"unknown field", "s3cret", `{"user":"u0","text":"hi","role":"owner"}`, 400, "unknown field"},
		{"not json", "s3cret", `user=u0`, 400, "body"},
		{"bad chat kind", "s3cret", `{"user":"u0","text":"hi","chat_kind":"room"}`, 400, "chat kind"},
		{"oversized body", "s3cret", `{"user":"u0","text":"` + strings.Repeat("a", local.MaxBody) + `"}`, 400, "too large"},
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
	for c.Addr() == nil {
		time.Sleep(time.Millisecond)
	}
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
