package runtime

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/test/ctrd"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(envHoldSandbox); addr != "" {
		holdSandbox(addr) // never returns
	}
	ctrd.Main(m, func() {
		if probeBin != "" && probeErr == nil {
			os.RemoveAll(filepath.Dir(probeBin))
		}
	})
}

// probeRef is the test image: test/probe as /parachute, plus busybox.
const probeRef = "parachute.local/probe:test"

var (
	probeOnce sync.Once
	probeBin  string
	probeErr  error
)

// buildProbe compiles test/probe statically, once per test binary.
func buildProbe(t testing.TB) string {
	t.Helper()
	probeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "probe")
		if err != nil {
			probeErr = err
			return
		}
		probeBin = filepath.Join(dir, "probe")
		gobin := filepath.Join(goruntime.GOROOT(), "bin", "go")
		cmd := exec.Command(gobin, "build", "-trimpath", "-o", probeBin, "../test/probe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			probeErr = err
			probeBin = out.String()
		}
	})
	if probeErr != nil {
		t.Fatalf("build probe: %v\n%s", probeErr, probeBin)
	}
	return probeBin
}

// testRuntime returns a runtime on the test containerd with the probe
// image imported.
func testRuntime(t testing.TB, mod ...func(*ContainerdOptions)) *Containerd {
	t.Helper()
	addr := ctrd.Start(t)
	ctx := context.Background()
	opts := ContainerdOptions{Address: addr, SeccompDir: testSeccompDir, StopTimeout: 5 * time.Second}
	// PARACHUTE_TEST_EXEC=runc runs every test that does not choose its
	// exec path with runc exec'd turns (the fallback).
	opts.NoInitExec = os.Getenv("PARACHUTE_TEST_EXEC") == "runc"
	for _, m := range mod {
		m(&opts)
	}
	rt, err := NewContainerd(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	importProbe(t, rt)
	return rt
}

// importProbe imports the probe image unless it is there already.
func importProbe(t testing.TB, rt *Containerd) {
	t.Helper()
	ctx := context.Background()
	if _, err := rt.Client().GetImage(rt.ns(ctx), probeRef); err == nil {
		return
	}
	o := BuildOptions{Binary: buildProbe(t), Ref: probeRef, Out: filepath.Join(t.TempDir(), "probe.tar")}
	if _, err := os.Stat("/bin/busybox"); err == nil {
		o.Busybox = "/bin/busybox"
	}
	tar, err := BuildImage(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.ImportImage(ctx, tar, ""); err != nil {
		t.Fatal(err)
	}
}

func limitsProfile(seccomp string, readOnly bool) engine.SessionProfile {
	return engine.SessionProfile{
		Runtime: "containerd", Seccomp: seccomp, MemoryMB: 128, CPUs: 0.5,
		PIDs: 64, TmpfsMB: 16, ReadOnly: readOnly, TurnTimeout: time.Minute,
	}
}

var sessionN int

// startSandbox starts a sandbox with a fresh workspace and socket dir, and
// stops it at cleanup.
func startSandbox(t testing.TB, rt *Containerd, p engine.SessionProfile, mod ...func(*Spec)) (Sandbox, Spec) {
	t.Helper()
	sessionN++
	s := Spec{
		SessionID: filepath.Base(t.TempDir()) + "-" + string(rune('a'+sessionN%26)),
		Owner:     "local:tester",
		Image:     probeRef,
		Workspace: t.TempDir(),
		SocketDir: t.TempDir(),
		Profile:   p,
	}
	for _, m := range mod {
		m(&s)
	}
	// The vault's hooks folder exists, so the probe tests writing into it.
	if err := os.MkdirAll(filepath.Join(s.Workspace, ".parachute", "hooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	sb, err := rt.Start(context.Background(), s)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { sb.Stop(context.Background()) })
	return sb, s
}

func run(t testing.TB, sb Sandbox, args ...string) (Result, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	res, err := sb.Exec(context.Background(), Turn{Args: args, Stdout: &out, Stderr: &errb, Timeout: time.Minute})
	if err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	return res, out.String(), errb.String()
}

// needClass skips t (fails it under CI=true) when class cannot run here.
func needClass(t testing.TB, rt *Containerd, class string) {
	t.Helper()
	if err := rt.ClassAvailable(class); err != nil {
		ctrd.Unavailable(t, err.Error())
	}
}
