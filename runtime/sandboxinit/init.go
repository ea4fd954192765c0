// Package sandboxinit is PID 1 of a session sandbox (`parachute sandbox
// init`). It does three things: reap every zombie reparented to it, sweep
// the sandbox on SIGUSR1 (kill(-1, SIGKILL): every process in the PID
// namespace but itself — the runtime's way to end a timed-out turn and all
// it spawned), and serve the control channel. It never exits on a signal:
// the runtime ends a sandbox with SIGKILL, which the kernel delivers from
// the host whatever PID 1 does.
//
// It refuses to run unless it is PID 1: kill(-1) outside a PID namespace
// would reach every process of the user on the host.
//
// It makes itself non-dumpable before anything else. Turns run as the same
// uid as PID 1 and, under the default seccomp profile, may call ptrace(2);
// a dumpable PID 1 could be attached (PTRACE_SEIZE) and stopped
// (PTRACE_INTERRUPT) by a turn, and a stopped PID 1 never runs the sweep,
// so a timed-out turn's processes would live on into later turns. The
// kernel refuses to attach to a non-dumpable process unless the tracer
// holds CAP_SYS_PTRACE, which no sandbox process has. It also makes
// /proc/1/* root-owned, so turns cannot read PID 1's environment or maps,
// nor reach its descriptors through /proc/1/fd.
//
// When the runtime made a control socket (runc sandboxes; see proto.go),
// PID 1 connects to it once, right after becoming non-dumpable, and from
// then on starts each turn itself on the host's request: a fork and exec
// of its own, which inherits its seccomp filter, cgroup, namespaces,
// identity and rlimits, instead of a runc exec (tens of milliseconds).
package sandboxinit

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ErrNotPID1 is returned by Run when the process is not PID 1.
var ErrNotPID1 = errors.New("sandbox init must run as PID 1 of a sandbox")

// fatalSignals are the signals whose Go handler ends the process (HUP,
// INT, QUIT, ABRT, TERM; ILL, TRAP, BUS, FPE, SEGV, STKFLT, SYS when sent
// by kill, not raised by a fault) and that PID 1 has no use for. Turns run
// as PID 1's uid, so the kernel lets them signal it; from inside the PID
// namespace it drops only signals PID 1 has no handler for, and the Go
// runtime installs one for every signal. Without this any turn could end
// the sandbox with kill -HUP 1. Received by Notify and dropped: for the
// synchronous ones, Notify is the only way to keep a kill(2)'d one from
// crashing the process (signal.Ignore does not apply to them).
var fatalSignals = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL,
	syscall.SIGTRAP, syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE,
	syscall.SIGSEGV, syscall.SIGPIPE, syscall.SIGTERM, syscall.SIGSTKFLT,
	syscall.SIGSYS, syscall.SIGXCPU, syscall.SIGXFSZ, syscall.SIGALRM,
	syscall.SIGVTALRM, syscall.SIGPROF, syscall.SIGUSR2,
}

// Run serves as PID 1. It never returns unless it cannot serve.
func Run() error {
	if os.Getpid() != 1 {
		return ErrNotPID1
	}
	if err := makeUndumpable(); err != nil {
		return err
	}
	// First, before a turn can exist: no signal a turn sends ends PID 1.
	dropped := make(chan os.Signal, 1)
	signal.Notify(dropped, fatalSignals...)
	go func() {
		for range dropped {
		}
	}()
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGUSR1)
	// After Notify, so no turn's SIGCHLD can be missed.
	srv, err := connect()
	if err != nil {
		// The runtime sees no connection and runc execs the turns.
		fmt.Fprintln(os.Stderr, err)
	}
	if srv != nil {
		go srv.serve()
	}
	// SIGCHLDs coalesce; a slow sweep catches any zombie a lost signal left.
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	// While a killed turn's exit waits for the sweep to finish, reap
	// often: the host waits for that exit.
	var retry <-chan time.Time
	for {
		select {
		case <-retry:
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 {
				srv.sweepAll()
			}
		case <-tick.C:
		}
		srv.reap()
		retry = nil
		if srv.sweepPending() {
			retry = time.After(20 * time.Millisecond)
		}
	}
}

// makeUndumpable sets PR_SET_DUMPABLE to 0 and checks that it holds: an
// init that any turn could freeze does not serve.
func makeUndumpable() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); e != 0 {
		return fmt.Errorf("sandbox init: prctl(PR_SET_DUMPABLE, 0): %w", e)
	}
	v, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_DUMPABLE, 0, 0)
	if e != 0 || v != 0 {
		return fmt.Errorf("sandbox init: still dumpable after PR_SET_DUMPABLE 0 (%d, %v)", v, e)
	}
	return nil
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
