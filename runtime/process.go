package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
)

// upstreamNameRE is what an upstream's name may be: it becomes a container
// label and appears in logs.
var upstreamNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// upstreamExecID is the exec ID of the long-lived process in its sandbox.
const upstreamExecID = "upstream"

// ProcessSpec is a long-lived process run in a sandbox of its own, such as
// a third-party MCP server speaking JSON-RPC over its stdio.
type ProcessSpec struct {
	// Upstream names the process (the upstream's configured name). It is
	// put on the container as LabelUpstream; 1-64 of [a-zA-Z0-9_.-],
	// starting with a letter or digit.
	Upstream string
	Args     []string // command, resolved inside the image
	Env      []string // added to the sandbox's environment (never secrets)
	// Stderr receives the process's stderr; nil discards it. Writes to
	// it must not block for long: a blocked stderr blocks the process.
	Stderr io.Writer
}

// ExitError is how a process that exited on its own ended with a non-zero
// status.
type ExitError struct {
	Code int // as the shim reports it: 128+N when killed by signal N
}

func (e *ExitError) Error() string { return fmt.Sprintf("process exited with status %d", e.Code) }

// Process is a long-lived process in a fresh sandbox: PID 1 is the
// sandbox's init, the process is exec'd beside it with the same user,
// capabilities, seccomp filter and cgroup, like a turn, but without an
// output cap or a timeout. Its stdio are streams (no turn boundary).
//
// The sandbox lives exactly as long as the process: when the process
// exits, or PID 1 dies, or Close is called, every process in the sandbox
// is killed, the container and its snapshot are deleted, Stdout reaches
// EOF and writes to Stdin fail.
type Process struct {
	sb      *ctrSandbox
	stdinW  *io.PipeWriter
	stdinR  *io.PipeReader
	stdoutR *io.PipeReader
	stdoutW *io.PipeWriter

	kill      chan struct{} // closed by Close
	killOnce  sync.Once
	done      chan struct{} // closed when the sandbox is gone
	exitErr   error         // how the process ended; set before done closes
	removeErr error         // from deleting the sandbox; set before done closes
}

// StartProcess starts ps in a fresh sandbox built from s like a session's
// (same spec: seccomp profile, limits, no network interface, read-only
// root, no capabilities, uid 65534, the workspace with .parachute
// read-only over it). s.SessionID is the session the process serves; the
// container is "parachute-up-<random>", labelled with the session, owner,
// LabelKind=KindUpstream and LabelUpstream=ps.Upstream.
//
// ctx bounds the start only; the process then runs until it exits or
// Close is called. Nothing is left behind when StartProcess fails.
func (c *Containerd) StartProcess(ctx context.Context, s Spec, ps ProcessSpec) (*Process, error) {
	if len(ps.Args) == 0 {
		return nil, fmt.Errorf("%w: process has no command", ErrInvalidSpec)
	}
	if !upstreamNameRE.MatchString(ps.Upstream) {
		return nil, fmt.Errorf("%w: upstream name %q must be 1-64 of [a-zA-Z0-9_.-], starting with a letter or digit", ErrInvalidSpec, ps.Upstream)
	}
	if err := validateSessionID(s.SessionID); err != nil {
		return nil, err
	}
	b, err := c.create(ctx, s, "parachute-up-"+randomID(), map[string]string{
		LabelSession: s.SessionID, LabelOwner: s.Owner, LabelKind: KindUpstream, LabelUpstream: ps.Upstream,
	})
	if err != nil {
		return nil, err
	}
	p := &Process{sb: b, kill: make(chan struct{}), done: make(chan struct{})}
	p.stdinR, p.stdinW = io.Pipe()
	p.stdoutR, p.stdoutW = io.Pipe()
	proc, statusC, err := p.exec(c.ns(ctx), ps)
	if err != nil {
		cerr := b.Stop(context.WithoutCancel(ctx))
		p.stdinR.CloseWithError(ErrStopped)
		p.stdoutW.Close()
		return nil, errors.Join(err, cerr)
	}
	go p.watch(c.ns(context.WithoutCancel(ctx)), proc, statusC)
	return p, nil
}

// exec starts the process with streaming stdio.
func (p *Process) exec(ctx context.Context, ps ProcessSpec) (containerd.Process, <-chan containerd.ExitStatus, error) {
	b := p.sb
	// PID 1's process with another command, as for a turn.
	proc := *b.spec.Process
	proc.Args = slices.Clone(ps.Args)
	proc.Env = append(slices.Clone(b.spec.Process.Env), ps.Env...)
	proc.Cwd = WorkspaceDir
	proc.Terminal = false

	stderr := ps.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	stdinDone := make(chan struct{})
	stdin := &eofNotifier{r: p.stdinR, done: stdinDone}
	ioOpts := []cio.Opt{cio.WithStreams(stdin, p.stdoutW, stderr)}
	if b.rt.opts.FIFODir != "" {
		ioOpts = append(ioOpts, cio.WithFIFODir(b.rt.opts.FIFODir))
	}
	cp, err := b.task.Exec(ctx, upstreamExecID, &proc, cio.NewCreator(ioOpts...))
	if err != nil {
		return nil, nil, b.rt.wrap("exec", err)
	}
	bg := context.WithoutCancel(ctx)
	statusC, err := cp.Wait(bg)
	if err == nil {
		err = cp.Start(ctx)
	}
	if err != nil {
		cp.IO().Cancel()
		cp.IO().Close()
		return nil, nil, b.rt.wrap("start process", err)
	}
	// Closing Stdin closes the process's stdin inside the sandbox (the
	// shim holds the FIFO open itself).
	go func() {
		select {
		case <-stdinDone:
			cp.CloseIO(bg, containerd.WithStdinCloser)
		case <-p.done:
		}
	}()
	return cp, statusC, nil
}

// watch waits for the process to exit, PID 1 to die or Close, then
// removes the sandbox and ends the streams.
func (p *Process) watch(ctx context.Context, proc containerd.Process, statusC <-chan containerd.ExitStatus) {
	var exitErr error
	select {
	case st := <-statusC:
		code, _, err := st.Result()
		switch {
		case err != nil:
			exitErr = p.sb.rt.wrap("process status", err)
		case code != 0:
			exitErr = &ExitError{Code: int(code)}
		}
	case st := <-p.sb.exitC:
		code, _, _ := st.Result()
		exitErr = fmt.Errorf("%w: the sandbox's PID 1 exited (status %d)", ErrStopped, code)
	case <-p.kill:
		exitErr = fmt.Errorf("%w: closed", ErrStopped)
	}
	// Remove first: it kills every process, so no child still holds the
	// output FIFOs open and the output drains at once.
	removeErr := p.sb.Stop(ctx)
	drained := make(chan struct{})
	go func() { proc.IO().Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(p.sb.rt.opts.OutputDrain):
		// Nobody reads Stdout: drop what is left.
		proc.IO().Cancel()
	}
	proc.IO().Close()
	p.stdoutW.Close()
	p.stdinR.CloseWithError(ErrStopped)
	p.exitErr, p.removeErr = exitErr, removeErr
	close(p.done)
}

// ID is the sandbox's container ID.
func (p *Process) ID() string { return p.sb.id }

// Stdin is the process's stdin. Closing it closes the process's stdin;
// writes after the process ended fail with ErrStopped.
func (p *Process) Stdin() io.WriteCloser { return p.stdinW }

// Stdout is the process's stdout. It reaches EOF when the process has
// ended and its output has drained. Read it: unread output blocks the
// process once the pipe's buffer is full.
func (p *Process) Stdout() io.ReadCloser { return p.stdoutR }

// Done is closed when the process has ended and its sandbox is gone.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits until the process has ended and its sandbox is gone. It
// returns nil for exit status 0, an *ExitError for another status, and an
// error wrapping ErrStopped when Close (or the death of PID 1) ended it.
func (p *Process) Wait() error {
	<-p.done
	return p.exitErr
}

// Close kills every process in the sandbox, deletes the container and its
// snapshot, and waits for that. Close twice is not an error; every call
// returns the error of deleting the sandbox, if there was one.
func (p *Process) Close() error {
	p.killOnce.Do(func() { close(p.kill) })
	<-p.done
	return p.removeErr
}
