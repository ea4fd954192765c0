package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/parachute-gateway/parachute/engine"
)

// ctrSandbox is one session's containerd container and task.
type ctrSandbox struct {
	rt      *Containerd
	id      string
	ctr     containerd.Container
	task    containerd.Task
	exitC   <-chan containerd.ExitStatus // PID 1's exit
	spec    *specs.Spec
	profile engine.SessionProfile
	ictl    *initChan // PID 1's control channel; nil: turns are runc exec'd

	turn    sync.Mutex // one turn at a time
	turns   int        // guarded by turn
	mu      sync.Mutex // guards stopped; held by Stop while it removes
	stopped bool
}

func (b *ctrSandbox) ID() string { return b.id }

// Exec runs one turn: a process in the sandbox with PID 1's user,
// (empty) capabilities, no-new-privileges, seccomp filter and cgroup. On
// timeout or cancellation the process is killed, and so is every other
// process in the sandbox except PID 1 (see killTurn).
//
// When PID 1's control channel is up (runc sandboxes), PID 1 starts the
// turn as its own child (execInit); otherwise, or when the channel cannot
// carry the turn, it is a runc exec (execRunc). Both give the same walls
// and the same Result.
func (b *ctrSandbox) Exec(ctx context.Context, t Turn) (Result, error) {
	if len(t.Args) == 0 {
		return Result{}, fmt.Errorf("%w: turn has no command", ErrInvalidSpec)
	}
	b.turn.Lock()
	defer b.turn.Unlock()
	b.mu.Lock()
	stopped := b.stopped
	b.mu.Unlock()
	if stopped {
		return Result{}, ErrStopped
	}
	if b.ictl != nil {
		// Until PID 1 has connected (or the wait is over) no turn runs:
		// the control socket is gone before any turn exists.
		conn, err := b.ictl.wait(ctx)
		if err != nil {
			return Result{}, err
		}
		if conn != nil {
			res, err := b.execInit(ctx, conn, t)
			if !errors.Is(err, errFallBack) {
				return res, err
			}
		}
	}
	return b.execRunc(ctx, t)
}

// execRunc runs one turn as a containerd exec (runc exec).
func (b *ctrSandbox) execRunc(ctx context.Context, t Turn) (Result, error) {
	ctx = b.rt.ns(ctx)
	b.turns++
	execID := fmt.Sprintf("turn-%d", b.turns)

	// The turn's process is PID 1's process with another command: the
	// same user, capabilities, rlimits and no-new-privileges. The seccomp
	// filter and cgroup come from the container, not from this spec.
	proc := *b.spec.Process
	proc.Args = slices.Clone(t.Args)
	proc.Env = append(slices.Clone(b.spec.Process.Env), t.Env...)
	proc.Cwd = WorkspaceDir
	proc.Terminal = false

	stdout := newCappedWriter(t.Stdout, t.OutputLimit)
	stderr := newCappedWriter(t.Stderr, t.OutputLimit)
	var stdin io.Reader
	stdinDone := make(chan struct{})
	if t.Stdin != nil {
		stdin = &eofNotifier{r: t.Stdin, done: stdinDone}
	}
	ioOpts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr)}
	if b.rt.opts.FIFODir != "" {
		ioOpts = append(ioOpts, cio.WithFIFODir(b.rt.opts.FIFODir))
	}
	start := time.Now()
	p, err := b.task.Exec(ctx, execID, &proc, cio.NewCreator(ioOpts...))
	if err != nil {
		return Result{}, b.rt.wrap("exec", err)
	}
	// Cleanup must run even when ctx is cancelled.
	bg := context.WithoutCancel(ctx)
	defer func() {
		dctx, cancel := context.WithTimeout(bg, b.rt.opts.StopTimeout)
		defer cancel()
		p.Delete(dctx, containerd.WithProcessKill)
	}()
	statusC, err := p.Wait(bg)
	if err != nil {
		return Result{}, b.rt.wrap("wait", err)
	}
	if err := p.Start(ctx); err != nil {
		return Result{}, b.rt.wrap("start turn", err)
	}
	if t.Stdin != nil {
		go func() {
			select {
			case <-stdinDone:
				p.CloseIO(bg, containerd.WithStdinCloser)
			case <-statusC:
			}
		}()
	}

	timer := time.NewTimer(turnTimeout(t, b.profile))
	defer timer.Stop()
	var res Result
	var st containerd.ExitStatus
	select {
	case st = <-statusC:
	case <-timer.C:
		res.TimedOut = true
		st = b.killTurn(bg, p, statusC)
	case <-ctx.Done():
		b.killTurn(bg, p, statusC)
		b.drain(p)
		return Result{Duration: time.Since(start)}, ctx.Err()
	}
	b.drain(p)
	code, _, err := st.Result()
	res.ExitCode = int(code)
	res.Duration = time.Since(start)
	res.Truncated = stdout.Truncated() || stderr.Truncated()
	if err != nil {
		return res, b.rt.wrap("turn status", err)
	}
	return res, nil
}

// killTurn kills the turn's process and then every process in the sandbox
// but PID 1: a turn that timed out leaves nothing running (no orphaned
// children, no fork bomb). PID 1 (`parachute sandbox init`) does the
// sweep on SIGUSR1 with kill(-1, SIGKILL), which inside the PID namespace
// reaches every process except itself.
func (b *ctrSandbox) killTurn(ctx context.Context, p containerd.Process, statusC <-chan containerd.ExitStatus) containerd.ExitStatus {
	kctx, cancel := context.WithTimeout(ctx, b.rt.opts.StopTimeout)
	defer cancel()
	p.Kill(kctx, syscall.SIGKILL)
	b.task.Kill(kctx, syscall.SIGUSR1)
	select {
	case st := <-statusC:
		return st
	case <-kctx.Done():
		return *containerd.NewExitStatus(containerd.UnknownExitStatus, time.Time{}, errors.New("turn did not die after SIGKILL"))
	}
}

// drain lets the turn's output finish flowing for a moment, then closes the
// pipes: a background process holding them open cannot hold the turn.
func (b *ctrSandbox) drain(p containerd.Process) {
	done := make(chan struct{})
	go func() { p.IO().Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.rt.opts.OutputDrain):
		p.IO().Cancel()
	}
	p.IO().Close()
}

// Stop kills every process and deletes task, container and snapshot. It
// does not wait for a running turn: the turn dies with the sandbox and its
// Exec returns.
func (b *ctrSandbox) Stop(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return nil
	}
	err := b.remove(b.rt.ns(context.WithoutCancel(ctx)))
	if err == nil {
		b.stopped = true
	}
	return err
}

// remove kills every process (SIGKILL to all), deletes the task, then the
// container with its snapshot. Missing pieces are not errors.
func (b *ctrSandbox) remove(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*b.rt.opts.StopTimeout)
	defer cancel()
	var errs []error
	if b.task != nil {
		if err := b.rt.killAll(ctx, b.task, b.exitC); err != nil {
			errs = append(errs, err)
		}
		if _, err := b.task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			// runsc refuses the kill WithProcessKill sends once its
			// sandbox has exited ("sandbox is not running"): the task is
			// dead, so delete it without the kill.
			if _, err2 := b.task.Delete(ctx); err2 != nil && !errdefs.IsNotFound(err2) {
				errs = append(errs, b.rt.wrap("delete task", errors.Join(err, err2)))
			}
		}
	}
	if err := b.ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, b.rt.wrap("delete container", err))
	}
	if b.ictl != nil {
		b.ictl.close()
	} else if b.rt.opts.InitStateDir != "" {
		// An orphan removed by RemoveOrphans: its control folder, if it
		// has one, goes with it.
		removeInitDir(b.rt.initDirPath(b.id))
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove sandbox %s: %w", b.id, errors.Join(errs...))
	}
	return nil
}

// startTask creates and starts the task of b's container. A spec with
// the init control mount gets the control socket listening before the
// task exists, and its one connection accepted in the background (Exec
// waits for that). On error the caller removes b.
func (b *ctrSandbox) startTask(ctx context.Context) error {
	if dir := initControlSource(b.spec); dir != "" {
		ic, err := b.rt.listenInit(b.id, dir)
		if err != nil {
			return err
		}
		b.ictl = ic
	}
	task, err := b.ctr.NewTask(ctx, cio.NullIO)
	if err == nil {
		b.task = task
		// PID 1's exit is watched beyond ctx: a cancelled start context
		// must not read as PID 1 having exited.
		if b.exitC, err = task.Wait(context.WithoutCancel(ctx)); err == nil {
			err = task.Start(ctx)
		}
	}
	if err != nil {
		if b.ictl != nil {
			close(b.ictl.ready) // no accept will run
		}
		return err
	}
	if b.ictl != nil {
		go b.ictl.accept(int(task.Pid()), SandboxUID, b.rt.opts.InitConnectTimeout)
	}
	return nil
}

// eofNotifier closes done when r reaches EOF (or fails), so the turn's
// stdin can be closed inside the sandbox.
type eofNotifier struct {
	r    io.Reader
	done chan struct{}
	once sync.Once
}

func (e *eofNotifier) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.done) })
	}
	return n, err
}
