package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// DirectOptions configure the direct runtime.
type DirectOptions struct {
	// Env is the base environment of every turn (default: PATH only). The
	// gateway's own environment, which holds its secrets, is never passed.
	Env []string
	// KillGrace is how long Stop waits for killed turns (default 5s).
	KillGrace time.Duration
}

// Direct runs turns as host processes with the workspace as working
// folder: no sandbox at all. Only a profile with Runtime "direct" (the
// policy's "direct" trust level, never for public connectors) is accepted.
type Direct struct {
	opts DirectOptions
	mu   sync.Mutex
	live map[string]*directSandbox
}

// NewDirect returns a direct runtime.
func NewDirect(opts DirectOptions) *Direct {
	if len(opts.Env) == 0 {
		opts.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = 5 * time.Second
	}
	return &Direct{opts: opts, live: map[string]*directSandbox{}}
}

// Start registers a session; nothing runs until Exec.
func (d *Direct) Start(ctx context.Context, s Spec) (Sandbox, error) {
	if err := validateSessionID(s.SessionID); err != nil {
		return nil, err
	}
	if s.Profile.Runtime != "direct" {
		return nil, fmt.Errorf("%w: the direct runtime needs profile runtime \"direct\", got %q", ErrProfile, s.Profile.Runtime)
	}
	if !filepath.IsAbs(s.Workspace) {
		return nil, fmt.Errorf("%w: workspace %q is not an absolute path", ErrInvalidSpec, s.Workspace)
	}
	ws, err := filepath.EvalSymlinks(s.Workspace)
	if err != nil {
		return nil, fmt.Errorf("%w: workspace: %w", ErrInvalidSpec, err)
	}
	if st, err := os.Stat(ws); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: workspace %q is not a folder", ErrInvalidSpec, ws)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	id := "direct-" + s.SessionID
	if _, dup := d.live[id]; dup {
		return nil, fmt.Errorf("session %s already has a sandbox", s.SessionID)
	}
	b := &directSandbox{rt: d, id: id, spec: s, workspace: ws, created: time.Now(), running: map[int]struct{}{}}
	d.live[id] = b
	return b, nil
}

// List returns the live direct sessions.
func (d *Direct) List(ctx context.Context) ([]Info, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Info, 0, len(d.live))
	for _, b := range d.live {
		out = append(out, Info{ID: b.id, SessionID: b.spec.SessionID, Owner: b.spec.Owner, Created: b.created})
	}
	slices.SortFunc(out, func(a, b Info) int { return a.Created.Compare(b.Created) })
	return out, nil
}

type directSandbox struct {
	rt        *Direct
	id        string
	spec      Spec
	workspace string
	created   time.Time

	turn    sync.Mutex // one turn at a time
	mu      sync.Mutex // guards running, stopped
	running map[int]struct{}
	stopped bool
}

func (b *directSandbox) ID() string { return b.id }

// Exec runs the turn as a host process in its own process group; on
// timeout or cancellation the whole group gets SIGKILL.
func (b *directSandbox) Exec(ctx context.Context, t Turn) (Result, error) {
	if len(t.Args) == 0 {
		return Result{}, fmt.Errorf("%w: turn has no command", ErrInvalidSpec)
	}
	b.turn.Lock()
	defer b.turn.Unlock()
	stdout := newCappedWriter(t.Stdout, t.OutputLimit)
	stderr := newCappedWriter(t.Stderr, t.OutputLimit)
	cmd := exec.Command(t.Args[0], t.Args[1:]...)
	cmd.Dir = b.workspace
	cmd.Env = slices.Concat(b.rt.opts.Env, []string{"HOME=" + b.workspace}, b.spec.Env, t.Env)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = t.Stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 500 * time.Millisecond // a background child holding the pipes cannot hold the turn
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return Result{}, ErrStopped
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		return Result{}, fmt.Errorf("start turn: %w", err)
	}
	pgid := cmd.Process.Pid
	b.running[pgid] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.running, pgid)
		b.mu.Unlock()
	}()

	waitC := make(chan error, 1)
	go func() { waitC <- cmd.Wait() }()
	timer := time.NewTimer(turnTimeout(t, b.spec.Profile))
	defer timer.Stop()
	var res Result
	var err error
	select {
	case err = <-waitC:
	case <-timer.C:
		res.TimedOut = true
		syscall.Kill(-pgid, syscall.SIGKILL)
		err = <-waitC
	case <-ctx.Done():
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-waitC
		return Result{Duration: time.Since(start)}, ctx.Err()
	}
	// Whatever the turn left in its group goes too.
	syscall.Kill(-pgid, syscall.SIGKILL)
	res.Duration = time.Since(start)
	res.Truncated = stdout.Truncated() || stderr.Truncated()
	res.ExitCode = exitCode(cmd.ProcessState)
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) && !errors.Is(err, exec.ErrWaitDelay) {
		return res, fmt.Errorf("turn: %w", err)
	}
	return res, nil
}

// exitCode reports like the shim: 128+N for a death by signal N.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Stop kills every running turn's process group and forgets the session.
func (b *directSandbox) Stop(ctx context.Context) error {
	b.mu.Lock()
	b.stopped = true
	for pgid := range b.running {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	b.mu.Unlock()
	b.rt.mu.Lock()
	delete(b.rt.live, b.id)
	b.rt.mu.Unlock()
	return nil
}

var _ io.Writer = (*cappedWriter)(nil)
