package runtime

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/test/ctrd"
)

// waitReady waits until the pool holds a sandbox for s.
func waitReady(t testing.TB, p *Pool, s Spec) {
	t.Helper()
	for i := 0; i < 300 && p.Ready(s) == 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if p.Ready(s) == 0 {
		t.Fatal("the pool was not refilled")
	}
}

func poolSpec(t testing.TB, id string, readOnly bool) (Spec, string) {
	t.Helper()
	ws := t.TempDir()
	sock := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "hello.txt"), []byte("hello from "+id), 0o644); err != nil {
		t.Fatal(err)
	}
	return Spec{SessionID: id, Owner: "local:" + id, Image: probeRef, Workspace: ws, SocketDir: sock,
		Profile: limitsProfile("default", readOnly)}, ws
}

// A claimed pooled sandbox sees exactly its session's workspace, with the
// same walls as a cold one: .parachute read-only, the workspace read-only
// when the profile says so, and nothing of the staging left afterwards.
func TestPoolClaimSeesOnlyItsWorkspace(t *testing.T) {
	rt := testRuntime(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	pool, err := rt.NewPool(PoolOptions{Dir: filepath.Join(dir, "pool")})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(ctx)

	first, _ := poolSpec(t, "pool-a", false)
	cold, err := pool.Start(ctx, first) // unknown profile: cold, teaches the pool
	if err != nil {
		t.Fatal(err)
	}
	defer cold.Stop(ctx)
	waitReady(t, pool, first)

	cases := []struct {
		name     string
		readOnly bool
	}{{"writable", false}, {"read-only", true}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, ws := poolSpec(t, "pool-"+strings.ReplaceAll(tc.name, "-", ""), tc.readOnly)
			waitReady(t, pool, s)
			sb, err := pool.Start(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := sb.(*poolSandbox); !ok {
				t.Fatalf("got a cold sandbox %T, want a pooled one", sb)
			}
			_, out, _ := run(t, sb, "/bin/cat", "/workspace/hello.txt")
			if out != "hello from "+s.SessionID {
				t.Fatalf("the sandbox sees %q in /workspace/hello.txt", out)
			}
			res, _, _ := run(t, sb, "/bin/sh", "-c", "echo x > /workspace/new.txt")
			_, statErr := os.Stat(filepath.Join(ws, "new.txt"))
			if tc.readOnly && (res.ExitCode == 0 || statErr == nil) {
				t.Error("a read-only workspace was written")
			}
			if !tc.readOnly && (res.ExitCode != 0 || statErr != nil) {
				t.Errorf("a writable workspace could not be written: exit %d, %v", res.ExitCode, statErr)
			}
			res, _, _ = run(t, sb, "/bin/sh", "-c", "mkdir -p /workspace/.parachute/hooks && echo x > /workspace/.parachute/hooks/pre-session.sh")
			if res.ExitCode == 0 {
				t.Error("a hook was created through a pooled sandbox")
			}
			if _, err := os.Stat(filepath.Join(ws, ".parachute", "hooks")); err == nil {
				t.Error("a hooks folder appeared on the host")
			}
			infos, _ := rt.List(ctx)
			var owners []string
			for _, i := range infos {
				owners = append(owners, i.SessionID)
			}
			sort.Strings(owners)
			if !strings.Contains(strings.Join(owners, " "), s.SessionID) {
				t.Errorf("the claimed sandbox is not labelled with its session: %v", owners)
			}
			stage := sb.(*poolSandbox).stage
			if err := sb.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(stage); err == nil {
				t.Errorf("staging folder %s left behind", stage)
			}
			if b, err := os.ReadFile(filepath.Join(ws, "hello.txt")); err != nil || !strings.HasPrefix(string(b), "hello") {
				t.Fatalf("the workspace was harmed by the cleanup: %q %v", b, err)
			}
		})
	}
}

// BenchmarkPooledFirstExec measures a new session's first turn with a
// warm pool: claim (attach the folders, label) plus the first exec.
// BenchmarkPooledFirstExec: a new session's claim of a pooled sandbox and
// its first turn, for each way a turn starts (init, runc-exec), in one
// run. claim-p50-ms is the claim alone.
func BenchmarkPooledFirstExec(b *testing.B) {
	for _, via := range execPaths {
		b.Run(via.name, func(b *testing.B) { benchPooledFirstExec(b, via.noInit) })
	}
}

func benchPooledFirstExec(b *testing.B, noInit bool) {
	rt := testRuntimeVia(b, noInit)
	ctx := context.Background()
	pool, err := rt.NewPool(PoolOptions{Dir: filepath.Join(b.TempDir(), "pool")})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close(ctx)
	warm, _ := poolSpec(b, "bench-warm", false)
	sb, err := pool.Start(ctx, warm)
	if err != nil {
		b.Fatal(err)
	}
	sb.Stop(ctx)
	lat := make([]time.Duration, 0, b.N)
	claims := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, _ := poolSpec(b, "bench-"+randomID(), false)
		waitReady(b, pool, s)
		b.StartTimer()
		start := time.Now()
		sb, err := pool.Start(ctx, s)
		if err != nil {
			b.Fatal(err)
		}
		claimed := time.Since(start)
		if _, err := sb.Exec(ctx, Turn{Args: []string{"/parachute", "sleep", "0"}}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		claims = append(claims, claimed)
		b.StopTimer()
		assertExecPath(b, sb, noInit)
		sb.Stop(ctx)
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(claims, func(i, j int) bool { return claims[i] < claims[j] })
	b.ReportMetric(float64(claims[len(claims)/2].Microseconds())/1000, "claim-p50-ms")
	reportPercentiles(b, lat)
}
