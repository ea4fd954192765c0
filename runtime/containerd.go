package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
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
}

// Containerd runs session sandboxes as containerd tasks.
type Containerd struct {
	opts     ContainerdOptions
	client   *containerd.Client
	unpacked sync.Map   // image ref -> true once known unpacked
	dialMu   sync.Mutex // one redial at a time
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
	cl, err := containerd.New(opts.Address,
		containerd.WithDefaultNamespace(opts.Namespace),
		containerd.WithDefaultRuntime(opts.Runtime),
		containerd.WithTimeout(2*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, opts.Address, err)
	}
	return &Containerd{opts: opts, client: cl}, nil
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
// behind when it fails.
func (c *Containerd) Start(ctx context.Context, s Spec) (Sandbox, error) {
	if err := validateSessionID(s.SessionID); err != nil {
		return nil, err
	}
	return c.create(ctx, s, ContainerID(s.SessionID), map[string]string{
		LabelSession: s.SessionID, LabelOwner: s.Owner, LabelKind: KindSession,
	})
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
	ws, err := prepareWorkspace(s.Workspace, s.Profile.ReadOnly)
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
	spec, err := buildSpec(ctx, specInput{
		Namespace: c.opts.Namespace, ID: id, Init: init, Env: s.Env,
		Workspace: ws, SocketDir: sock, Profile: s.Profile, SeccompDir: c.opts.SeccompDir,
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
		containerd.WithRuntime(c.opts.Runtime, nil),
		containerd.WithSpec(spec),
		containerd.WithContainerLabels(labels),
	)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("session %s already has a sandbox %s: %w", s.SessionID, id, err)
		}
		return nil, c.wrap("create container", err)
	}
	b := &ctrSandbox{rt: c, id: id, ctr: ctr, spec: spec, profile: s.Profile}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err == nil {
		b.task = task
		// PID 1's exit is watched beyond ctx: a cancelled start context
		// must not read as PID 1 having exited.
		if b.exitC, err = task.Wait(context.WithoutCancel(ctx)); err == nil {
			err = task.Start(ctx)
		}
	}
	if err != nil {
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
		kind := info.Labels[LabelKind]
		if kind == "" {
			kind = KindSession
		}
		out = append(out, Info{
			ID: info.ID, SessionID: info.Labels[LabelSession], Owner: info.Labels[LabelOwner],
			Kind: kind, Upstream: info.Labels[LabelUpstream], Created: info.CreatedAt,
		})
	}
	return out, nil
}

// RemoveOrphans kills and deletes every sandbox carrying our label. Call it
// at gateway start, when no session of this gateway can be running: a
// sandbox that outlived its gateway has no one deciding for it.
func (c *Containerd) RemoveOrphans(ctx context.Context) (int, error) {
	ctx = c.ns(ctx)
	ctrs, err := c.client.Containers(ctx, fmt.Sprintf("labels.%q", LabelSession))
	if err != nil {
		return 0, c.wrap("list containers", err)
	}
	var errs []error
	n := 0
	for _, ctr := range ctrs {
		b := &ctrSandbox{rt: c, id: ctr.ID(), ctr: ctr}
		if t, err := ctr.Task(ctx, nil); err == nil {
			b.task = t
			b.exitC, _ = t.Wait(ctx)
		}
		if err := b.remove(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
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
