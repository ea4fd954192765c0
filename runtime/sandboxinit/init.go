// Package sandboxinit is PID 1 of a session sandbox (`parachute sandbox
// init`). It does three things: reap every zombie reparented to it, sweep
// the sandbox on SIGUSR1 (kill(-1, SIGKILL): every process in the PID
// namespace but itself — the runtime's way to end a timed-out turn and all
// it spawned), and exit on SIGTERM.
//
// It refuses to run unless it is PID 1: kill(-1) outside a PID namespace
// would reach every process of the user on the host.
package sandboxinit

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ErrNotPID1 is returned by Run when the process is not PID 1.
var ErrNotPID1 = errors.New("sandbox init must run as PID 1 of a sandbox")

// Run serves as PID 1 until SIGTERM or SIGINT. It never returns otherwise.
func Run() error {
	if os.Getpid() != 1 {
		return ErrNotPID1
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	// SIGCHLDs coalesce; a slow sweep catches any zombie a lost signal left.
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				syscall.Kill(-1, syscall.SIGKILL)
			case syscall.SIGTERM, syscall.SIGINT:
				syscall.Kill(-1, syscall.SIGKILL)
				reap()
				return nil
			}
		case <-tick.C:
		}
		reap()
	}
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
