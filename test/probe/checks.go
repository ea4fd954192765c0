package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/runtime/sandboxinit"
)

func checks(o options) []Result {
	strict := o.profile == "strict"
	gv := o.class == "gvisor"
	var rs []Result
	add := func(name string, ok bool, detail string, a ...any) {
		rs = append(rs, Result{Check: name, OK: ok, Detail: fmt.Sprintf(detail, a...)})
	}

	// /proc/self/status: seccomp filter, no-new-privileges, capabilities.
	status, _ := os.ReadFile("/proc/self/status")
	field := func(k string) string {
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, k+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return "?"
	}
	// The kernel answering: the host's under runc, gVisor's Sentry under
	// gvisor (its syslog(2) says so; runc's seccomp refuses syslog).
	klog := make([]byte, 4096)
	n, _ := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, klog)
	inGVisor := n > 0 && strings.Contains(string(klog[:n]), "gVisor")
	add("kernel-"+o.class, inGVisor == gv, "syslog says gVisor: %v", inGVisor)
	if gv {
		// gVisor's /proc/self/status has no Seccomp field, and runsc
		// (2022) applies the OCI filter to PID 1 only, not to exec'd
		// turns: under gvisor the Sentry is the wall (docs/runtime.md).
		add("seccomp-filter", true, "gVisor: Seccomp: %s (not reported)", field("Seccomp"))
	} else {
		add("seccomp-filter", field("Seccomp") == "2", "Seccomp: %s", field("Seccomp"))
	}
	nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	add("no-new-privs", err == nil && nnp == 1, "PR_GET_NO_NEW_PRIVS: %d %v (status: %s)", nnp, err, field("NoNewPrivs"))
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		ok := field(k) == "0000000000000000" || (gv && k == "CapAmb" && field(k) == "?")
		add("caps-"+strings.ToLower(k), ok, "%s: %s", k, field(k))
	}
	add("non-root", os.Getuid() == 65534 && os.Getgid() == 65534, "uid %d gid %d", os.Getuid(), os.Getgid())
	groups, gerr := unix.Getgroups()
	add("no-supplementary-groups", gerr == nil && (len(groups) == 0 || (len(groups) == 1 && groups[0] == 65534)), "groups %v %v", groups, gerr)
	// What a turn inherits from whoever started it (runc, or PID 1):
	// rlimits as the spec says, no signal ignored or blocked, umask 022.
	var nofile, core unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
	unix.Getrlimit(unix.RLIMIT_CORE, &core)
	add("rlimits", nofile.Cur == 1024 && nofile.Max == 1024 && core.Cur == 0 && core.Max == 0, "NOFILE %d/%d CORE %d/%d", nofile.Cur, nofile.Max, core.Cur, core.Max)
	sigOK := func(k string, allowed uint64) bool {
		if gv && field(k) == "?" { // gVisor reports neither
			return true
		}
		v, err := strconv.ParseUint(field(k), 16, 64)
		return err == nil && v&^allowed == 0
	}
	// Signals 32 and 33 are glibc's own (NPTL's SIGCANCEL and SIGSETXID),
	// below SIGRTMIN as glibc reports it; no program uses them to be told
	// anything. A fresh-clone CI run saw 32 ignored in some sandboxes on
	// both paths (runc exec and PID 1) and not in others, so it comes from
	// above PID 1 (runc or the shim), not from the init channel. Every
	// other signal must be at its default and none may be blocked.
	const nptlSignals = 1<<(32-1) | 1<<(33-1)
	add("signals-default", sigOK("SigIgn", nptlSignals) && sigOK("SigBlk", 0), "SigIgn %s SigBlk %s", field("SigIgn"), field("SigBlk"))
	mask := unix.Umask(0o022)
	unix.Umask(mask)
	add("umask-022", mask == 0o022, "umask %#o", mask)

	// Syscalls both profiles refuse with EPERM.
	nsfd, _ := unix.Open("/proc/self/ns/net", unix.O_RDONLY, 0)
	denied := []struct {
		name string
		call func() syscall.Errno
	}{
		{"unshare", func() syscall.Errno { return errno(unix.Unshare(unix.CLONE_NEWUSER | unix.CLONE_NEWNS)) }},
		{"mount", func() syscall.Errno { return errno(unix.Mount("tmpfs", "/tmp", "tmpfs", 0, "")) }},
		{"chroot", func() syscall.Errno { return errno(unix.Chroot("/")) }},
		{"setns", func() syscall.Errno { return errno(unix.Setns(nsfd, unix.CLONE_NEWNET)) }},
		{"keyctl", func() syscall.Errno { return raw(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, 0, 0) }},
		{"add_key", func() syscall.Errno { return raw(unix.SYS_ADD_KEY, 0, 0, 0) }},
		{"bpf", func() syscall.Errno { return raw(unix.SYS_BPF, unix.BPF_PROG_LOAD, 0, 0) }},
		{"userfaultfd", func() syscall.Errno { return raw(unix.SYS_USERFAULTFD, 0, 0, 0) }},
		{"perf_event_open", func() syscall.Errno { return raw(unix.SYS_PERF_EVENT_OPEN, 0, 0, 0) }},
		{"io_uring_setup", func() syscall.Errno { return raw(unix.SYS_IO_URING_SETUP, 1, 0, 0) }},
		{"clone-newuser", cloneNewUser},
	}
	for _, d := range denied {
		e := d.call()
		switch {
		case !gv:
			add("eperm-"+d.name, e == unix.EPERM, "%s: %s", d.name, errnoString(e))
		case d.name == "clone-newuser":
			// gVisor implements user namespaces inside the Sentry; they
			// never reach the host's kernel.
			add("gvisor-"+d.name, true, "%s: %s (a Sentry-internal namespace)", d.name, errnoString(e))
		default:
			add("refused-"+d.name, e != 0, "%s: %s", d.name, errnoString(e))
		}
	}
	unix.Close(nsfd)
	// clone3 answers ENOSYS so that libcs fall back to clone, where the
	// namespace flags are filtered.
	e := raw(unix.SYS_CLONE3, 0, 0, 0)
	add("clone3-refused", e == unix.ENOSYS || e == unix.EPERM, "clone3: %s", errnoString(e))

	// Syscalls only strict refuses. Called with an invalid target so that
	// under default they fail harmlessly with another errno.
	for _, d := range []struct {
		name string
		call func() syscall.Errno
	}{
		{"ptrace", func() syscall.Errno { return raw(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, 0, 0) }},
		{"process_vm_readv", func() syscall.Errno { return raw6(unix.SYS_PROCESS_VM_READV, 0, 0, 0, 0, 0, 0) }},
		{"personality", func() syscall.Errno { return raw(unix.SYS_PERSONALITY, 0xffffffff, 0, 0) }},
	} {
		e := d.call()
		if gv {
			continue // no OCI filter on turns under gVisor (see above)
		}
		if strict {
			add("strict-eperm-"+d.name, e == unix.EPERM, "%s: %s", d.name, errnoString(e))
		} else {
			add("default-allows-"+d.name, e != unix.EPERM, "%s: %s", d.name, errnoString(e))
		}
	}

	// PID 1 cannot be attached to under any profile: it is non-dumpable
	// (sandbox init), so a turn cannot stop it and keep the timeout sweep
	// from running.
	e = seizeInit(false)
	add("ptrace-init-refused", e == unix.EPERM, "PTRACE_SEIZE 1: %s", errnoString(e))

	// No signal a turn may send ends PID 1 (same uid, so the kernel lets
	// it through to a handler, and the Go runtime's handler ends the
	// process for these). Not SIGUSR1: that is the sweep, and ends this
	// probe.
	add("init-survives-signals", signalInit(), "PID 1 alive after SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGPIPE, SIGTERM, SIGSTKFLT, SIGSYS, SIGUSR2 from this turn")

	// PID 1's control channel (runtime/sandboxinit): the socket is gone
	// before any turn runs, the folder is a read-only mount (or absent:
	// gVisor, runc exec only), and PID 1's descriptors, the channel's
	// end among them, cannot be reached through /proc/1/fd.
	ctl := sandboxinit.ControlDir + "/" + sandboxinit.ControlSocket
	_, lerr := os.Lstat(ctl)
	cfd, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	cerr := unix.Connect(cfd, &unix.SockaddrUnix{Name: ctl})
	unix.Close(cfd)
	add("init-ctl-gone", errors.Is(lerr, os.ErrNotExist) && cerr != nil, "lstat %s: %v; connect: %v", ctl, lerr, cerr)
	if _, err := os.Stat(sandboxinit.ControlDir); err == nil {
		werr := os.Mkdir(sandboxinit.ControlDir+"/x", 0o755)
		add("init-ctl-ro", werr != nil, "mkdir in %s: %v", sandboxinit.ControlDir, werr)
		// Nor can a turn watch the folder (0711: no read), to learn
		// when a socket comes or goes.
		ifd, ierr := unix.InotifyInit1(unix.IN_CLOEXEC)
		if ierr == nil {
			_, ierr = unix.InotifyAddWatch(ifd, sandboxinit.ControlDir, unix.IN_ALL_EVENTS)
			unix.Close(ifd)
			add("init-ctl-no-watch", ierr != nil, "inotify watch on %s: %v", sandboxinit.ControlDir, ierr)
		} else {
			add("init-ctl-no-watch", true, "no inotify: %v", ierr)
		}
	} else {
		add("init-ctl-ro", true, "no control mount: %v", err)
		add("init-ctl-no-watch", true, "no control mount: %v", err)
	}
	_, fderr := os.ReadDir("/proc/1/fd")
	_, rlerr := os.Readlink("/proc/1/fd/0")
	if gv {
		// gVisor's procfs lists a non-dumpable PID 1's descriptors; a
		// gVisor sandbox has no control channel, so PID 1 holds only its
		// /dev/null stdio and the Go runtime's own (docs/runtime.md).
		add("gvisor-init-fds-listed", true, "list /proc/1/fd: %v; readlink /proc/1/fd/0: %v", fderr, rlerr)
	} else {
		add("init-fds-refused", fderr != nil && rlerr != nil, "list /proc/1/fd: %v; readlink /proc/1/fd/0: %v", fderr, rlerr)
	}
	self, _ := os.ReadFile("/proc/self/cgroup")
	one, oerr := os.ReadFile("/proc/1/cgroup")
	add("cgroup-of-init", oerr == nil && string(self) == string(one), "self %q, PID 1 %q (%v)", strings.TrimSpace(string(self)), strings.TrimSpace(string(one)), oerr)
	if !gv {
		// Under gVisor the Sentry's mount table is its own.
		bad, ro := mountsCheck()
		add("mounts-only-ours", bad == "", "unexpected mounts: %s", bad)
		add("init-ctl-mount-ro", ro, "control mount read-only (or absent): %v", ro)
	}

	// No netlink uevent socket under any profile (the host's device
	// events), also not with garbage in the upper half of the protocol
	// argument, which the kernel truncates to an int.
	for _, proto := range []uint64{unix.NETLINK_KOBJECT_UEVENT, 1<<32 | unix.NETLINK_KOBJECT_UEVENT} {
		_, _, e := syscall.RawSyscall(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, uintptr(proto))
		if gv {
			// gVisor's uevent socket is its own stub: no host events.
			add(fmt.Sprintf("gvisor-uevent-socket-%#x", proto), true, "socket(AF_NETLINK, NETLINK_KOBJECT_UEVENT=%#x): %s (Sentry stub)", proto, errnoString(e))
			continue
		}
		add(fmt.Sprintf("no-uevent-socket-%#x", proto), e == unix.EPERM || e == unix.EPROTONOSUPPORT, "socket(AF_NETLINK, NETLINK_KOBJECT_UEVENT=%#x): %s", proto, errnoString(e))
	}
	if !strict && !gv {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err == nil {
			unix.Close(fd)
		}
		add("default-allows-netlink-route", err == nil, "socket(AF_NETLINK, NETLINK_ROUTE): %v", err)
	}

	// Network: only lo, nothing reachable, and under strict no IP socket.
	ifs := interfaces()
	add("only-lo", len(ifs) == 1 && ifs[0] == "lo", "interfaces %v", ifs)
	for _, addr := range []string{"1.1.1.1:53", "10.0.0.1:80", "[2606:4700:4700::1111]:53"} {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if c != nil {
			c.Close()
		}
		add("no-route-"+addr, err != nil, "dial %s: %v", addr, err)
	}
	for _, f := range []struct {
		name string
		fam  int
	}{{"AF_INET", unix.AF_INET}, {"AF_INET6", unix.AF_INET6}, {"AF_NETLINK", unix.AF_NETLINK}} {
		fd, err := unix.Socket(f.fam, unix.SOCK_DGRAM, 0)
		if err == nil {
			unix.Close(fd)
		}
		if strict && !gv {
			add("strict-no-socket-"+f.name, errors.Is(err, unix.EPERM), "socket(%s): %v", f.name, err)
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fd)
	}
	add("unix-socket", err == nil, "socket(AF_UNIX): %v", err)

	// Filesystem.
	// gVisor answers EACCES where the host answers EROFS; the write fails
	// either way.
	refusedWrite := func(err error) bool { return isErr(err, unix.EROFS) || (gv && isErr(err, unix.EACCES)) }
	rootErr := os.WriteFile("/probe-write", []byte("x"), 0o644)
	add("rootfs-ro", refusedWrite(rootErr), "write /: %v", rootErr)
	wsErr := os.WriteFile("/workspace/.probe-write", []byte("x"), 0o644)
	if o.workspaceRO {
		add("workspace-ro", refusedWrite(wsErr), "write /workspace: %v", wsErr)
	} else {
		add("workspace-rw", wsErr == nil, "write /workspace: %v", wsErr)
		os.Remove("/workspace/.probe-write")
	}
	mkErr := os.Mkdir("/workspace/.parachute/new", 0o755)
	add("hooks-dir-ro", refusedWrite(mkErr), "mkdir in /workspace/.parachute: %v", mkErr)
	if _, err := os.Stat("/workspace/.parachute/hooks"); err == nil {
		hookErr := os.WriteFile("/workspace/.parachute/hooks/pre-session.sh", []byte("#!/bin/sh\n"), 0o755)
		add("hooks-ro", refusedWrite(hookErr), "write hook: %v", hookErr)
	} else {
		hookErr := os.Mkdir("/workspace/.parachute/hooks", 0o755)
		add("hooks-ro", refusedWrite(hookErr), "create hooks folder: %v", hookErr)
	}
	sockErr := os.WriteFile("/run/parachute/probe", []byte("x"), 0o644)
	add("socket-dir-ro", sockErr != nil, "write /run/parachute: %v", sockErr)
	for _, p := range []string{"/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern"} {
		err := os.WriteFile(p, []byte("x"), 0)
		add("proc-ro-"+p, err != nil, "write %s: %v", p, err)
	}
	tmpErr := os.WriteFile("/tmp/probe", []byte("#!/bin/sh\n"), 0o755)
	add("tmp-writable", tmpErr == nil, "write /tmp: %v", tmpErr)
	execErr := exec.Command("/tmp/probe").Run()
	add("tmp-noexec", isErr(execErr, unix.EACCES), "exec /tmp/probe: %v", execErr)
	for _, p := range []string{"/run/containerd/containerd.sock", "/var/run/docker.sock", "/var/run/containerd"} {
		_, err := os.Stat(p)
		add("no-host-"+p, err != nil, "stat %s: %v", p, err)
	}

	// Limits.
	if o.pids > 0 {
		n, e := forkBomb(o.pids * 4)
		add("pids-limit", e == unix.EAGAIN && n < o.pids, "forked %d before %s (limit %d)", n, errnoString(e), o.pids)
	}
	if o.memoryMB > 0 {
		exe, _ := os.Executable()
		cmd := exec.Command(exe, "memhog", fmt.Sprint(o.memoryMB*4))
		out, err := cmd.CombinedOutput()
		killed := false
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			killed = true
		}
		add("oom-killed", killed, "memhog %d MB: %v %q", o.memoryMB*4, err, strings.TrimSpace(string(out)))
	}
	ratio := spin(time.Second)
	add("cpu-ratio", true, "%.2f CPU seconds per second when spinning", ratio)
	return rs
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EINVAL
}

func raw(nr, a1, a2, a3 uintptr) syscall.Errno {
	_, _, e := syscall.RawSyscall(nr, a1, a2, a3)
	return e
}

func raw6(nr, a1, a2, a3, a4, a5, a6 uintptr) syscall.Errno {
	_, _, e := syscall.RawSyscall6(nr, a1, a2, a3, a4, a5, a6)
	return e
}

func errnoString(e syscall.Errno) string {
	if e == 0 {
		return "success"
	}
	return unix.ErrnoName(e) + " (" + e.Error() + ")"
}

func isErr(err, target error) bool { return err != nil && errors.Is(err, target) }

// cloneNewUser tries clone(CLONE_NEWUSER). Should it succeed, the child
// exits at once.
func cloneNewUser() syscall.Errno {
	pid, _, e := syscall.RawSyscall(unix.SYS_CLONE, uintptr(unix.CLONE_NEWUSER|unix.SIGCHLD), 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws syscall.WaitStatus
	syscall.Wait4(int(pid), &ws, 0, nil)
	return 0
}

// interfaces lists the network namespace's interfaces from /proc/net/dev
// (no netlink socket needed, so it works under strict too).
func interfaces() []string {
	b, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n")[2:] {
		if name, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			out = append(out, name)
		}
	}
	return out
}

// forkBomb forks children that only pause, until fork fails or max is
// reached, then kills and reaps them all.
func forkBomb(max int) (int, syscall.Errno) {
	var pids []int
	var last syscall.Errno
	for len(pids) < max {
		pid, _, e := syscall.RawSyscall(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0)
		if e != 0 {
			last = e
			break
		}
		if pid == 0 {
			for {
				syscall.RawSyscall(unix.SYS_PAUSE, 0, 0, 0)
			}
		}
		pids = append(pids, int(pid))
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	for _, p := range pids {
		var ws syscall.WaitStatus
		syscall.Wait4(p, &ws, 0, nil)
	}
	return len(pids), last
}

// memhog allocates and touches mb megabytes, 16 MiB at a time.
func memhog(mb int) {
	var keep [][]byte
	for i := 0; i < mb/16; i++ {
		b := make([]byte, 16<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
	}
	fmt.Println("memhog survived", len(keep)*16, "MB")
}

// spin busy-loops for wall time d and returns CPU time used per wall
// second.
func spin(d time.Duration) float64 {
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	start := time.Now()
	x := 0
	for time.Since(start) < d {
		for i := 0; i < 100000; i++ {
			x += i
		}
	}
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
	_ = unsafe.Pointer(&x)
	return cpu.Seconds() / time.Since(start).Seconds()
}

// ourMounts are the sandbox's mount points (docs/runtime.md, the walls
// table); masked and read-only /proc and /sys paths are mounts too.
var ourMounts = map[string]bool{
	"/": true, "/proc": true, "/dev": true, "/dev/pts": true, "/sys": true, "/tmp": true,
	"/workspace": true, "/workspace/.parachute": true, "/run/parachute": true, sandboxinit.ControlDir: true,
}

// mountsCheck lists the mount points that are not ours, and says whether
// the control mount, if there, is read-only.
func mountsCheck() (bad string, ctlRO bool) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "read /proc/self/mounts: " + err.Error(), false
	}
	ctlRO = true
	var unknown []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		mp := f[1]
		if mp == sandboxinit.ControlDir {
			ctlRO = strings.HasPrefix(f[3], "ro,") || f[3] == "ro"
		}
		if !ourMounts[mp] && !strings.HasPrefix(mp, "/proc/") && !strings.HasPrefix(mp, "/sys/") {
			unknown = append(unknown, mp)
		}
	}
	return strings.Join(unknown, " "), ctlRO
}

// seizeInit tries PTRACE_SEIZE on every thread of PID 1 (a Go init takes
// signals on any of its threads). Each one attached is interrupted
// (stopped) and, unless hold, detached again. It returns the first error.
func seizeInit(hold bool) syscall.Errno {
	goruntime.LockOSThread() // ptrace requests must come from the tracer thread
	defer goruntime.UnlockOSThread()
	tids := []uintptr{1}
	if ents, err := os.ReadDir("/proc/1/task"); err == nil {
		tids = tids[:0]
		for _, e := range ents {
			var tid uintptr
			if _, err := fmt.Sscan(e.Name(), &tid); err == nil {
				tids = append(tids, tid)
			}
		}
	}
	var first syscall.Errno
	for _, tid := range tids {
		_, _, e := syscall.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, tid, 0, 0, 0, 0)
		if e != 0 {
			if first == 0 {
				first = e
			}
			continue
		}
		syscall.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_INTERRUPT, tid, 0, 0, 0, 0)
		if !hold {
			syscall.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, tid, 0, 0, 0, 0)
		}
	}
	if len(tids) == 0 {
		return unix.ESRCH
	}
	return first
}

// signalInit sends PID 1 every signal whose Go handler would end a Go
// process that has not asked for it, then waits (200 ms at most) for PID
// 1 to exit, watching a pidfd. It reports whether PID 1 lives. If PID 1
// dies, the kernel kills this probe with it, which the caller sees too.
//
// As root it signals nothing and reports false: outside a sandbox PID 1 is
// the host's init, and only root could signal that one.
func signalInit() bool {
	if unix.Getuid() == 0 {
		return false
	}
	pidfd, perr := unix.PidfdOpen(1, 0)
	for _, sig := range []syscall.Signal{
		unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGILL, unix.SIGTRAP,
		unix.SIGABRT, unix.SIGBUS, unix.SIGFPE, unix.SIGSEGV, unix.SIGPIPE,
		unix.SIGTERM, unix.SIGSTKFLT, unix.SIGSYS, unix.SIGUSR2,
	} {
		if err := unix.Kill(1, sig); err != nil {
			return false // a turn may signal PID 1; an error means it is gone
		}
	}
	if perr != nil {
		// No pidfd (an old kernel, gVisor): a PID 1 that died has ended
		// this probe before it prints.
		return unix.Kill(1, 0) == nil
	}
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 200)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n == 0 // readable: PID 1 exited
	}
}
