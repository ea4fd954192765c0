package runtime

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// reportPercentiles reports p50 and p99 of the samples in milliseconds.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		i := int(q * float64(len(samples)-1))
		return float64(samples[i].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the percentiles are the numbers that matter
}

// BenchmarkColdSession: create + start a sandbox, run the first turn,
// stop and delete it.
func BenchmarkColdSession(b *testing.B) {
	rt := testRuntime(b)
	ws := b.TempDir()
	ctx := context.Background()
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sb, err := rt.Start(ctx, Spec{SessionID: fmt.Sprintf("bench-cold-%d", i), Image: probeRef, Workspace: ws, Profile: limitsProfile("strict", true)})
		if err != nil {
			b.Fatal(err)
		}
		res, err := sb.Exec(ctx, Turn{Args: []string{"/parachute", "sleep", "0"}})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("%+v %v", res, err)
		}
		if err := sb.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
	}
	reportPercentiles(b, samples)
}

// BenchmarkWarmExec: one turn in a running sandbox.
func BenchmarkWarmExec(b *testing.B) {
	rt := testRuntime(b)
	ctx := context.Background()
	sb, err := rt.Start(ctx, Spec{SessionID: "bench-warm", Image: probeRef, Workspace: b.TempDir(), Profile: limitsProfile("strict", true)})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Stop(ctx)
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := sb.Exec(ctx, Turn{Args: []string{"/parachute", "sleep", "0"}})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("%+v %v", res, err)
		}
		samples = append(samples, time.Since(start))
	}
	reportPercentiles(b, samples)
}

// BenchmarkStartOnly: create + start, the part a warm pool would hide.
func BenchmarkStartOnly(b *testing.B) {
	rt := testRuntime(b)
	ws := b.TempDir()
	ctx := context.Background()
	samples := make([]time.Duration, 0, b.N)
	var sbs []Sandbox
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sb, err := rt.Start(ctx, Spec{SessionID: fmt.Sprintf("bench-start-%d", i), Image: probeRef, Workspace: ws, Profile: limitsProfile("strict", true)})
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
		sbs = append(sbs, sb)
		if len(sbs) >= 8 {
			b.StopTimer()
			for _, s := range sbs {
				s.Stop(ctx)
			}
			sbs = sbs[:0]
			b.StartTimer()
		}
	}
	b.StopTimer()
	for _, s := range sbs {
		s.Stop(ctx)
	}
	reportPercentiles(b, samples)
}
