package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the cio copy goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProcess starts ps in a fresh sandbox on a fresh workspace and
// closes it at cleanup.
func startProcess(t testing.TB, rt *Containerd, ps ProcessSpec, mod ...func(*Spec)) (*Process, Spec) {
	t.Helper()
	sessionN++
	s := Spec{
		SessionID: filepath.Base(t.TempDir()) + "-p" + string(rune('a'+sessionN%26)),
		Owner:     "local:tester",
		Image:     probeRef,
		Workspace: t.TempDir(),
		Profile:   limitsProfile("strict", false),
	}
	for _, m := range mod {
		m(&s)
	}
	if ps.Upstream == "" {
		ps.Upstream = "test-upstream"
	}
	p, err := rt.StartProcess(context.Background(), s, ps)
	if err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p, s
}

// waitDone fails the test if the process has not ended within a minute
// (a bound on a hang, not a wait for an event).
func waitDone(t testing.TB, p *Process) error {
	t.Helper()
	select {
	case <-p.Done():
		return p.Wait()
	case <-time.After(time.Minute):
		t.Fatalf("process %s still running after a minute", p.ID())
		return nil
	}
}

func TestProcess(t *testing.T) {
	rt := testRuntime(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static not installed") // testRuntime already failed under CI
	}
	t.Run("stdio round trip, labels, exit tears down", func(t *testing.T) {
		var errb lockedBuffer
		p, s := startProcess(t, rt, ProcessSpec{Upstream: "echo.v1", Args: []string{"/bin/sh", "-c", "id -u >&2; exec cat"}, Stderr: &errb})
		infos, err := rt.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, i := range infos {
			if i.ID == p.ID() {
				found = true
				if i.Kind != KindUpstream || i.Upstream != "echo.v1" || i.SessionID != s.SessionID || i.Owner != "local:tester" {
					t.Errorf("info %+v", i)
				}
			}
		}
		if !found || !strings.HasPrefix(p.ID(), "parachute-up-") {
			t.Fatalf("List does not show %s: %+v", p.ID(), infos)
		}
		r := bufio.NewReader(p.Stdout())
		for _, msg := range []string{"first line\n", `{"jsonrpc":"2.0","id":1}` + "\n"} {
			if _, err := io.WriteString(p.Stdin(), msg); err != nil {
				t.Fatal(err)
			}
			got, err := r.ReadString('\n')
			if err != nil || got != msg {
				t.Fatalf("read %q, %v; want %q", got, err, msg)
			}
		}
		p.Stdin().Close() // cat exits on EOF
		if err := waitDone(t, p); err != nil {
			t.Errorf("Wait after stdin EOF: %v", err)
		}
		if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
			t.Errorf("stdout after exit: %q, %v (want EOF)", rest, err)
		}
		if got := strings.TrimSpace(errb.String()); got != "65534" {
			t.Errorf("stderr (id -u) = %q, want 65534", got)
		}
		assertGone(t, rt, p.ID())
		if _, err := p.Stdin().Write([]byte("late")); err == nil {
			t.Error("write to stdin after exit succeeded")
		}
		if err := p.Close(); err != nil {
			t.Errorf("Close after exit: %v", err)
		}
	})
	t.Run("exit status", func(t *testing.T) {
		p, _ := startProcess(t, rt, ProcessSpec{Args: []string{"/bin/sh", "-c", "exit 3"}})
		var ee *ExitError
		if err := waitDone(t, p); !errors.As(err, &ee) || ee.Code != 3 {
			t.Errorf("Wait = %v, want exit status 3", err)
		}
		assertGone(t, rt, p.ID())
	})
	t.Run("no output cap", func(t *testing.T) {
		const n = 3 * DefaultOutputLimit
		p, _ := startProcess(t, rt, ProcessSpec{Args: []string{"/bin/head", "-c", "3145728", "/dev/zero"}})
		got, err := io.Copy(io.Discard, p.Stdout())
		if err != nil || got != n {
			t.Errorf("read %d bytes, %v; want %d", got, err, n)
		}
		if err := waitDone(t, p); err != nil {
			t.Errorf("Wait: %v", err)
		}
	})
	t.Run("no turn timeout", func(t *testing.T) {
		p, _ := startProcess(t, rt, ProcessSpec{Args: []string{"/bin/sh", "-c", "sleep 1; echo alive"}},
			func(s *Spec) { s.Profile.TurnTimeout = 100 * time.Millisecond })
		out, err := io.ReadAll(p.Stdout())
		if err != nil || string(out) != "alive\n" {
			t.Errorf("stdout %q, %v: the process did not outlive the turn timeout", out, err)
		}
		if err := waitDone(t, p); err != nil {
			t.Errorf("Wait: %v", err)
		}
	})
	t.Run("close kills every process", func(t *testing.T) {
		p, _ := startProcess(t, rt, ProcessSpec{Args: []string{"/bin/sh", "-c", "sleep 300 & sleep 301 & echo up; exec cat"}})
		if line, err := bufio.NewReader(p.Stdout()).ReadString('\n'); err != nil || line != "up\n" {
			t.Fatalf("read %q, %v", line, err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := p.Wait(); !errors.Is(err, ErrStopped) {
			t.Errorf("Wait after Close = %v, want ErrStopped", err)
		}
		assertGone(t, rt, p.ID())
		if err := p.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := p.Stdin().Write([]byte("x")); !errors.Is(err, ErrStopped) {
			t.Errorf("write after Close = %v, want ErrStopped", err)
		}
	})
	t.Run("walls as for a session", func(t *testing.T) {
		p, s := startProcess(t, rt, ProcessSpec{Args: []string{"/bin/sh", "-c",
			"touch /workspace/ok && echo ok; touch /workspace/.parachute/x 2>&1; touch /etc/x 2>&1; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs|Seccomp):'"}})
		out, _ := io.ReadAll(p.Stdout())
		waitDone(t, p)
		for _, want := range []string{"ok\n", "/workspace/.parachute/x: Read-only file system", "/etc/x: Read-only file system",
			"CapEff:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if _, err := os.Stat(filepath.Join(s.Workspace, ".parachute", "x")); err == nil {
			t.Error(".parachute/x written on the host")
		}
		if _, err := os.Stat(filepath.Join(s.Workspace, "ok")); err != nil {
			t.Errorf("workspace write did not reach the host: %v", err)
		}
	})
	t.Run("orphan removal covers upstreams", func(t *testing.T) {
		p, _ := startProcess(t, rt, ProcessSpec{Args: []string{"/bin/cat"}})
		rt2, err := NewContainerd(context.Background(), rt.Options())
		if err != nil {
			t.Fatal(err)
		}
		defer rt2.Close()
		if n, err := rt2.RemoveOrphans(context.Background()); err != nil || n < 1 {
			t.Fatalf("RemoveOrphans = %d, %v", n, err)
		}
		if err := waitDone(t, p); err == nil {
			t.Error("Wait = nil after the sandbox was removed from under the process")
		}
		assertGone(t, rt, p.ID())
	})
}

func TestStartProcessRefusals(t *testing.T) {
	rt := testRuntime(t)
	good := Spec{SessionID: "proc-refusals", Image: probeRef, Workspace: t.TempDir(), Profile: limitsProfile("strict", true)}
	before, err := rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		spec func(*Spec)
		ps   ProcessSpec
		is   error
	}{
		"no command":         {ps: ProcessSpec{Upstream: "fs"}, is: ErrInvalidSpec},
		"empty name":         {ps: ProcessSpec{Args: []string{"/bin/cat"}}, is: ErrInvalidSpec},
		"name with slash":    {ps: ProcessSpec{Upstream: "../fs", Args: []string{"/bin/cat"}}, is: ErrInvalidSpec},
		"name with newline":  {ps: ProcessSpec{Upstream: "fs\nkind=session", Args: []string{"/bin/cat"}}, is: ErrInvalidSpec},
		"name too long":      {ps: ProcessSpec{Upstream: strings.Repeat("a", 65), Args: []string{"/bin/cat"}}, is: ErrInvalidSpec},
		"bad session":        {spec: func(s *Spec) { s.SessionID = "a/b" }, ps: ProcessSpec{Upstream: "fs", Args: []string{"/bin/cat"}}, is: ErrInvalidSpec},
		"no limits":          {spec: func(s *Spec) { s.Profile.PIDs = 0 }, ps: ProcessSpec{Upstream: "fs", Args: []string{"/bin/cat"}}, is: ErrProfile},
		"direct runtime":     {spec: func(s *Spec) { s.Profile.Runtime = "direct" }, ps: ProcessSpec{Upstream: "fs", Args: []string{"/bin/cat"}}, is: ErrProfile},
		"system workspace":   {spec: func(s *Spec) { s.Workspace = "/etc" }, ps: ProcessSpec{Upstream: "fs", Args: []string{"/bin/cat"}}, is: ErrInvalidSpec},
		"missing image":      {spec: func(s *Spec) { s.Image = "parachute.local/nonesuch:1" }, ps: ProcessSpec{Upstream: "fs", Args: []string{"/bin/cat"}}, is: ErrImageNotFound},
		"command not in img": {ps: ProcessSpec{Upstream: "fs", Args: []string{"/usr/bin/nonesuch"}}},
	} {
		t.Run(name, func(t *testing.T) {
			s := good
			if tc.spec != nil {
				tc.spec(&s)
			}
			p, err := rt.StartProcess(context.Background(), s, tc.ps)
			if err == nil {
				p.Close()
				t.Fatal("started")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err %v, want %v", err, tc.is)
			}
		})
	}
	after, err := rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("refused starts left containers behind: %d before, %d after", len(before), len(after))
	}
}
