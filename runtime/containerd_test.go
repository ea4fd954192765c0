package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/parachute-gateway/parachute/test/ctrd"
)

type probeReport struct {
	Profile string `json:"profile"`
	Results []struct {
		Check  string `json:"check"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"results"`
}

// TestProbe runs test/probe inside sandboxes under each profile and
// asserts every wall it checks.
func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		class    string
		seccomp  string
		readOnly bool
		noInit   bool // runc exec'd turns (gVisor's only way)
	}{
		{ClassRunc, "default", true, false}, {ClassRunc, "strict", true, false}, {ClassRunc, "strict", false, false},
		{ClassRunc, "default", true, true}, {ClassRunc, "strict", false, true},
		{ClassGVisor, "default", true, true}, {ClassGVisor, "strict", false, true},
	} {
		t.Run(fmt.Sprintf("%s/%s/ro=%v/%s", tc.class, tc.seccomp, tc.readOnly, execPathName(tc.noInit)), func(t *testing.T) {
			rt := testRuntimeVia(t, tc.noInit)
			p := limitsProfile(tc.seccomp, tc.readOnly)
			p.RuntimeClass = tc.class
			needClass(t, rt, tc.class)
			sb, _ := startSandbox(t, rt, p)
			assertExecPath(t, sb, tc.noInit)
			args := []string{"/parachute", "check", "--profile", tc.seccomp, "--class", tc.class}
			if tc.class == ClassRunc {
				// Under gVisor the fork bomb and the memory hog end the
				// sandbox (see TestGVisorLimits), not just the process.
				args = append(args, "--pids", strconv.FormatInt(p.PIDs, 10), "--memory-mb", strconv.FormatInt(p.MemoryMB, 10))
			}
			if tc.readOnly {
				args = append(args, "--workspace-ro")
			}
			res, out, errOut := run(t, sb, args...)
			var rep probeReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("probe output (exit %d): %v\n%s\nstderr: %s", res.ExitCode, err, out, errOut)
			}
			want := []string{"kernel-" + tc.class, "seccomp-filter", "no-new-privs", "caps-capeff", "caps-capbnd", "non-root",
				"only-lo", "no-route-1.1.1.1:53", "no-route-10.0.0.1:80", "rootfs-ro", "hooks-ro",
				"proc-ro-/proc/sysrq-trigger", "proc-ro-/proc/sys/kernel/core_pattern", "ptrace-init-refused",
				"fds-0-1-2", "init-ctl-gone", "init-ctl-ro", "cgroup-of-init",
				"no-supplementary-groups", "rlimits", "signals-default", "umask-022", "init-survives-signals", "init-ctl-no-watch"}
			denied := []string{"unshare", "mount", "chroot", "setns", "keyctl", "bpf", "userfaultfd", "perf_event_open", "io_uring_setup"}
			switch tc.class {
			case ClassRunc:
				for _, d := range append(denied, "clone-newuser") {
					want = append(want, "eperm-"+d)
				}
				want = append(want, "pids-limit", "oom-killed", "no-uevent-socket-0xf", "no-uevent-socket-0x10000000f",
					"mounts-only-ours", "init-ctl-mount-ro", "init-fds-refused")
				if tc.seccomp == "default" {
					want = append(want, "default-allows-netlink-route")
				}
				if tc.seccomp == "strict" {
					want = append(want, "strict-eperm-ptrace", "strict-eperm-process_vm_readv", "strict-eperm-personality",
						"strict-no-socket-AF_INET", "strict-no-socket-AF_INET6", "strict-no-socket-AF_NETLINK")
				}
			case ClassGVisor:
				// What gVisor answers differently: docs/runtime.md.
				for _, d := range denied {
					want = append(want, "refused-"+d)
				}
				want = append(want, "gvisor-clone-newuser", "gvisor-uevent-socket-0xf", "gvisor-init-fds-listed")
			}
			if tc.readOnly {
				want = append(want, "workspace-ro")
			} else {
				want = append(want, "workspace-rw")
			}
			seen := map[string]bool{}
			for _, r := range rep.Results {
				seen[r.Check] = true
				if !r.OK {
					t.Errorf("%s: %s", r.Check, r.Detail)
				} else {
					t.Logf("ok %s: %s", r.Check, r.Detail)
				}
			}
			for _, w := range want {
				if !seen[w] {
					t.Errorf("probe did not report %s", w)
				}
			}
			if res.ExitCode != 0 && !t.Failed() {
				t.Errorf("probe exit %d, stderr %s", res.ExitCode, errOut)
			}
			if tc.class == ClassRunc {
				// Under contention the probe may never reach the 0.5 CPU
				// quota, and then nothing is throttled; only a spin that
				// got close to it says something.
				var ratio float64
				for _, r := range rep.Results {
					if r.Check == "cpu-ratio" {
						fmt.Sscan(r.Detail, &ratio)
					}
				}
				if ratio > 0.4 {
					assertThrottled(t, rt, sb.ID())
				} else {
					t.Logf("spin got %.2f CPU (host busy): throttling not checked", ratio)
				}
			}
			if err := sb.Stop(context.Background()); err != nil {
				t.Fatalf("stop: %v", err)
			}
			assertGone(t, rt, sb.ID())
		})
	}
}

// assertThrottled checks from the host that the CPU quota bit: the probe
// spins for a second under a 0.5 CPU quota.
func assertThrottled(t *testing.T, rt *Containerd, id string) {
	t.Helper()
	for _, p := range []string{"/sys/fs/cgroup/cpu/" + rt.opts.Namespace + "/" + id + "/cpu.stat", "/sys/fs/cgroup/" + rt.opts.Namespace + "/" + id + "/cpu.stat"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "nr_throttled "); ok {
				if n, _ := strconv.Atoi(v); n == 0 {
					t.Errorf("%s: nr_throttled 0 after spinning under a quota", p)
				}
				return
			}
		}
	}
	t.Logf("cpu.stat not readable on this host; the quota is checked in the spec tests")
}

func assertGone(t *testing.T, rt *Containerd, id string) {
	t.Helper()
	ctx := rt.ns(context.Background())
	if _, err := rt.Client().LoadContainer(ctx, id); !errdefs.IsNotFound(err) {
		t.Errorf("container %s still there after Stop: %v", id, err)
	}
	if _, err := rt.Client().SnapshotService(rt.opts.Snapshotter).Stat(ctx, id); !errdefs.IsNotFound(err) {
		t.Errorf("snapshot %s still there after Stop: %v", id, err)
	}
	infos, err := rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range infos {
		if i.ID == id {
			t.Errorf("List still shows %s", id)
		}
	}
}

func TestExecBasics(t *testing.T) {
	for _, via := range execPaths {
		t.Run(via.name, func(t *testing.T) { testExecBasics(t, via.noInit) })
	}
}

func testExecBasics(t *testing.T, noInit bool) {
	rt := testRuntimeVia(t, noInit)
	sb, _ := startSandbox(t, rt, limitsProfile("strict", false))
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	// The channel survives timeouts and cancellations.
	defer assertExecPath(t, sb, noInit)
	t.Run("exit code", func(t *testing.T) {
		res, _, _ := run(t, sb, "/bin/sh", "-c", "exit 7")
		if res.ExitCode != 7 || res.TimedOut || res.Truncated {
			t.Errorf("result %+v, want exit 7", res)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		var out bytes.Buffer
		res, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/cat"}, Stdin: strings.NewReader("hello sandbox"), Stdout: &out})
		if err != nil || res.ExitCode != 0 || out.String() != "hello sandbox" {
			t.Errorf("cat: %+v %v %q", res, err, out.String())
		}
	})
	t.Run("output cap", func(t *testing.T) {
		var out bytes.Buffer
		res, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "head -c 3000000 /dev/zero; echo done >&2"}, Stdout: &out, OutputLimit: 1000})
		if err != nil || !res.Truncated || out.Len() != 1000 || res.ExitCode != 0 {
			t.Errorf("result %+v err %v, %d bytes kept", res, err, out.Len())
		}
	})
	t.Run("identity", func(t *testing.T) {
		_, out, _ := run(t, sb, "/bin/id")
		if !strings.Contains(out, "uid=65534") || strings.Contains(out, "groups=0") {
			t.Errorf("id: %s", out)
		}
	})
	t.Run("timeout sweeps the sandbox", func(t *testing.T) {
		res, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "sleep 300 & sleep 301 & sleep 302"}, Timeout: 500 * time.Millisecond})
		if err != nil || !res.TimedOut {
			t.Fatalf("result %+v err %v, want timed out", res, err)
		}
		task := sb.(*ctrSandbox).task
		pids, err := task.Pids(rt.ns(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) != 1 {
			t.Errorf("%d processes left after the timed-out turn, want only PID 1", len(pids))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := sb.Exec(ctx, Turn{Args: []string{"/bin/sleep", "300"}})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want deadline exceeded", err)
		}
	})
	t.Run("zombies reaped", func(t *testing.T) {
		run(t, sb, "/bin/sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.01 &) ; done; sleep 0.2")
		time.Sleep(200 * time.Millisecond)
		_, out, _ := run(t, sb, "/bin/sh", "-c", "grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l")
		if strings.TrimSpace(out) != "0" {
			t.Errorf("%s zombies left", strings.TrimSpace(out))
		}
	})
}

func TestStopTracedPID1(t *testing.T) {
	rt := testRuntime(t)
	for _, init := range [][]string{{"/parachute", "traceme-init"}, DefaultInit} {
		t.Run(init[1], func(t *testing.T) {
			sb, _ := startSandbox(t, rt, limitsProfile("default", true), func(s *Spec) { s.Init = init })
			res, err := sb.Exec(context.Background(), Turn{Args: []string{"/parachute", "traceme"}, Timeout: time.Second})
			if err != nil || !res.TimedOut {
				t.Errorf("traceme turn: %+v %v", res, err)
			}
			if err := sb.Stop(context.Background()); err != nil {
				t.Fatalf("stop: %v", err)
			}
			assertGone(t, rt, sb.ID())
		})
	}
}

func TestListAndOrphans(t *testing.T) {
	rt := testRuntime(t)
	a, sa := startSandbox(t, rt, limitsProfile("strict", true))
	b, _ := startSandbox(t, rt, limitsProfile("strict", true))
	infos, err := rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, i := range infos {
		if i.ID == a.ID() || i.ID == b.ID() {
			found++
			if i.ID == a.ID() && (i.SessionID != sa.SessionID || i.Owner != "local:tester" || i.Created.IsZero()) {
				t.Errorf("info %+v", i)
			}
		}
	}
	if found != 2 {
		t.Fatalf("List found %d of 2: %+v", found, infos)
	}
	// A second gateway start: everything labelled is an orphan.
	rt2, err := NewContainerd(context.Background(), rt.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	n, err := rt2.RemoveOrphans(context.Background())
	if err != nil || n < 2 {
		t.Fatalf("RemoveOrphans = %d, %v", n, err)
	}
	assertGone(t, rt, a.ID())
	assertGone(t, rt, b.ID())
	if err := a.Stop(context.Background()); err != nil {
		t.Errorf("Stop after orphan removal: %v", err)
	}
}

func TestStartRefusals(t *testing.T) {
	rt := testRuntime(t)
	ws := t.TempDir()
	good := Spec{SessionID: "refusals", Image: probeRef, Workspace: ws, Profile: limitsProfile("strict", true)}
	cases := map[string]func(*Spec){
		"bad id":          func(s *Spec) { s.SessionID = "../x" },
		"unknown seccomp": func(s *Spec) { s.Profile.Seccomp = "nonesuch" },
		"no memory limit": func(s *Spec) { s.Profile.MemoryMB = 0 },
		"direct runtime":  func(s *Spec) { s.Profile.Runtime = "direct" },
		"root workspace":  func(s *Spec) { s.Workspace = "/" },
		"relative ws":     func(s *Spec) { s.Workspace = "ws" },
		"missing image":   func(s *Spec) { s.Image = "parachute.local/nonesuch:1" },
	}
	for name, mut := range cases {
		s := good
		mut(&s)
		if sb, err := rt.Start(context.Background(), s); err == nil {
			sb.Stop(context.Background())
			t.Errorf("%s: started", name)
		}
	}
	// A .parachute symlink would bind a host path of the attacker's choice.
	good.Workspace = t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(good.Workspace, ".parachute")); err != nil {
		t.Fatal(err)
	}
	if sb, err := rt.Start(context.Background(), good); !errors.Is(err, ErrInvalidSpec) {
		if sb != nil {
			sb.Stop(context.Background())
		}
		t.Errorf(".parachute symlink: err %v", err)
	}
	if _, err := rt.Start(context.Background(), Spec{SessionID: "x", Image: "parachute.local/nonesuch:1", Workspace: t.TempDir(), Profile: limitsProfile("strict", true)}); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("missing image: %v", err)
	}
}

// TestStopDuringTurn: Stop does not wait for a running turn; the turn ends
// with the sandbox.
func TestStopDuringTurn(t *testing.T) {
	for _, via := range execPaths {
		t.Run(via.name, func(t *testing.T) { testStopDuringTurn(t, via.noInit) })
	}
}

func testStopDuringTurn(t *testing.T, noInit bool) {
	rt := testRuntimeVia(t, noInit)
	sb, _ := startSandbox(t, rt, limitsProfile("strict", true))
	assertExecPath(t, sb, noInit)
	done := make(chan error, 1)
	go func() {
		_, err := sb.Exec(context.Background(), Turn{Args: []string{"/parachute", "sleep", "300"}})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := sb.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("turn still running 30s after Stop")
	}
	assertGone(t, rt, sb.ID())
	if _, err := sb.Exec(context.Background(), Turn{Args: []string{"/parachute", "sleep", "0"}}); !errors.Is(err, ErrStopped) {
		t.Errorf("exec after stop: %v", err)
	}
}

// TestInitCannotBeFrozen: a turn that tries to PTRACE_SEIZE and interrupt
// PID 1 (allowed by seccomp under default) is refused, so the timeout
// sweep still runs and nothing of the timed-out turn is there at the next
// turn.
func TestInitCannotBeFrozen(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	for _, tc := range []struct {
		class, seccomp string
		noInit         bool
	}{
		{ClassRunc, "default", false}, {ClassRunc, "strict", false},
		{ClassRunc, "default", true}, {ClassRunc, "strict", true}, {ClassGVisor, "default", true},
	} {
		t.Run(fmt.Sprintf("%s/%s/%s", tc.class, tc.seccomp, execPathName(tc.noInit)), func(t *testing.T) {
			rt := testRuntimeVia(t, tc.noInit)
			needClass(t, rt, tc.class)
			p := limitsProfile(tc.seccomp, true)
			p.RuntimeClass = tc.class
			sb, _ := startSandbox(t, rt, p)
			var out bytes.Buffer
			res, err := sb.Exec(context.Background(), Turn{
				Args:   []string{"/bin/sh", "-c", "/parachute seize-init & sleep 300 & wait"},
				Stdout: &out, Timeout: time.Second,
			})
			if err != nil || !res.TimedOut {
				t.Fatalf("turn: %+v %v, want timed out", res, err)
			}
			if !strings.Contains(out.String(), "seize-init: EPERM") {
				t.Errorf("PTRACE_SEIZE of PID 1: %q, want EPERM", out.String())
			}
			// The next turn sees PID 1 and itself, nothing else.
			_, procs, _ := run(t, sb, "/bin/sh", "-c", "echo /proc/[0-9]*")
			if n := len(strings.Fields(procs)); n != 2 {
				t.Errorf("processes at the next turn: %s, want PID 1 and this shell", procs)
			}
		})
	}
}
