package modelproxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/modelproxy"
	"github.com/parachute-gateway/parachute/sessions"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// BenchmarkModelProxyOverhead measures what the proxy adds to a model
// call: the same request sent straight to the fake upstream and through
// the proxy (real policies, usage in a real bbolt store). It reports the
// p50 of each and their difference, added-p50-µs.
func BenchmarkModelProxyOverhead(b *testing.B) {
	fake := model.New(model.Script{Steps: []model.Step{model.Reply("hi")}, RepeatLast: true})
	up := httptest.NewServer(fake)
	defer up.Close()
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: "../policies", Data: map[string]any{
		"connectors": map[string]any{"tg": map[string]any{"type": "telegram", "allowed_users": []any{"1"}}},
		"roles":      map[string]any{"member": map[string]any{"tokens_per_day": 1 << 50, "model_calls_per_minute": 1 << 30, "model_call_burst": 1 << 30}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	store, err := sessions.OpenStore(sessions.StoreOptions{Path: filepath.Join(b.TempDir(), "s.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	facts := engine.SessionFacts{ID: "s1", Identity: "telegram:1", Connector: "tg", ConnectorType: "telegram",
		Role: "member", TrustLevel: "sandboxed", Workspace: "users/telegram%3A1"}
	p, err := modelproxy.New(modelproxy.Options{Provider: modelproxy.Anthropic, BaseURL: up.URL, APIKey: "sk-bench",
		Decider: e, Usage: sessions.Usage{Store: store},
		Session: func(*http.Request) (engine.SessionFacts, bool) { return facts, true }})
	if err != nil {
		b.Fatal(err)
	}
	proxy := httptest.NewServer(p)
	defer proxy.Close()
	const body = `{"model":"claude-x","max_tokens":256,"messages":[{"role":"user","content":"hello"}]}`
	send := func(base string) time.Duration {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, base+model.AnthropicPath, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	var direct, proxied []time.Duration
	b.ResetTimer()
	for b.Loop() {
		direct = append(direct, send(up.URL))
		proxied = append(proxied, send(proxy.URL))
	}
	b.StopTimer()
	p50 := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds())
	}
	dp, pp := p50(direct), p50(proxied)
	b.ReportMetric(dp, "direct-p50-µs")
	b.ReportMetric(pp, "proxied-p50-µs")
	b.ReportMetric(pp-dp, "added-p50-µs")
}
