package engine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// productPolicies is the real policy folder; benchmarks measure it, not the
// test policy.
const productPolicies = "../policies"

// thousandUsers is operator data shaped like a team deployment: one private
// Telegram bot with 1,000 allowed users, each with a config entry.
func thousandUsers() map[string]any {
	allowed := map[string]any{} // keyed by ID, as config.PolicyData writes it
	users := map[string]any{}
	for i := range 1000 {
		id := strconv.Itoa(100000 + i)
		allowed[id] = true
		users["telegram:"+id] = map[string]any{"role": "member"}
	}
	return map[string]any{
		"connectors": map[string]any{
			"tg": map[string]any{"type": "telegram", "allowed_users": allowed, "owners": map[string]any{"100000": true}},
		},
		"users": users,
		// Limits high enough that the benchmark measures the bucket check
		// without emptying the buckets.
		"roles": map[string]any{"member": map[string]any{
			"messages_per_minute": 1e9, "message_burst": 1e9,
			"tool_calls_per_minute": 1e9, "tool_call_burst": 1e9,
		}},
	}
}

// productEngine is the product policy with thousandUsers; cacheSize as in
// Options (negative: every decision is evaluated, a cache miss).
func productEngine(b *testing.B, cacheSize int) *Engine {
	b.Helper()
	if _, err := os.Stat(filepath.Join(productPolicies, "message.rego")); err != nil {
		b.Skipf("no product policies at %s: %v", productPolicies, err)
	}
	e, err := New(context.Background(), Options{PolicyDir: productPolicies, Data: thousandUsers(), CacheSize: cacheSize})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// benchDecide runs one decision per iteration and reports the median and
// 99th percentile latency alongside ns/op and allocations.
func benchDecide(b *testing.B, e *Engine, next func(i int) Input, wantAllow bool) {
	ctx := context.Background()
	if d := e.Decide(ctx, next(0)); d.Allow != wantAllow {
		b.Fatalf("decision allow=%v, want %v: %v %v", d.Allow, wantAllow, d.Reasons, d.Err)
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		e.Decide(ctx, next(i))
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// The Miss benchmarks evaluate every decision (no cache); the Hit ones
// repeat inputs the cache holds.
func BenchmarkDecideMessage1000UsersMiss(b *testing.B) { benchMessage(b, -1) }
func BenchmarkDecideMessage1000UsersHit(b *testing.B)  { benchMessage(b, 0) }
func BenchmarkDecideTool1000UsersMiss(b *testing.B)    { benchTool(b, -1) }
func BenchmarkDecideTool1000UsersHit(b *testing.B)     { benchTool(b, 0) }

func benchMessage(b *testing.B, cacheSize int) {
	e := productEngine(b, cacheSize)
	// Each iteration is a different user, as in a busy team bot.
	inputs := make([]Input, 1000)
	for i := range inputs {
		id := strconv.Itoa(100000 + i)
		inputs[i] = MessageInput{
			Connector: "tg", ConnectorType: "telegram",
			Sender: Sender{ID: "telegram:" + id, PlatformID: id, DisplayName: "user " + id},
			Chat:   Chat{ID: id, Kind: "dm"},
		}
	}
	if cacheSize >= 0 {
		for _, in := range inputs {
			e.Decide(context.Background(), in)
		}
	}
	benchDecide(b, e, func(i int) Input { return inputs[i%len(inputs)] }, true)
}

func benchTool(b *testing.B, cacheSize int) {
	e := productEngine(b, cacheSize)
	session := SessionFacts{ID: "s1", Identity: "telegram:100001", Connector: "tg", ConnectorType: "telegram",
		Role: "member", TrustLevel: "sandboxed", Workspace: "users/telegram%3A100001"}
	in := ToolInput{
		Session: session,
		Tool:    ToolFacts{Name: "write_file", Server: "vault", Access: AccessWrite},
		Paths: []PathFacts{{Arg: "path", Raw: "notes/today.md", Resolved: "users/telegram%3A100001/notes/today.md",
			InsideWorkspace: true, Access: AccessWrite}},
	}
	benchDecide(b, e, func(int) Input { return in }, true)
}

func BenchmarkDecideToolDeniedHooksMiss(b *testing.B) {
	e := productEngine(b, -1)
	in := ToolInput{
		Session: SessionFacts{ID: "s1", Identity: "telegram:100001", Connector: "tg", ConnectorType: "telegram",
			Role: "member", TrustLevel: "sandboxed", Workspace: "users/telegram%3A100001"},
		Tool: ToolFacts{Name: "write_file", Server: "vault", Access: AccessWrite},
		Paths: []PathFacts{{Arg: "path", Raw: ".PARACHUTE/Hooks/pre-session.sh",
			Resolved: "users/telegram%3A100001/.PARACHUTE/Hooks/pre-session.sh", InsideWorkspace: true, Access: AccessWrite}},
	}
	benchDecide(b, e, func(int) Input { return in }, false)
}

// BenchmarkDecideBaseline is the engine's own cost around the smallest
// policy: the floor under every other figure.
func BenchmarkDecideBaseline(b *testing.B) {
	e, err := New(context.Background(), Options{PolicyDir: "testdata/basic", CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	in := MessageInput{Command: "deny"}
	benchDecide(b, e, func(int) Input { return in }, false)
}
