package sandboxinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// errTruncated: a request or its descriptors did not fit.
var errTruncated = fmt.Errorf("%w: message or descriptors truncated", ErrRequest)

// maxFDs is how many descriptors a receive has room for: more than a start
// carries, so that one too many is seen (and refused), not silently cut.
const maxFDs = 8

// server is PID 1's end of the control channel. It starts the turns the
// host asks for, as its own children, and reports how each ended.
type server struct {
	fd int // connected SOCK_SEQPACKET socket, close-on-exec

	mu       sync.Mutex
	turn     uint64 // the running turn, 0 when none
	pid      int    // its process (and process group)
	sweeping bool   // the turn was killed: report its exit once all are gone
	exit     *Reply // the turn's exit, reaped but not yet reported

	out   chan Reply // to the sender goroutine
	sweep func()     // kill(-1, SIGKILL); tests record it instead
}

// connect dials the control socket if the runtime made one. No socket is
// not an error (gVisor, an upstream's sandbox, runc exec only): init then
// serves without a channel and turns are runc exec'd.
func connect() (*server, error) {
	p := ControlDir + "/" + ControlSocket
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err := closeOnExecAll(); err != nil {
		return nil, err // no channel: turns are runc exec'd
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox init: control socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: p}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sandbox init: connect %s: %w", p, err)
	}
	return newServer(fd), nil
}

func newServer(fd int) *server {
	s := &server{fd: fd, out: make(chan Reply, 16), sweep: sweep}
	go s.sendLoop()
	return s
}

// sendLoop writes replies in order. It runs apart from the reaper so that
// a host that stops reading can never hold PID 1's sweep.
func (s *server) sendLoop() {
	for r := range s.out {
		b, err := marshalReply(r)
		if err != nil {
			continue
		}
		for {
			err = unix.Sendmsg(s.fd, b, nil, nil, 0)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
	}
}

// post queues a reply without ever blocking (turns run one at a time, so
// the queue holds at most a few).
func (s *server) post(r Reply) {
	select {
	case s.out <- r:
	default:
	}
}

// serve reads requests until the host hangs up. Every descriptor received
// is closed in init once the request is done with: a turn gets its three
// as 0, 1 and 2 and nothing else.
func (s *server) serve() {
	// However serving ends, the host must see it (EOF, EPIPE) and fall
	// back to runc exec rather than wait for an answer. Shut down, not
	// closed: the sender may still hold the descriptor number.
	defer unix.Shutdown(s.fd, unix.SHUT_RDWR)
	buf := make([]byte, MaxMessage+1)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(s.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || (n == 0 && oobn == 0) {
			return // the host hung up; turns are runc exec'd from now on
		}
		fds, ferr := rights(oob[:oobn])
		s.handle(buf[:n], fds, ferr == nil && flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) == 0 && n <= MaxMessage)
	}
}

// handle runs one request. whole is false when the message, its
// descriptors or their parsing was cut short: it is refused.
func (s *server) handle(raw []byte, fds []int, whole bool) {
	defer closeAll(fds)
	req, err := ParseRequest(raw, len(fds))
	if err == nil && !whole {
		err = errTruncated
	}
	if err != nil {
		s.post(Reply{Op: OpError, Turn: req.Turn, Error: err.Error()})
		return
	}
	switch req.Op {
	case OpStart:
		s.start(req, fds)
	case OpKill:
		s.kill(req)
	}
}

// start forks and execs the turn with fds as its stdin, stdout and stderr,
// in a process group of its own, in req.Dir, with exactly req.Env. It
// inherits PID 1's uid, gid and groups, rlimits, (empty) capabilities,
// no-new-privileges, seccomp filter, cgroup and namespaces. The fork and
// the record of its pid happen under s.mu, which the reaper holds too, so
// the turn's exit cannot be reaped before it is known.
func (s *server) start(req Request, fds []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid != 0 {
		s.post(Reply{Op: OpError, Turn: req.Turn, Error: fmt.Sprintf("turn %d is still running", s.turn)})
		return
	}
	argv0, err := lookPath(req.Args[0], req.Env)
	if err != nil {
		s.post(Reply{Op: OpError, Turn: req.Turn, Error: err.Error()})
		return
	}
	pid, err := syscall.ForkExec(argv0, req.Args, &syscall.ProcAttr{
		Dir:   req.Dir,
		Env:   req.Env,
		Files: []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2])},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		s.post(Reply{Op: OpError, Turn: req.Turn, Error: fmt.Sprintf("start %s: %v", req.Args[0], err)})
		return
	}
	s.turn, s.pid = req.Turn, pid
	s.post(Reply{Op: OpStarted, Turn: req.Turn, Pid: pid})
}

// kill ends the turn's process group and then sweeps the sandbox, as
// SIGUSR1 does: nothing a timed-out turn started survives it. The turn's
// exit is then reported only once every process but PID 1 is gone and
// reaped, so the next turn never meets a dying straggler (or its zombie
// holding a slot of the PID limit).
func (s *server) kill(req Request) {
	s.mu.Lock()
	if s.pid != 0 && s.turn == req.Turn {
		syscall.Kill(-s.pid, syscall.SIGKILL)
		s.sweeping = true
	}
	s.mu.Unlock()
	s.sweep()
}

// sweepAll is SIGUSR1's sweep (the host's fallback when the channel
// cannot carry a kill): as kill, for whatever turn runs.
func (s *server) sweepAll() {
	if s == nil {
		sweep()
		return
	}
	s.mu.Lock()
	if s.pid != 0 {
		s.sweeping = true
	}
	s.mu.Unlock()
	s.sweep()
}

// closeOnExecAll marks every descriptor above 2 close-on-exec, so that a
// turn gets 0, 1 and 2 and nothing PID 1 holds, even a descriptor it
// inherited (runc passes none, but that is runc's promise, not ours).
func closeOnExecAll() error {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// No close_range (old kernel, or a filter without it): one by one.
	entries, derr := os.ReadDir("/proc/self/fd")
	if derr != nil {
		return fmt.Errorf("sandbox init: mark descriptors close-on-exec: %w", errors.Join(err, derr))
	}
	for _, e := range entries {
		var fd int
		if _, serr := fmt.Sscan(e.Name(), &fd); serr == nil && fd > 2 {
			if _, ferr := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); ferr != nil && !errors.Is(ferr, unix.EBADF) {
				return fmt.Errorf("sandbox init: mark descriptor %d close-on-exec: %w", fd, ferr)
			}
		}
	}
	return nil
}

// sweep kills every process in the PID namespace but PID 1. Outside PID
// 1 (tests), kill(-1) would reach every process of the user: never.
func sweep() {
	if os.Getpid() == 1 {
		syscall.Kill(-1, syscall.SIGKILL)
	}
}

// sweepPending says whether a killed turn's exit waits for the sweep.
func (s *server) sweepPending() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exit != nil && s.sweeping
}

// reap collects every exited child without blocking and reports the
// turn's exit: its status, or 128+N for a death by signal N (what the
// shim reports for an exec'd process).
func (s *server) reap() {
	if s == nil {
		reap()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			// No more exited children. A killed turn's exit waits until
			// there are no children at all (ECHILD): every process the
			// sweep hit has died and been reaped.
			if s.exit != nil && (!s.sweeping || errors.Is(err, syscall.ECHILD)) {
				s.post(*s.exit)
				s.exit, s.turn, s.pid, s.sweeping = nil, 0, 0, false
			}
			return
		}
		if s.exit == nil && pid == s.pid {
			s.exit = &Reply{Op: OpExit, Turn: s.turn, Pid: pid, Code: exitCode(ws)}
		}
	}
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// lookPath finds name as runc does for an exec: a name with a slash as
// is, else the first executable regular file of that name in the turn's
// own PATH.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathVar := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range strings.Split(pathVar, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && unix.Access(p, unix.X_OK) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("start %s: executable file not found in $PATH", name)
}

// rights returns the descriptors of every SCM_RIGHTS message in oob.
func rights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			closeAll(fds)
			return nil, err
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
