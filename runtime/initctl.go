package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/internal/unixsock"
	"github.com/parachute-gateway/parachute/runtime/sandboxinit"
)

// InitDir (inside the sandbox) is where PID 1 finds its control socket.
const InitDir = sandboxinit.ControlDir

// Defaults of the init channel's options.
const (
	DefaultInitStateDir       = "/run/parachute-init"
	DefaultInitConnectTimeout = 5 * time.Second
)

// Errors of the init channel. A turn never fails because of them: the
// sandbox falls back to runc exec.
var (
	// ErrInitRefused: something other than the sandbox's PID 1, as the
	// sandbox user, connected to the control socket.
	ErrInitRefused = errors.New("runtime: init channel: peer refused")
	// errInitDown: the channel is closed (PID 1 gone, or it broke).
	errInitDown = errors.New("runtime: init channel down")
)

// initChan is the host's end of the control channel to one sandbox's PID
// 1 (runtime/sandboxinit, proto.go). It is made before the task starts:
// a private folder <InitStateDir>/<container id> (the state folder itself
// 0700 root), bind-mounted read-only at InitDir, with ctl.sock in it. The
// first connection is the only one ever accepted; the listener is closed
// and the socket unlinked right after it, whatever it was.
type initChan struct {
	dir  string
	ln   *net.UnixListener
	log  *slog.Logger
	id   string
	turn uint64 // last turn sent; guarded by the sandbox's turn lock

	ready chan struct{} // closed when the accept has ended
	conn  *net.UnixConn // set before ready closes; nil: not up (err says why)
	err   error
	dead  atomic.Bool
}

// initControlDir is the host control folder of sandbox id, "" when it
// gets no channel (NoInitExec, or gVisor: see docs/runtime.md).
func (c *Containerd) initControlDir(id, class string) string {
	if c.opts.NoInitExec || class == ClassGVisor {
		return ""
	}
	return c.initDirPath(id)
}

// initDirPath is <InitStateDir>/<24 hex of sha256(containerd socket,
// namespace, container ID)>: container IDs are unique only within one
// containerd's namespace, several containerds (tests, a second gateway)
// may share the host, and a unix socket's path must stay under 108 bytes
// (a session ID alone may be 64).
func (c *Containerd) initDirPath(id string) string {
	sum := sha256.Sum256([]byte(c.opts.Address + "\x00" + c.opts.Namespace + "\x00" + id))
	return filepath.Join(c.opts.InitStateDir, hex.EncodeToString(sum[:12]))
}

// maxSocketPath is the longest path a unix socket can be bound at
// (sun_path is 108 bytes with its NUL).
const maxSocketPath = 107

// listenInit makes dir (0711 root: the sandbox user may only traverse
// it) in the 0700 state folder and listens on dir/ctl.sock, owned by the
// sandbox user, mode 0600. A folder already there (a crash's leftover) is
// replaced; anything else is refused, never followed.
func (c *Containerd) listenInit(id, dir string) (*initChan, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("runtime: init state dir: %w", err)
	}
	// Every level from the state folder down: root's, 0700, no symlink.
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if err := checkPrivateDir(p); err != nil {
			return nil, err
		}
		if p == filepath.Clean(c.opts.InitStateDir) || p == filepath.Dir(p) {
			break
		}
	}
	sock := filepath.Join(dir, sandboxinit.ControlSocket)
	if len(sock) > maxSocketPath {
		return nil, fmt.Errorf("%w: init control socket %s is %d bytes, over the %d a unix socket path may have; use a shorter InitStateDir", ErrInvalidSpec, sock, len(sock), maxSocketPath)
	}
	if fi, err := os.Lstat(dir); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("runtime: init control dir %s is not a folder", dir)
		}
		_ = os.Remove(sock)
		if err := os.Remove(dir); err != nil {
			return nil, fmt.Errorf("runtime: stale init control dir: %w", err)
		}
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		return nil, fmt.Errorf("runtime: init control dir: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil { // not the umask's
		os.Remove(dir)
		return nil, err
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err == nil {
		ln.SetUnlinkOnClose(true)
		if err = os.Chown(sock, SandboxUID, SandboxGID); err == nil {
			err = os.Chmod(sock, 0o600)
		}
		if err != nil {
			ln.Close()
		}
	}
	if err != nil {
		os.Remove(sock)
		os.Remove(dir)
		return nil, fmt.Errorf("runtime: init control socket: %w", err)
	}
	lg := c.opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	return &initChan{dir: dir, ln: ln, log: lg, id: id, ready: make(chan struct{})}, nil
}

// checkPrivateDir refuses a state folder that is a symlink, not root's, or
// open to others (it is made 0700; an operator's looser one is tightened).
func checkPrivateDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("runtime: init state dir: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("runtime: init state dir %s must be a folder owned by uid %d (not a symlink)", dir, os.Geteuid())
	}
	if st.Mode&0o077 != 0 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}

// accept takes the first connection within timeout and keeps it only if
// its peer (SO_PEERCRED, in the host's PID namespace) is pid running as
// uid. Then the listener is closed and the socket unlinked, so no later
// process can connect at all. It closes ic.ready when done.
func (ic *initChan) accept(pid, uid int, timeout time.Duration) {
	defer close(ic.ready)
	ic.ln.SetDeadline(time.Now().Add(timeout))
	conn, err := ic.ln.AcceptUnix()
	ic.ln.Close()
	os.Remove(filepath.Join(ic.dir, sandboxinit.ControlSocket))
	if errors.Is(err, net.ErrClosed) {
		// Stopped before PID 1 connected: nothing to say.
		ic.err = fmt.Errorf("%w: stopped before PID 1 connected", errInitDown)
		return
	}
	if err != nil {
		ic.err = fmt.Errorf("%w: PID 1 did not connect: %w", errInitDown, err)
		ic.log.Warn("sandbox init did not connect to its control socket (an image built before this gateway? rebuild it: parachute image build); turns use runc exec",
			"sandbox", ic.id, "err", err)
		return
	}
	puid, ppid, err := unixsock.PeerCred(conn)
	if err != nil || ppid != pid || puid != uid {
		conn.Close()
		ic.err = fmt.Errorf("%w: peer pid %d uid %d, want PID 1 (host pid %d) as uid %d (%v)", ErrInitRefused, ppid, puid, pid, uid, err)
		ic.log.Error("sandbox init channel: refused a connection that is not the sandbox's PID 1; turns use runc exec",
			"sandbox", ic.id, "peer_pid", ppid, "peer_uid", puid, "want_pid", pid, "want_uid", uid)
		return
	}
	ic.conn = conn
}

// wait returns the connection once the accept has ended, or nil if the
// channel is not (or no longer) up.
func (ic *initChan) wait(ctx context.Context) (*net.UnixConn, error) {
	select {
	case <-ic.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if ic.conn == nil || ic.dead.Load() {
		return nil, nil
	}
	return ic.conn, nil
}

// close ends the channel and removes the control folder.
func (ic *initChan) close() {
	ic.ln.Close() // ends a pending accept
	<-ic.ready
	ic.dead.Store(true)
	if ic.conn != nil {
		ic.conn.Close()
	}
	removeInitDir(ic.dir)
}

// removeInitDir removes a control folder and its socket, nothing else
// (never recursively).
func removeInitDir(dir string) {
	os.Remove(filepath.Join(dir, sandboxinit.ControlSocket))
	os.Remove(dir)
}

// send writes one request with its descriptors.
func (ic *initChan) send(conn *net.UnixConn, r sandboxinit.Request, fds ...*os.File) error {
	b, err := sandboxinit.MarshalRequest(r)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		ints := make([]int, len(fds))
		for i, f := range fds {
			ints[i] = int(f.Fd())
		}
		oob = unix.UnixRights(ints...)
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _, err = conn.WriteMsgUnix(b, oob, nil)
	return err
}

// recv reads replies until one for turn, dropping any other (a reply of
// an earlier turn that was given up on).
func (ic *initChan) recv(conn *net.UnixConn, turn uint64) (sandboxinit.Reply, error) {
	buf := make([]byte, sandboxinit.MaxMessage+1)
	for {
		n, _, flags, _, err := conn.ReadMsgUnix(buf, nil)
		if err != nil {
			return sandboxinit.Reply{}, err
		}
		if n == 0 {
			return sandboxinit.Reply{}, io.EOF
		}
		if flags&unix.MSG_TRUNC != 0 || n > sandboxinit.MaxMessage {
			return sandboxinit.Reply{}, errors.New("runtime: init channel: reply too long")
		}
		r, err := sandboxinit.ParseReply(buf[:n])
		if err != nil {
			return r, err
		}
		if r.Turn == turn {
			return r, nil
		}
	}
}

// fail marks the channel down: later turns use runc exec.
func (ic *initChan) fail(err error) {
	if !ic.dead.Swap(true) {
		ic.log.Warn("sandbox init channel broken; turns use runc exec", "sandbox", ic.id, "err", err)
	}
}

// errFallBack: the turn was not started through init (nothing ran); run
// it with runc exec.
var errFallBack = errors.New("runtime: init channel: use runc exec")

// execInit runs one turn through PID 1: the host makes the three pipes,
// hands init their sandbox ends, and keeps the rest of a turn as runc
// exec does (output caps, 500 ms drain, timeout and cancellation kill
// the turn and sweep the sandbox, 128+N for signal N). It returns
// errFallBack, having started nothing, when the channel cannot carry the
// turn.
func (b *ctrSandbox) execInit(ctx context.Context, conn *net.UnixConn, t Turn) (Result, error) {
	ic := b.ictl
	ic.turn++
	turn := ic.turn
	req := sandboxinit.Request{
		Op: sandboxinit.OpStart, Turn: turn, Args: slices.Clone(t.Args),
		Env: append(slices.Clone(b.spec.Process.Env), t.Env...), Dir: WorkspaceDir,
	}
	if raw, err := sandboxinit.MarshalRequest(req); err != nil || len(raw) > sandboxinit.MaxMessage {
		return Result{}, errFallBack // too large for one message: runc exec carries it
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err // start nothing for a caller already gone
	}
	var p turnPipes
	if err := p.open(); err != nil {
		return Result{}, fmt.Errorf("runtime: turn pipes: %w", err)
	}
	defer p.closeAll()
	start := time.Now()
	if err := ic.send(conn, req, p.inR, p.outW, p.errW); err != nil {
		ic.fail(err)
		return Result{}, errFallBack // a datagram is sent whole or not at all
	}
	// The sandbox holds its ends now; ours must go, or EOF never comes.
	p.closeSandboxEnds()
	conn.SetReadDeadline(time.Now().Add(b.rt.opts.StopTimeout))
	r, err := ic.recv(conn, turn)
	if err != nil {
		// PID 1 may have started the turn without saying so: sweep, as
		// for a timeout, and stop using the channel.
		ic.fail(err)
		kctx, cancel := context.WithTimeout(context.WithoutCancel(b.rt.ns(ctx)), b.rt.opts.StopTimeout)
		b.task.Kill(kctx, syscall.SIGUSR1)
		cancel()
		return Result{}, fmt.Errorf("runtime: start turn through init: %w", err)
	}
	if r.Op == sandboxinit.OpError {
		return Result{}, fmt.Errorf("runtime: start turn: sandbox init: %s", r.Error)
	}
	conn.SetReadDeadline(time.Time{})

	stdout := newCappedWriter(t.Stdout, t.OutputLimit)
	stderr := newCappedWriter(t.Stderr, t.OutputLimit)
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); io.Copy(stdout, p.outR) }()
	go func() { defer copies.Done(); io.Copy(stderr, p.errR) }()
	if t.Stdin != nil {
		go func() { io.Copy(p.inW, t.Stdin); p.inW.Close() }()
	} else {
		p.inW.Close()
	}

	type exit struct {
		code int
		err  error
	}
	exitC := make(chan exit, 1)
	go func() {
		r, err := ic.recv(conn, turn)
		switch {
		case err != nil:
			exitC <- exit{err: err}
		case r.Op != sandboxinit.OpExit:
			exitC <- exit{err: fmt.Errorf("runtime: init channel: %q while the turn runs", r.Op)}
		default:
			exitC <- exit{code: r.Code}
		}
	}()
	// kill: SIGKILL the turn's group and sweep, through init, or with
	// SIGUSR1 through containerd if the channel cannot carry it; then wait
	// (StopTimeout at most) for the exit, which init reports once the
	// sweep is complete.
	kill := func() exit {
		if err := ic.send(conn, sandboxinit.Request{Op: sandboxinit.OpKill, Turn: turn}); err != nil {
			kctx, cancel := context.WithTimeout(context.WithoutCancel(b.rt.ns(ctx)), b.rt.opts.StopTimeout)
			b.task.Kill(kctx, syscall.SIGUSR1)
			cancel()
		}
		select {
		case e := <-exitC:
			return e
		case <-time.After(b.rt.opts.StopTimeout):
			conn.SetReadDeadline(time.Now()) // ends the reader
			if e := <-exitC; e.err == nil {
				return e // it came just now
			}
			return exit{code: unknownExit, err: errors.New("turn did not die after SIGKILL")}
		}
	}

	timer := time.NewTimer(turnTimeout(t, b.profile))
	defer timer.Stop()
	var res Result
	var e exit
	select {
	case e = <-exitC:
	case <-timer.C:
		res.TimedOut = true
		e = kill()
	case <-ctx.Done():
		e = kill()
		if e.err != nil {
			ic.fail(e.err)
		}
		p.drain(&copies, b.rt.opts.OutputDrain)
		return Result{Duration: time.Since(start)}, ctx.Err()
	}
	p.drain(&copies, b.rt.opts.OutputDrain)
	res.ExitCode = e.code
	res.Duration = time.Since(start)
	res.Truncated = stdout.Truncated() || stderr.Truncated()
	if e.err != nil {
		ic.fail(e.err)
		if errors.Is(e.err, io.EOF) || errors.Is(e.err, net.ErrClosed) {
			return res, fmt.Errorf("%w: the sandbox's PID 1 ended during the turn", ErrStopped)
		}
		return res, fmt.Errorf("runtime: turn status: %w", e.err)
	}
	return res, nil
}

// unknownExit is containerd's UnknownExitStatus as an exit code.
const unknownExit = 255

// turnPipes are a turn's stdin, stdout and stderr pipes. The sandbox ends
// (inR, outW, errW) go to init and are closed here once sent.
type turnPipes struct {
	inR, inW, outR, outW, errR, errW *os.File
}

func (p *turnPipes) open() error {
	var err error
	if p.inR, p.inW, err = os.Pipe(); err != nil {
		return err
	}
	if p.outR, p.outW, err = os.Pipe(); err != nil {
		return err
	}
	p.errR, p.errW, err = os.Pipe()
	return err
}

func (p *turnPipes) closeSandboxEnds() {
	for _, f := range []*os.File{p.inR, p.outW, p.errW} {
		if f != nil {
			f.Close()
		}
	}
}

func (p *turnPipes) closeAll() {
	for _, f := range []*os.File{p.inR, p.inW, p.outR, p.outW, p.errR, p.errW} {
		if f != nil {
			f.Close() // twice is harmless
		}
	}
}

// drain lets the output finish flowing for d, then closes the pipes: a
// background process holding them open cannot hold the turn. It returns
// when nothing writes to the turn's writers any more.
func (p *turnPipes) drain(copies *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		p.outR.Close()
		p.errR.Close()
		<-done
	}
	p.inW.Close()
}
