package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of ContainerdOptions.
const (
	DefaultAddress     = "/run/containerd/containerd.sock"
	DefaultNamespace   = "parachute"
	DefaultRuntime     = "io.containerd.runc.v2"
	DefaultSnapshotter = "overlayfs"
)

// ContainerdOptions configure the containerd runtime. Zero values take the
// defaults.
type ContainerdOptions struct {
	Address     string // containerd socket (DefaultAddress)
	Namespace   string // containerd namespace (DefaultNamespace)
	SeccompDir  string // profiles by name (DefaultSeccompDir)
	Runtime     string // shim (DefaultRuntime: runc; crun refuses hybrid cgroups)
	Snapshotter string // DefaultSnapshotter
	Init        []string
	// FIFODir holds the stdio FIFOs of turns ("" = containerd's default).
	FIFODir string
	// StopTimeout bounds each wait for a killed process (default 10s).
	StopTimeout time.Duration
	// OutputDrain is how long a finished turn's output may still flow
	// (a background process may hold the pipe open; default 500ms).
	OutputDrain time.Duration
	// RunscPath is gVisor's runsc (DefaultRunscPath); RunscWrapper is
	// where the runtime writes the script the runc shim runs for the
	// gvisor class (DefaultRunscWrapper; its folder is made 0700).
	RunscPath, RunscWrapper string
	// DiskDir holds the workspaces' disk images (DefaultDiskDir; made
	// 0700), for profiles with disk_mb.
	DiskDir string
	// InitStateDir holds one control folder per runc session sandbox,
	// where PID 1's control socket is made (DefaultInitStateDir; made
	// 0700). InitConnectTimeout bounds the wait for PID 1 to connect
	// (DefaultInitConnectTimeout); after it, turns are runc exec'd.
	InitStateDir       string
	InitConnectTimeout time.Duration
	// NoInitExec makes every turn a runc exec (no control channel).
	NoInitExec bool
	// Logger gets the init channel's refusals and fallbacks
	// (slog.Default() if nil).
	Logger *slog.Logger
	// StartParallel bounds the session sandbox starts under way at once
	// (Start, and a warm pool's cold starts and refills, which share the
	// bound); default max(PoolMinStarts, PoolStartsPerCPU × CPUs).
	StartParallel int
}

// Containerd runs session sandboxes as containerd tasks.
type Containerd struct {
	opts      ContainerdOptions
	client    *containerd.Client
	starts    *startBound
	unpacked  sync.Map   // image ref -> true once known unpacked
	dialMu    sync.Mutex // one redial at a time
	wrapperMu sync.Mutex // one write of the runsc wrapper at a time
}

// NewContainerd returns a runtime talking to containerd at opts.Address.
// It does not wait for containerd: the connection is made on first use and
// remade after containerd restarts; use Ping to check it now. Calls made
// while containerd is down fail with ErrUnavailable.
func NewContainerd(ctx context.Context, opts ContainerdOptions) (*Containerd, error) {
	if opts.Address == "" {
		opts.Address = DefaultAddress
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.SeccompDir == "" {
		opts.SeccompDir = DefaultSeccompDir
	}
	if opts.Runtime == "" {
		opts.Runtime = DefaultRuntime
	}
	if opts.Snapshotter == "" {
		opts.Snapshotter = DefaultSnapshotter
	}
	if len(opts.Init) == 0 {
		opts.Init = DefaultInit
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.OutputDrain <= 0 {
		opts.OutputDrain = 500 * time.Millisecond
	}
	if opts.RunscPath == "" {
		opts.RunscPath = DefaultRunscPath
	}
	if opts.RunscWrapper == "" {
		opts.RunscWrapper = DefaultRunscWrapper
	}
	if opts.DiskDir == "" {
		opts.DiskDir = DefaultDiskDir
	}
	if opts.InitStateDir == "" {
		opts.InitStateDir = DefaultInitStateDir
	}
	if opts.InitConnectTimeout <= 0 {
		opts.InitConnectTimeout = DefaultInitConnectTimeout
	}
	cl, err := containerd.New(opts.Address,
		containerd.WithDefaultNamespace(opts.Namespace),
		containerd.WithDefaultRuntime(opts.Runtime),
		containerd.WithTimeout(2*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, opts.Address, err)
	}
	return &Containerd{opts: opts, client: cl, starts: newStartBound(opts.StartParallel)}, nil
}

// Client is the underlying containerd client (doctor and tests use it).
func (c *Containerd) Client() *containerd.Client { return c.client }

// Options returns the options with defaults filled in.
func (c *Containerd) Options() ContainerdOptions { return c.opts }

// Close closes the connection. Running sandboxes keep running.
func (c *Containerd) Close() error { return c.client.Close() }

// Ping checks that containerd answers and returns its version.
func (c *Containerd) Ping(ctx context.Context) (string, error) {
	v, err := c.client.Version(c.ns(ctx))
	if err != nil {
		return "", c.wrap("version", err)
	}
	return v.Version, nil
}

func (c *Containerd) ns(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, c.opts.Namespace)
}

// wrap marks an error caused by an unreachable containerd with
// ErrUnavailable.
func (c *Containerd) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("containerd %s: %w", op, err)
}

func unavailable(err error) bool {
	return errdefs.IsUnavailable(err) || status.Code(err) == codes.Unavailable
}

// redial replaces the gRPC connection. gRPC redials by itself too, but
// after a failure it waits out a backoff; a fresh connection lets the
// first call after containerd is back succeed.
func (c *Containerd) redial() {
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.client.Reconnect()
}

// Start creates and starts the sandbox of one session. Nothing is left
// behind when it fails. At most StartParallel starts run at once (a warm
// pool's included): a start waits for a slot until ctx ends, and then
// fails with an error naming the wait.
func (c *Containerd) Start(ctx context.Context, s Spec) (Sandbox, error) {
	if err := validateSessionID(s.SessionID); err != nil {
		return nil, err
	}
	return c.starts.run(ctx, func() (Sandbox, error) { return c.start(ctx, s) })
}

// start is Start in a slot already taken.
func (c *Containerd) start(ctx context.Context, s Spec) (Sandbox, error) {
	if err := validateSessionID(s.SessionID); err != nil {
		return nil, err
	}
	return c.create(ctx, s, ContainerID(s.SessionID), map[string]string{
		LabelSession: s.SessionID, LabelOwner: s.Owner, LabelKind: KindSession,
	})
}

// startBound bounds the sandbox starts under way at once. A burst of a
// few hundred sessions starting together leaves the host's CPU to
// hundreds of runc and shim processes, and the gateway's own decisions
// then miss their deadline; bounded, the starts finish in turn. One bound
// serves the runtime's cold starts and a warm pool's claims and refills
// (the pool keeps its state under mu), so together they never pass it.
// Waiting starts go before refills: a refill starts only when none waits.
type startBound struct {
	mu       sync.Mutex
	parallel int
	starting int           // starts under way (cold and refill)
	waiting  int           // starts waiting for a slot (or a pooled sandbox)
	changed  chan struct{} // closed (and replaced) when a slot frees or a sandbox is ready
	freed    func()        // called with mu held when a slot frees (the pool's refills)
}

func newStartBound(parallel int) *startBound {
	if parallel <= 0 {
		parallel = max(PoolMinStarts, PoolStartsPerCPU*goruntime.NumCPU())
	}
	return &startBound{parallel: parallel, changed: make(chan struct{})}
}

// run runs start in a slot, waiting for one until ctx ends.
func (b *startBound) run(ctx context.Context, start func() (Sandbox, error)) (Sandbox, error) {
	if err := b.acquire(ctx); err != nil {
		return nil, err
	}
	defer b.release()
	return start()
}

func (b *startBound) acquire(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.starting >= b.parallel {
		changed := b.changed
		b.waiting++
		b.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
		}
		b.mu.Lock()
		b.waiting--
		if ctx.Err() != nil {
			return b.waitErrLocked(ctx)
		}
	}
	b.starting++
	return nil
}

func (b *startBound) waitErrLocked(ctx context.Context) error {
	return fmt.Errorf("runtime: waiting for a sandbox start slot (%d starts under way, the bound): %w", b.starting, context.Cause(ctx))
}

// release frees a slot, wakes the waiters and lets refills run.
func (b *startBound) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.starting--
	b.wakeLocked()
	if b.freed != nil {
		b.freed()
	}
}

// wakeLocked wakes every waiter to look again.
func (b *startBound) wakeLocked() {
	if b.waiting > 0 {
		close(b.changed)
		b.changed = make(chan struct{})
	}
}

// create makes container id from s (workspace, socket, profile, image),
// labels it and starts PID 1. Nothing is left behind when it fails.
func (c *Containerd) create(ctx context.Context, s Spec, id string, labels map[string]string) (*ctrSandbox, error) {
	ctx = c.ns(ctx)
	if err := validateSessionID(s.SessionID); err != nil {
		return nil, err
	}
	if err := checkLimits(s.Profile); err != nil {
		return nil, err
	}
	// The class first: a class that cannot run here refuses the sandbox
	// before anything is made for it.
	rtName, rtOpts, err := c.classRuntime(s.Profile.RuntimeClass)
	if err != nil {
		return nil, err
	}
	ws, err := prepareWorkspace(ctx, s.Workspace, s.Profile.ReadOnly, c.opts.DiskDir, s.Profile.DiskMB)
	if err != nil {
		return nil, err
	}
	sock, err := prepareSocketDir(s.SocketDir)
	if err != nil {
		return nil, err
	}
	init := s.Init
	if len(init) == 0 {
		init = c.opts.Init
	}
	// Session sandboxes get PID 1's control channel; an upstream's runs
	// its one process with runc exec.
	var ctl string
	if labels[LabelKind] == KindSession {
		ctl = c.initControlDir(id, s.Profile.RuntimeClass)
	}
	spec, err := buildSpec(ctx, specInput{
		Namespace: c.opts.Namespace, ID: id, Init: init, Env: s.Env,
		Workspace: ws, SocketDir: sock, Profile: s.Profile, SeccompDir: c.opts.SeccompDir,
		InitControl: ctl,
	})
	if err != nil {
		return nil, err
	}
	ref := s.Image
	if ref == "" {
		ref = DefaultImage
	}
	img, err := c.image(ctx, ref)
	if err != nil {
		return nil, err
	}
	ctr, err := c.client.NewContainer(ctx, id,
		containerd.WithImageName(ref),
		containerd.WithSnapshotter(c.opts.Snapshotter),
		containerd.WithNewSnapshotView(id, img),
		containerd.WithRuntime(rtName, rtOpts),
		containerd.WithSpec(spec),
		containerd.WithContainerLabels(withOwner(labels)),
	)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("session %s already has a sandbox %s: %w", s.SessionID, id, err)
		}
		return nil, c.wrap("create container", err)
	}
	b := &ctrSandbox{rt: c, id: id, ctr: ctr, spec: spec, profile: s.Profile}
	if err := b.startTask(ctx); err != nil {
		cerr := b.remove(context.WithoutCancel(ctx))
		return nil, errors.Join(c.wrap("start task", err), cerr)
	}
	return b, nil
}

// image returns the image ref, unpacked into the snapshotter.
func (c *Containerd) image(ctx context.Context, ref string) (containerd.Image, error) {
	img, err := c.client.GetImage(ctx, ref)
	if err != nil && unavailable(err) {
		// The first call after a containerd restart: redial, try once more.
		c.redial()
		img, err = c.client.GetImage(ctx, ref)
	}
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s (build it: parachute image build)", ErrImageNotFound, ref)
	}
	if err != nil {
		return nil, c.wrap("get image", err)
	}
	if _, ok := c.unpacked.Load(ref); ok {
		return img, nil
	}
	ok, err := img.IsUnpacked(ctx, c.opts.Snapshotter)
	if err == nil && !ok {
		err = img.Unpack(ctx, c.opts.Snapshotter)
	}
	if err != nil {
		return nil, c.wrap("unpack image", err)
	}
	c.unpacked.Store(ref, true)
	return img, nil
}

// List returns the sandboxes carrying our label in our namespace.
func (c *Containerd) List(ctx context.Context) ([]Info, error) {
	ctx = c.ns(ctx)
	ctrs, err := c.client.Containers(ctx, fmt.Sprintf("labels.%q", LabelSession))
	if err != nil {
		return nil, c.wrap("list containers", err)
	}
	out := make([]Info, 0, len(ctrs))
	for _, ctr := range ctrs {
		info, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return nil, c.wrap("container info", err)
		}
		out = append(out, infoOf(info.ID, info.Labels, info.CreatedAt))
	}
	return out, nil
}

func infoOf(id string, labels map[string]string, created time.Time) Info {
	kind := labels[LabelKind]
	if kind == "" {
		kind = KindSession
	}
	pid, _ := strconv.Atoi(labels[LabelOwnerPID])
	return Info{
		ID: id, SessionID: labels[LabelSession], Owner: labels[LabelOwner],
		Kind: kind, Upstream: labels[LabelUpstream], Created: created,
		OwnerPID: pid, OwnerState: ownerState(labels),
	}
}

// RemoveOrphans kills and deletes every sandbox carrying our label whose
// creator is gone, and returns how many it removed. Call it at gateway
// start and before `sandbox run`: a sandbox that outlived the process that
// decided for it has no one deciding for it. Sandboxes of another live
// process (a `sandbox run` in progress) are left alone; those this process
// made itself, and those without owner labels, are removed.
func (c *Containerd) RemoveOrphans(ctx context.Context) (int, error) {
	removed, err := c.RemoveOrphaned(ctx)
	return len(removed), err
}

// RemoveOrphaned is RemoveOrphans returning what it removed (doctor
// lists it).
func (c *Containerd) RemoveOrphaned(ctx context.Context) ([]Info, error) {
	ctx = c.ns(ctx)
	ctrs, err := c.client.Containers(ctx, fmt.Sprintf("labels.%q", LabelSession))
	if err != nil {
		return nil, c.wrap("list containers", err)
	}
	var errs []error
	var removed []Info
	for _, ctr := range ctrs {
		info, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, c.wrap("container info", err))
			continue
		}
		in := infoOf(info.ID, info.Labels, info.CreatedAt)
		if !removable(in.OwnerState) {
			continue
		}
		if err := c.removeContainer(ctx, ctr); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, in)
	}
	return removed, errors.Join(errs...)
}

// withOwner adds this process's owner labels to labels.
func withOwner(labels map[string]string) map[string]string {
	out := ownerLabels()
	for k, v := range labels {
		out[k] = v
	}
	return out
}

// killAll sends SIGKILL to every process of a task and waits for PID 1.
func (c *Containerd) killAll(ctx context.Context, task containerd.Task, exitC <-chan containerd.ExitStatus) error {
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return c.wrap("kill", err)
	}
	if exitC == nil {
		return nil
	}
	select {
	case <-exitC:
		return nil
	case <-time.After(c.opts.StopTimeout):
		// A PID 1 under ptrace can hide from the shim's wait
		// (containerd 1.6); delete with WithProcessKill still removes it.
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
