package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

func directProfile() engine.SessionProfile {
	return engine.SessionProfile{Runtime: "direct", Hooks: true, TurnTimeout: time.Minute}
}

func TestDirectRefusesSandboxedProfile(t *testing.T) {
	d := NewDirect(DirectOptions{})
	_, err := d.Start(context.Background(), Spec{SessionID: "s", Workspace: t.TempDir(), Profile: limitsProfile("strict", true)})
	if !errors.Is(err, ErrProfile) {
		t.Fatalf("err %v, want ErrProfile", err)
	}
}

func TestDirectExec(t *testing.T) {
	t.Setenv("PARACHUTE_TEST_SECRET", "hunter2")
	d := NewDirect(DirectOptions{})
	ws := t.TempDir()
	sb, err := d.Start(context.Background(), Spec{SessionID: "d1", Owner: "local:me", Workspace: ws, Profile: directProfile(), Env: []string{"A=1"}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "pwd; env; cat; exit 3"}, Stdin: strings.NewReader("in"), Stdout: &out})
	if err != nil || res.ExitCode != 3 {
		t.Fatalf("%+v %v", res, err)
	}
	real, _ := filepath.EvalSymlinks(ws)
	if !strings.HasPrefix(out.String(), real+"\n") || !strings.Contains(out.String(), "A=1") || !strings.HasSuffix(out.String(), "in") {
		t.Errorf("output %q", out.String())
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Error("the gateway's environment leaked into a direct turn")
	}
	infos, _ := d.List(context.Background())
	if len(infos) != 1 || infos[0].SessionID != "d1" || infos[0].Owner != "local:me" {
		t.Errorf("List %+v", infos)
	}

	// Timeout kills the whole process group, background children too.
	pidfile := filepath.Join(ws, "bg.pid")
	res, err = sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "sleep 300 & echo $! > " + pidfile + "; sleep 300"}, Timeout: 300 * time.Millisecond})
	if err != nil || !res.TimedOut {
		t.Fatalf("%+v %v", res, err)
	}
	b, _ := os.ReadFile(pidfile)
	if pid := strings.TrimSpace(string(b)); pid != "" {
		time.Sleep(100 * time.Millisecond)
		if st, err := os.ReadFile("/proc/" + pid + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
			t.Errorf("background child %s survived the timeout", pid)
		}
	}

	var big bytes.Buffer
	res, _ = sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "head -c 100000 /dev/zero"}, Stdout: &big, OutputLimit: 10})
	if !res.Truncated || big.Len() != 10 {
		t.Errorf("cap: %+v, %d bytes", res, big.Len())
	}
	if err := sb.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/true"}}); !errors.Is(err, ErrStopped) {
		t.Errorf("exec after stop: %v", err)
	}
	if infos, _ := d.List(context.Background()); len(infos) != 0 {
		t.Errorf("List after stop %+v", infos)
	}
}

func writeHook(t *testing.T, ws, body string, mode os.FileMode) {
	t.Helper()
	dir := filepath.Join(ws, ".parachute", "hooks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pre-session.sh"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "pre-session.sh"), mode)
}

func TestPreSessionHook(t *testing.T) {
	ctx := context.Background()
	ws := t.TempDir()
	ran, _, err := RunPreSessionHook(ctx, ws, directProfile(), time.Second)
	if ran || err != nil {
		t.Fatalf("no hook: ran %v err %v", ran, err)
	}
	writeHook(t, ws, "echo hello from $PARACHUTE_WORKSPACE\n", 0o644)
	for name, p := range map[string]engine.SessionProfile{
		"sandboxed":        {Runtime: "containerd", Hooks: true},
		"direct, no hooks": {Runtime: "direct", Hooks: false},
	} {
		if ran, _, err := RunPreSessionHook(ctx, ws, p, time.Second); ran || !errors.Is(err, ErrHookRefused) {
			t.Errorf("%s: ran %v err %v, want refused", name, ran, err)
		}
	}
	ran, out, err := RunPreSessionHook(ctx, ws, directProfile(), time.Second)
	if !ran || err != nil || !strings.HasPrefix(string(out), "hello from /") {
		t.Errorf("ran %v err %v out %q", ran, err, out)
	}
	writeHook(t, ws, "exit 4\n", 0o644)
	if ran, _, err := RunPreSessionHook(ctx, ws, directProfile(), time.Second); !ran || err == nil {
		t.Errorf("failing hook: ran %v err %v", ran, err)
	}
	writeHook(t, ws, "sleep 30\n", 0o644)
	if ran, _, err := RunPreSessionHook(ctx, ws, directProfile(), 200*time.Millisecond); !ran || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow hook: ran %v err %v", ran, err)
	}
	writeHook(t, ws, "echo hi\n", 0o666)
	if _, _, err := RunPreSessionHook(ctx, ws, directProfile(), time.Second); !errors.Is(err, ErrHookRefused) {
		t.Errorf("world-writable hook: %v", err)
	}
	ws2 := t.TempDir()
	os.MkdirAll(filepath.Join(ws2, ".parachute"), 0o755)
	os.Symlink(filepath.Join(ws, ".parachute", "hooks"), filepath.Join(ws2, ".parachute", "hooks"))
	if _, _, err := RunPreSessionHook(ctx, ws2, directProfile(), time.Second); !errors.Is(err, ErrHookRefused) {
		t.Errorf("symlinked hooks dir: %v", err)
	}
}
