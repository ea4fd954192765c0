package mcpproxy

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy/vault"
)

// benchClients is how many MCP clients BenchmarkProxyThroughput runs at once.
const benchClients = 8

// benchSetup returns a client straight to the built-in vault server and one
// through the proxy to the same workspace, both over unix sockets with the
// same transport options, and the proxy session. Every decision is made
// durable as in production: a signed audit log on this machine's disk
// (the test's temporary folder), fsynced before the call goes on.
func benchSetup(b *testing.B) (direct, proxied *mcp.ClientSession, s *Session, log *audit.Log) {
	b.Helper()
	f := newFixture(b)
	state := b.TempDir()
	key, err := audit.OpenKey(filepath.Join(state, audit.KeyFileName))
	must(b, err)
	log, err = audit.Open(filepath.Join(state, "audit"), audit.Options{Signer: key})
	must(b, err)
	b.Cleanup(func() { log.Close() })
	p, err := New(context.Background(), Options{Decider: newFastEngine(b, audit.Recorder{Log: log}), Vault: f.vault, Builtin: true})
	must(b, err)
	s, err = p.NewSession(context.Background(), SessionOptions{
		Facts: func() engine.SessionFacts { return facts(false) }, ClientRoot: "/workspace"})
	must(b, err)
	b.Cleanup(func() { s.Close() })
	v, err := vault.New(f.ws, vault.Options{})
	must(b, err)
	b.Cleanup(func() { v.Close() })
	srv := v.MCPServer()
	plain := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{JSONResponse: true, DisableLocalhostProtection: true})
	return connectHTTP(b, plain), connectHTTP(b, s.Handler()), s, log
}

func readNotes(b *testing.B, cs *mcp.ClientSession, path string) time.Duration {
	start := time.Now()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": path}})
	d := time.Since(start)
	if err != nil || res.IsError {
		b.Errorf("call failed: %v %v", err, res) // Errorf: clients run on their own goroutines
	}
	return d
}

func pct(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) / 1e3
}

// BenchmarkProxyOverhead interleaves a read_file call straight to the
// built-in server and one through the proxy (policy decision and path
// resolution included), both over a unix socket, and reports both latency
// distributions and the difference of their medians and 99th percentiles.
func BenchmarkProxyOverhead(b *testing.B) {
	direct, proxied, _, _ := benchSetup(b)
	for range 200 { // warm up both paths
		readNotes(b, direct, "notes.md")
		readNotes(b, proxied, "/workspace/notes.md")
	}
	dd := make([]time.Duration, 0, b.N)
	pd := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		dd = append(dd, readNotes(b, direct, "notes.md"))
		pd = append(pd, readNotes(b, proxied, "/workspace/notes.md"))
	}
	b.StopTimer()
	d50, d99, p50, p99 := pct(dd, .5), pct(dd, .99), pct(pd, .5), pct(pd, .99)
	b.ReportMetric(d50, "direct-p50-µs")
	b.ReportMetric(d99, "direct-p99-µs")
	b.ReportMetric(p50, "proxy-p50-µs")
	b.ReportMetric(p99, "proxy-p99-µs")
	b.ReportMetric(p50-d50, "added-p50-µs")
	b.ReportMetric(p99-d99, "added-p99-µs")
}

// BenchmarkProxyThroughput runs policy-checked read_file calls through the
// proxy from benchClients clients at once, each with its own MCP session
// and connection over the unix socket, and reports calls/s. Each call's
// record is durable before its result is returned.
func BenchmarkProxyThroughput(b *testing.B) {
	_, first, s, log := benchSetup(b)
	clients := []*mcp.ClientSession{first}
	for len(clients) < benchClients {
		clients = append(clients, connectHTTP(b, s.Handler()))
	}
	for _, c := range clients {
		readNotes(b, c, "/workspace/notes.md")
	}
	var next sync.Mutex
	left := b.N
	take := func() bool {
		next.Lock()
		defer next.Unlock()
		left--
		return left >= 0
	}
	b.ResetTimer()
	start, syncs := time.Now(), log.Syncs()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for take() {
				readNotes(b, c, "/workspace/notes.md")
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	b.ReportMetric(float64(b.N)/float64(log.Syncs()-syncs), "records/fsync")
}

// BenchmarkDecideAndResolve is the proxy's own work per call without any
// transport: argument decoding, path resolution, the policy decision and
// the built-in read.
func BenchmarkDecideAndResolve(b *testing.B) {
	_, _, s, _ := benchSetup(b)
	e := s.p.catalog.byName["read_file"]
	raw := []byte(`{"path":"/workspace/notes.md"}`)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if res, _ := s.call(context.Background(), e, raw); res.IsError {
			b.Fatal(res.Content[0].(*mcp.TextContent).Text)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(pct(lat, .5), "p50-µs")
	b.ReportMetric(pct(lat, .99), "p99-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
