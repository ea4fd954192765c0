package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/runtime/sandboxinit"
	"github.com/parachute-gateway/parachute/test/ctrd"
)

// execPaths are the two ways a turn starts: through PID 1's control
// channel, and runc exec (the fallback, and gVisor's only way). The
// sandbox tests that run turns run them both ways.
var execPaths = []struct {
	name   string
	noInit bool
}{{"init", false}, {"runc-exec", true}}

func execPathName(noInit bool) string {
	if noInit {
		return "runc-exec"
	}
	return "init"
}

// testRuntimeVia is testRuntime with turns started one way.
func testRuntimeVia(t testing.TB, noInit bool) *Containerd {
	t.Helper()
	return testRuntime(t, func(o *ContainerdOptions) { o.NoInitExec = noInit })
}

// initUp reports whether sb's turns go through PID 1's channel.
func initUp(sb Sandbox) bool {
	var b *ctrSandbox
	switch s := sb.(type) {
	case *ctrSandbox:
		b = s
	case *poolSandbox:
		b = s.ctrSandbox
	}
	if b == nil || b.ictl == nil {
		return false
	}
	conn, _ := b.ictl.wait(context.Background())
	return conn != nil
}

// assertExecPath fails t unless sb's turns go the way the runtime says.
func assertExecPath(t testing.TB, sb Sandbox, noInit bool) {
	t.Helper()
	if up := initUp(sb); up == noInit {
		t.Errorf("init channel up: %v, want %v", up, !noInit)
	}
}

// The listener takes exactly one connection, keeps it only when its
// SO_PEERCRED pid is the sandbox's PID 1 and its uid the sandbox user's,
// and in every case closes and unlinks the socket at once, so nothing can
// connect afterwards (a turn that forges a connection first is refused;
// one that tries later finds no socket).
func TestInitListenerTakesOnlyPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		ctrd.Unavailable(t, "needs root (the control socket is handed to the sandbox user)")
	}
	self, uid := os.Getpid(), os.Getuid()
	for _, tc := range []struct {
		name     string
		pid, uid int
		dial     bool
		want     error // nil: kept
	}{
		{"PID 1 as the sandbox user", self, uid, true, nil},
		{"a process that is not PID 1", self + 1, uid, true, ErrInitRefused},
		{"PID 1 as another user", self, SandboxUID, true, ErrInitRefused},
		{"nobody connects", self, uid, false, errInitDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := os.MkdirTemp("", "ic") // short: a socket path has at most 107 bytes
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(base)
			c := &Containerd{opts: ContainerdOptions{InitStateDir: filepath.Join(base, "init")}}
			dir := c.initControlDir("parachute-x", ClassRunc)
			ic, err := c.listenInit("parachute-x", dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ic.close()
			sock := filepath.Join(dir, sandboxinit.ControlSocket)
			for _, m := range []struct {
				path string
				mode fs.FileMode
				uid  int
			}{{filepath.Dir(dir), fs.ModeDir | 0o700, 0}, {dir, fs.ModeDir | 0o711, 0}, {sock, fs.ModeSocket | 0o600, SandboxUID}} {
				fi, err := os.Lstat(m.path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != m.mode || int(fi.Sys().(*syscall.Stat_t).Uid) != m.uid {
					t.Errorf("%s: mode %v uid %d, want %v uid %d", m.path, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, m.mode, m.uid)
				}
			}
			var conn *net.UnixConn
			if tc.dial {
				conn, err = net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
			}
			ic.accept(tc.pid, tc.uid, 200*time.Millisecond)
			got, _ := ic.wait(context.Background())
			switch {
			case tc.want == nil && got == nil:
				t.Fatalf("refused: %v", ic.err)
			case tc.want != nil && (got != nil || !errors.Is(ic.err, tc.want)):
				t.Fatalf("kept %v, err %v; want refused with %v", got != nil, ic.err, tc.want)
			}
			if tc.want != nil && tc.dial {
				// The refused peer's connection is closed: it reads EOF.
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := conn.Read(make([]byte, 16)); n != 0 || err == nil {
					t.Errorf("refused peer read %d bytes, err %v; want EOF", n, err)
				}
			}
			if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket still there after the accept: %v", err)
			}
			if c2, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"}); err == nil {
				c2.Close()
				t.Error("a second connection was possible")
			}
			ic.close()
			if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("control dir left after close: %v", err)
			}
		})
	}
}

// A state folder that is a symlink is refused, never followed; one too
// long for a socket path is refused naming the limit.
func TestInitStateDirRefusesSymlink(t *testing.T) {
	if os.Geteuid() != 0 {
		ctrd.Unavailable(t, "needs root")
	}
	base := t.TempDir()
	if err := os.Symlink(t.TempDir(), filepath.Join(base, "init")); err != nil {
		t.Fatal(err)
	}
	c := &Containerd{opts: ContainerdOptions{InitStateDir: filepath.Join(base, "init")}}
	if _, err := c.listenInit("parachute-x", c.initControlDir("parachute-x", ClassRunc)); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("err %v, want the symlink refused", err)
	}
	c = &Containerd{opts: ContainerdOptions{InitStateDir: filepath.Join(base, strings.Repeat("d", 90))}}
	if _, err := c.listenInit("parachute-x", c.initControlDir("parachute-x", ClassRunc)); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "shorter InitStateDir") {
		t.Fatalf("err %v, want the long path refused", err)
	}
}

// One control folder per containerd, namespace and container; none for
// gVisor or with NoInitExec (the spec then has no control mount).
func TestInitControlOnlyForRunc(t *testing.T) {
	c := &Containerd{opts: ContainerdOptions{InitStateDir: "/run/x", Address: "/run/c.sock", Namespace: "ns"}}
	d := c.initControlDir("parachute-a", ClassRunc)
	if filepath.Dir(d) != "/run/x" || len(filepath.Base(d)) != 24 {
		t.Errorf("runc: %q, want /run/x/<24 hex>", d)
	}
	long := c.initControlDir("parachute-"+strings.Repeat("s", 64), ClassRunc)
	if n := len(filepath.Join(DefaultInitStateDir, filepath.Base(long), sandboxinit.ControlSocket)); n > maxSocketPath {
		t.Errorf("the longest session's socket path is %d bytes", n)
	}
	if c.initControlDir("parachute-b", ClassRunc) == d {
		t.Error("two containers share a control folder")
	}
	other := &Containerd{opts: ContainerdOptions{InitStateDir: "/run/x", Address: "/run/other.sock", Namespace: "ns"}}
	if d2 := other.initControlDir("parachute-a", ClassRunc); d2 == d {
		t.Errorf("two containerds share the control folder %q of one container ID", d)
	}
	if d := c.initControlDir("parachute-a", ClassGVisor); d != "" {
		t.Errorf("gvisor: %q, want none", d)
	}
	c.opts.NoInitExec = true
	if d := c.initControlDir("parachute-a", ClassRunc); d != "" {
		t.Errorf("NoInitExec: %q, want none", d)
	}
}

// In a sandbox: a turn started through init cannot reach the channel: the
// socket is gone, the mount is read-only, PID 1's descriptors are not
// readable through /proc/1/fd, and the turn holds only 0, 1 and 2.
func TestInitChannelUnreachableFromTurn(t *testing.T) {
	rt := testRuntimeVia(t, false)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	pool, err := rt.NewPool(PoolOptions{Dir: filepath.Join(t.TempDir(), "pool")})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())
	for _, mode := range []string{"default", "strict", "pooled"} {
		t.Run(mode, func(t *testing.T) {
			var sb Sandbox
			if mode == "pooled" {
				// Its PID 1 connected before the session existed.
				teach, _ := poolSpec(t, "init-teach", true)
				cold, err := pool.Start(context.Background(), teach)
				if err != nil {
					t.Fatal(err)
				}
				cold.Stop(context.Background())
				s, _ := poolSpec(t, "init-pooled", true)
				waitReady(t, pool, s)
				if sb, err = pool.Start(context.Background(), s); err != nil {
					t.Fatal(err)
				}
				defer sb.Stop(context.Background())
				if _, ok := sb.(*poolSandbox); !ok {
					t.Fatalf("got %T, want a pooled sandbox", sb)
				}
			} else {
				sb, _ = startSandbox(t, rt, limitsProfile(mode, true))
			}
			for _, tc := range []struct{ name, script, want string }{
				{"socket gone", "test -e " + InitDir + "/" + sandboxinit.ControlSocket + " && echo present || echo gone", "gone\n"},
				{"mount read-only", "mkdir " + InitDir + "/x 2>/dev/null && echo made || echo refused", "refused\n"},
				// /proc/net/unix lists the sandbox network namespace's
				// sockets: no listener (flags 00010000) and no abstract
				// name (@...) is left to connect to.
				{"no listening socket", "grep ' 00010000 ' /proc/net/unix || echo none", "none\n"},
				{"no abstract socket", "grep ' @' /proc/net/unix || echo none", "none\n"},
				{"PID 1's descriptors", "ls /proc/1/fd >/dev/null 2>&1 && echo listed || echo refused; cat /proc/1/fd/3 </dev/null >/dev/null 2>&1 && echo read || echo refused", "refused\nrefused\n"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, out, errOut := run(t, sb, "/bin/sh", "-c", tc.script)
					if out != tc.want {
						t.Errorf("%s: %q (stderr %q), want %q", tc.script, out, errOut, tc.want)
					}
				})
			}
			t.Run("own descriptors", func(t *testing.T) {
				// ls's own listing is 3.
				if _, out, _ := run(t, sb, "/bin/ls", "/proc/self/fd"); out != "0\n1\n2\n3\n" {
					t.Errorf("descriptors open in a turn: %q, want 0 1 2 (and ls's 3)", out)
				}
			})
			assertExecPath(t, sb, false)
		})
	}
}

// A turn that forks a background child holding stdout open is cut off
// after the drain; a fork bomb stops at the PID limit and is swept at the
// timeout; output over the cap is dropped. Both ways.
func TestTurnHostileBothPaths(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	for _, via := range execPaths {
		t.Run(via.name, func(t *testing.T) {
			rt := testRuntimeVia(t, via.noInit)
			sb, _ := startSandbox(t, rt, limitsProfile("strict", false))
			t.Run("background child holds the pipe", func(t *testing.T) {
				var out bytes.Buffer
				start := time.Now()
				res, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "echo first; (sleep 30; echo late) & exit 0"}, Stdout: &out, Timeout: time.Minute})
				if err != nil || res.ExitCode != 0 || res.TimedOut {
					t.Fatalf("%+v %v", res, err)
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("turn took %v: the background child held it", d)
				}
				if out.String() != "first\n" {
					t.Errorf("stdout %q", out.String())
				}
			})
			t.Run("fork bomb", func(t *testing.T) {
				res, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "sleep 300 & (b() { b | b & }; b); wait"}, Timeout: 2 * time.Second})
				if err != nil || !res.TimedOut {
					t.Fatalf("%+v %v, want timed out", res, err)
				}
				_, procs, _ := run(t, sb, "/bin/sh", "-c", "echo /proc/[0-9]*")
				if n := len(strings.Fields(procs)); n != 2 {
					t.Errorf("processes after the swept fork bomb: %s, want PID 1 and this shell", procs)
				}
			})
			t.Run("stdin EOF", func(t *testing.T) {
				var out bytes.Buffer
				res, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "cat; echo eof"}, Stdout: &out, Timeout: 30 * time.Second})
				if err != nil || res.TimedOut || out.String() != "eof\n" {
					t.Fatalf("%+v %v %q: a turn without stdin must read EOF at once", res, err, out.String())
				}
			})
			t.Run("exit by signal", func(t *testing.T) {
				res, _, _ := run(t, sb, "/bin/sh", "-c", "kill -KILL $$")
				if res.ExitCode != 137 {
					t.Errorf("exit %d, want 137", res.ExitCode)
				}
			})
			t.Run("env and cwd", func(t *testing.T) {
				var out bytes.Buffer
				_, err := sb.Exec(context.Background(), Turn{Args: []string{"sh", "-c", "pwd; echo $FOO; echo $HOME"}, Env: []string{"FOO=bar"}, Stdout: &out, Timeout: 30 * time.Second})
				if err != nil || out.String() != "/workspace\nbar\n/tmp\n" {
					t.Errorf("%q %v", out.String(), err)
				}
			})
			assertExecPath(t, sb, via.noInit)
		})
	}
}

// Without a working channel turns are runc exec'd, and work: a PID 1 that
// never connects (an image from before the channel), and a channel that
// broke after some turns.
func TestInitFallback(t *testing.T) {
	rt := testRuntime(t, func(o *ContainerdOptions) { o.NoInitExec, o.InitConnectTimeout = false, 300*time.Millisecond })
	t.Run("PID 1 never connects", func(t *testing.T) {
		sb, _ := startSandbox(t, rt, limitsProfile("strict", true), func(s *Spec) { s.Init = []string{"/parachute", "sleep", "300"} })
		res, out, _ := run(t, sb, "/bin/sh", "-c", "echo ran; exit 4")
		if res.ExitCode != 4 || out != "ran\n" {
			t.Fatalf("exit %d, stdout %q; want 4, ran", res.ExitCode, out)
		}
		assertExecPath(t, sb, true)
		if err := ic(sb).err; !errors.Is(err, errInitDown) {
			t.Errorf("channel error %v, want %v", err, errInitDown)
		}
		if _, err := os.Lstat(filepath.Join(ic(sb).dir, sandboxinit.ControlSocket)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("control socket left after the wait: %v", err)
		}
	})
	t.Run("channel broken", func(t *testing.T) {
		sb, _ := startSandbox(t, rt, limitsProfile("strict", true))
		run(t, sb, "/parachute", "sleep", "0")
		assertExecPath(t, sb, false)
		ic(sb).conn.Close() // as if PID 1's end had gone
		res, err := sb.Exec(context.Background(), Turn{Args: []string{"/parachute", "sleep", "0"}, Timeout: time.Minute})
		if err == nil {
			t.Logf("turn on the broken channel: %+v (fell back)", res)
		}
		res, _, _ = run(t, sb, "/bin/sh", "-c", "exit 5")
		if res.ExitCode != 5 {
			t.Errorf("exit %d after the channel broke, want 5", res.ExitCode)
		}
		assertExecPath(t, sb, true)
	})
}

func ic(sb Sandbox) *initChan { return sb.(*ctrSandbox).ictl }

// A sandbox removed as an orphan (by another runtime value, as at the
// next gateway start) takes its control folder with it.
func TestInitDirRemovedWithOrphan(t *testing.T) {
	rt := testRuntimeVia(t, false)
	sb, _ := startSandbox(t, rt, limitsProfile("strict", true))
	run(t, sb, "/parachute", "sleep", "0")
	dir := ic(sb).dir
	if _, err := os.Lstat(dir); err != nil {
		t.Fatalf("control folder: %v", err)
	}
	next := testRuntime(t)
	if _, err := next.RemoveOrphans(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("control folder left after the orphan's removal: %v", err)
	}
}

// The control folder is one more bind, last, read-only and inert, at
// InitDir; only an absolute host path is taken.
func TestSpecInitControlMount(t *testing.T) {
	in := specInput{
		Namespace: "parachute", ID: "parachute-s1", Init: []string{"/parachute", "sandbox", "init"},
		Workspace: "/srv/ws/alice", SocketDir: "/run/parachute-gw/s1", Profile: testProfile("default"),
		SeccompDir: testSeccompDir, InitControl: "/run/parachute-init/parachute-s1",
	}
	s, err := buildSpec(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	last := s.Mounts[len(s.Mounts)-1]
	if last.Destination != InitDir || last.Source != in.InitControl || last.Type != "bind" {
		t.Fatalf("last mount %+v, want the control folder at %s", last, InitDir)
	}
	if got, want := strings.Join(last.Options, ","), "rbind,rprivate,nosuid,nodev,noexec,ro"; got != want {
		t.Errorf("options %s, want %s", got, want)
	}
	if initControlSource(s) != in.InitControl {
		t.Errorf("initControlSource %q", initControlSource(s))
	}
	in.InitControl = "run/parachute-init/x"
	if _, err := buildSpec(context.Background(), in); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("relative control folder: %v, want ErrInvalidSpec", err)
	}
	in.InitControl = ""
	if s, err := buildSpec(context.Background(), in); err != nil || initControlSource(s) != "" {
		t.Errorf("no control folder: %v %q", err, initControlSource(s))
	}
}

// A turn started by PID 1 sees what a runc exec'd turn sees: the probe's
// every check and its detail, side by side (details that name the
// sandbox or measure time, and init-ctl-ro and init-ctl-no-watch, whose
// mount a runc-exec-only sandbox does not have, are compared by result
// only).
func TestProbeSameOnBothPaths(t *testing.T) {
	volatile := map[string]bool{"cgroup-of-init": true, "cpu-ratio": true, "init-ctl-ro": true, "init-ctl-no-watch": true, "signals-default": true}
	for _, seccomp := range []string{"default", "strict"} {
		t.Run(seccomp, func(t *testing.T) {
			reports := map[bool]map[string]string{}
			for _, via := range execPaths {
				rt := testRuntimeVia(t, via.noInit)
				sb, _ := startSandbox(t, rt, limitsProfile(seccomp, true))
				assertExecPath(t, sb, via.noInit)
				_, out, errOut := run(t, sb, "/parachute", "check", "--profile", seccomp, "--workspace-ro")
				var rep probeReport
				if err := json.Unmarshal([]byte(out), &rep); err != nil {
					t.Fatalf("%s: %v\n%s\n%s", via.name, err, out, errOut)
				}
				m := map[string]string{}
				for _, r := range rep.Results {
					d := r.Detail
					if volatile[r.Check] {
						d = ""
					}
					m[r.Check] = fmt.Sprintf("ok=%v %s", r.OK, d)
				}
				reports[via.noInit] = m
			}
			initRep, runcRep := reports[false], reports[true]
			for k, v := range runcRep {
				if initRep[k] != v {
					t.Errorf("%s: runc exec %q, init %q", k, v, initRep[k])
				}
			}
			for k := range initRep {
				if _, ok := runcRep[k]; !ok {
					t.Errorf("%s only reported through init", k)
				}
			}
		})
	}
}

// hostileSignals are the signals a turn may send PID 1 (same uid, so the
// kernel lets it) that PID 1 has no use for. From inside the PID
// namespace the kernel drops a signal only if PID 1 has no handler; the Go
// runtime installs one for every signal, and for many of them (HUP, INT,
// QUIT, TERM, ABRT, …) that handler ends the process. SIGKILL and SIGSTOP
// the kernel drops by itself; SIGUSR1 is the sweep (it kills the turn,
// nothing else); SIGCHLD only reaps.
var hostileSignals = []string{
	"HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "SEGV", "USR2",
	"PIPE", "ALRM", "TERM", "STKFLT", "CONT", "TSTP", "TTIN", "TTOU", "URG",
	"XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
	"STOP", "KILL", "CHLD", "34", "40", "64",
}

// A turn that signals PID 1 cannot end it: the sandbox, and on the init
// path the channel, still serve the next turn. Both ways.
func TestInitSurvivesSignalsFromTurn(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	for _, via := range execPaths {
		t.Run(via.name, func(t *testing.T) {
			rt := testRuntimeVia(t, via.noInit)
			for _, sig := range hostileSignals {
				t.Run(sig, func(t *testing.T) {
					sb, _ := startSandbox(t, rt, limitsProfile("default", false))
					var out bytes.Buffer
					_, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "kill -s " + sig + " 1 || kill -" + sig + " 1; i=0; while [ $i -lt 20 ]; do kill -0 1 || break; i=$((i+1)); done; echo sent"}, Stdout: &out, Timeout: 10 * time.Second})
					if err != nil {
						t.Fatalf("turn sending SIG%s to PID 1: %v (stdout %q)", sig, err, out.String())
					}
					res, next, _ := run(t, sb, "/bin/sh", "-c", "echo next")
					if next != "next\n" || res.ExitCode != 0 {
						t.Errorf("turn after SIG%s to PID 1: exit %d, stdout %q", sig, res.ExitCode, next)
					}
					assertExecPath(t, sb, via.noInit)
				})
			}
		})
	}
}

// A turn that abuses its stdin (closes it at once, or leaves a background
// child holding it unread while the host still has megabytes to write)
// cannot hold the turn: Exec returns when the turn exits (plus the drain),
// without an error. Both ways.
func TestTurnStdinAbuseBothPaths(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	big := bytes.Repeat([]byte("x"), 8<<20) // far over a pipe's buffer
	for _, via := range execPaths {
		t.Run(via.name, func(t *testing.T) {
			rt := testRuntimeVia(t, via.noInit)
			sb, _ := startSandbox(t, rt, limitsProfile("strict", false))
			for _, tc := range []struct{ name, script, want string }{
				{"stdin closed at once", "exec 0<&-; echo closed", "closed\n"},
				{"background child holds stdin unread", "sleep 30 <&0 >/dev/null 2>&1 & echo left", "left\n"},
				{"reads a little, exits", "head -c 3; echo", "xxx\n"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var out bytes.Buffer
					start := time.Now()
					res, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", tc.script}, Stdin: bytes.NewReader(big), Stdout: &out, Timeout: time.Minute})
					if err != nil || res.ExitCode != 0 || res.TimedOut {
						t.Fatalf("%+v %v", res, err)
					}
					if d := time.Since(start); d > 10*time.Second {
						t.Errorf("turn took %v: its stdin held it", d)
					}
					if out.String() != tc.want {
						t.Errorf("stdout %q, want %q", out.String(), tc.want)
					}
				})
			}
			assertExecPath(t, sb, via.noInit)
		})
	}
}

// Many short turns leak no descriptor, in PID 1 (counted from the host,
// /proc/<host pid>/fd) or in the runtime, and leave no process behind.
// 10,000 turns took 17 s here (1.7 ms each), PID 1 at 6 descriptors before
// and after; this runs 1,000.
func TestInitManyTurnsNoLeak(t *testing.T) {
	rt := testRuntimeVia(t, false)
	sb, _ := startSandbox(t, rt, limitsProfile("default", false))
	b := sb.(*ctrSandbox)
	fds := func(pid int) int {
		e, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(e)
	}
	run(t, sb, "/bin/true") // the first turn's one-time setup
	init0, host0 := fds(int(b.task.Pid())), fds(os.Getpid())
	for i := range 1000 {
		if _, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/true"}, Timeout: 10 * time.Second}); err != nil {
			t.Fatalf("turn %d: %v", i, err)
		}
	}
	if n := fds(int(b.task.Pid())); n != init0 {
		t.Errorf("PID 1's descriptors: %d before, %d after 1,000 turns", init0, n)
	}
	if n := fds(os.Getpid()); n > host0 {
		t.Errorf("runtime's descriptors: %d before, %d after 1,000 turns", host0, n)
	}
	if _, procs, _ := run(t, sb, "/bin/sh", "-c", "echo /proc/[0-9]*"); len(strings.Fields(procs)) != 2 {
		t.Errorf("processes after 1,000 turns: %s, want PID 1 and this shell", procs)
	}
	assertExecPath(t, sb, false)
}

// Today's semantics, the same both ways: a turn that exits normally is
// not swept. A background process it left (setsid, ignoring every signal
// it can) lives on into the next turn, and there, having the same uid, it
// reads that turn's environment (the turn's own Env included) through
// /proc/<pid>/environ. Only a timeout, a cancellation or Stop sweeps it
// (TestTurnHostileBothPaths, TestInitCannotBeFrozen). docs/runtime.md says
// so; if turns are ever swept at every exit, this test changes with it.
// (Reopening the next turn's stdout through /proc/<pid>/fd/1 works on the
// runc exec path only: init's pipes are the host's, root's and 0600.)
func TestLeftoverOutlivesNormalExitBothPaths(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	// The leftover copies any environment holding TURN_SECRET to /tmp,
	// renaming it into place: it rewrites the file in a loop, and a plain
	// `>` truncates it under a reader (the next turn read "" once in CI).
	leftover := `setsid sh -c 'trap "" HUP INT TERM USR1 USR2; while :; do for p in /proc/[0-9]*; do grep -q TURN_SECRET $p/environ && tr "\\0" "\\n" <$p/environ | grep TURN_SECRET >/tmp/stolen.t && mv /tmp/stolen.t /tmp/stolen; done 2>/dev/null; done' </dev/null >/dev/null 2>&1 & echo left`
	for _, via := range execPaths {
		t.Run(via.name, func(t *testing.T) {
			rt := testRuntimeVia(t, via.noInit)
			sb, _ := startSandbox(t, rt, limitsProfile("default", false))
			if _, out, _ := run(t, sb, "/bin/sh", "-c", leftover); out != "left\n" {
				t.Fatalf("first turn: %q", out)
			}
			var out bytes.Buffer
			_, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", "i=0; while [ $i -lt 100 ] && ! [ -s /tmp/stolen ]; do sleep 0.05; i=$((i+1)); done; cat /tmp/stolen"}, Env: []string{"TURN_SECRET=s3cret"}, Stdout: &out, Timeout: time.Minute})
			if err != nil || out.String() != "TURN_SECRET=s3cret\n" {
				t.Errorf("next turn: %v, stdout %q; want the leftover to have read TURN_SECRET=s3cret", err, out.String())
			}
			assertExecPath(t, sb, via.noInit)
		})
	}
}

// A timed-out turn's sweep leaves nothing, whatever the turn did to
// survive: a setsid'd double fork ignoring every signal it may, a stopped
// process, a ptrace'd (PTRACE_TRACEME) child, and a leftover of an earlier
// turn that exited normally. Both ways.
func TestTimeoutSweepsSurvivorsBothPaths(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	hide := `trap "" HUP INT TERM USR1 USR2 QUIT PIPE; while :; do sleep 1; done`
	for _, via := range execPaths {
		t.Run(via.name, func(t *testing.T) {
			rt := testRuntimeVia(t, via.noInit)
			sb, _ := startSandbox(t, rt, limitsProfile("default", false))
			// An earlier turn's leftover, from a normal exit.
			if res, _, _ := run(t, sb, "/bin/sh", "-c", "setsid sh -c '"+hide+"' </dev/null >/dev/null 2>&1 & exit 0"); res.ExitCode != 0 {
				t.Fatalf("leftover turn: exit %d", res.ExitCode)
			}
			script := "(setsid sh -c '(" + hide + ") & exit 0' &) </dev/null >/dev/null 2>&1; " +
				"sleep 300 </dev/null >/dev/null 2>&1 & kill -STOP $!; " +
				"/parachute traceme </dev/null >/dev/null 2>&1 & " +
				"echo ready; wait"
			var out bytes.Buffer
			res, err := sb.Exec(context.Background(), Turn{Args: []string{"/bin/sh", "-c", script}, Stdout: &out, Timeout: 2 * time.Second})
			if err != nil || !res.TimedOut || out.String() != "ready\n" {
				t.Fatalf("%+v %v %q, want timed out after ready", res, err, out.String())
			}
			if _, procs, _ := run(t, sb, "/bin/sh", "-c", "echo /proc/[0-9]*"); len(strings.Fields(procs)) != 2 {
				t.Errorf("processes after the sweep: %s, want PID 1 and this shell", procs)
			}
			assertExecPath(t, sb, via.noInit)
		})
	}
}
