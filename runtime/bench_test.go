package runtime

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
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

// BenchmarkWarmExec: one turn in a running sandbox, for each way a turn
// starts (init, runc-exec), in one run.
func BenchmarkWarmExec(b *testing.B) {
	for _, via := range execPaths {
		b.Run(via.name, func(b *testing.B) { benchWarmExec(b, via.noInit) })
	}
}

func benchWarmExec(b *testing.B, noInit bool) {
	rt := testRuntimeVia(b, noInit)
	ctx := context.Background()
	sb, err := rt.Start(ctx, Spec{SessionID: "bench-warm-" + randomID(), Image: probeRef, Workspace: b.TempDir(), Profile: limitsProfile("strict", true)})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Stop(ctx)
	assertExecPath(b, sb, noInit)
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

// BenchmarkClasses measures, per runtime class and in one run: a cold
// session (start, first exec, stop), a warm exec, a new session's first
// exec from the pool (gvisor is never pooled: that is its cold start), and
// `ctr run --rm` of the same image running the same command, the floor
// containerd's own client gives.
//
//	go test -run '^$' -bench Classes -benchtime 10x ./runtime/
func BenchmarkClasses(b *testing.B) {
	rt := testRuntime(b)
	ctx := context.Background()
	ctr, err := exec.LookPath("ctr")
	if err != nil {
		b.Skip("ctr not installed")
	}
	for _, class := range []string{ClassRunc, ClassGVisor} {
		prof := limitsProfile("strict", true)
		prof.RuntimeClass = class
		b.Run(class+"/cold", func(b *testing.B) {
			needClass(b, rt, class)
			ws := b.TempDir()
			var samples []time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				sb, err := rt.Start(ctx, Spec{SessionID: "bench-" + class + "-" + randomID(), Image: probeRef, Workspace: ws, Profile: prof})
				if err != nil {
					b.Fatal(err)
				}
				if res, err := sb.Exec(ctx, Turn{Args: []string{"/parachute", "sleep", "0"}}); err != nil || res.ExitCode != 0 {
					b.Fatalf("%+v %v", res, err)
				}
				if err := sb.Stop(ctx); err != nil {
					b.Fatal(err)
				}
				samples = append(samples, time.Since(start))
			}
			reportPercentiles(b, samples)
		})
		b.Run(class+"/warm-exec", func(b *testing.B) {
			needClass(b, rt, class)
			sb, err := rt.Start(ctx, Spec{SessionID: "bench-warm-" + randomID(), Image: probeRef, Workspace: b.TempDir(), Profile: prof})
			if err != nil {
				b.Fatal(err)
			}
			defer sb.Stop(ctx)
			var samples []time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if res, err := sb.Exec(ctx, Turn{Args: []string{"/parachute", "sleep", "0"}}); err != nil || res.ExitCode != 0 {
					b.Fatalf("%+v %v", res, err)
				}
				samples = append(samples, time.Since(start))
			}
			reportPercentiles(b, samples)
		})
		b.Run(class+"/pooled-first-exec", func(b *testing.B) {
			needClass(b, rt, class)
			pool, err := rt.NewPool(PoolOptions{Dir: filepath.Join(b.TempDir(), "pool")})
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close(ctx)
			var samples []time.Duration
			for i := 0; i < b.N; i++ {
				s, _ := poolSpec(b, "bench-"+randomID(), true)
				s.Profile = prof
				if i > 0 && poolable(class) {
					waitReady(b, pool, s)
				}
				start := time.Now()
				sb, err := pool.Start(ctx, s)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := sb.Exec(ctx, Turn{Args: []string{"/parachute", "sleep", "0"}}); err != nil {
					b.Fatal(err)
				}
				if i > 0 || !poolable(class) { // the first teaches the pool
					samples = append(samples, time.Since(start))
				}
				sb.Stop(ctx)
			}
			reportPercentiles(b, samples)
		})
		b.Run(class+"/ctr-run-rm", func(b *testing.B) {
			needClass(b, rt, class)
			args := []string{"-a", rt.opts.Address, "-n", rt.opts.Namespace, "run", "--rm"}
			if class == ClassGVisor {
				args = append(args, "--runc-binary", rt.opts.RunscWrapper)
			}
			var samples []time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				a := append(slices.Clone(args), probeRef, "bench-ctr-"+randomID(), "/parachute", "sleep", "0")
				if out, err := exec.Command(ctr, a...).CombinedOutput(); err != nil {
					b.Fatalf("ctr %v: %v\n%s", a, err, out)
				}
				samples = append(samples, time.Since(start))
			}
			reportPercentiles(b, samples)
		})
	}
}
