package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Pool keeps pre-started sandboxes so that a new session skips the
// container and shim start (most of a cold start). A pooled sandbox is
// created for one profile (image, seccomp, limits, environment) with empty
// staging folders where the workspace and the session socket go; when a
// session claims it, the gateway attaches the session's folders onto the
// staging folders on the host and mount propagation (host to sandbox only:
// the sandbox's mounts are slaves) makes them appear at /workspace and
// /run/parachute inside. The attached mounts are made with the new mount
// API, so their read-only flag is set before they become visible:
// /workspace/.parachute is always read-only, the workspace when the
// profile says so.
//
// A pooled sandbox serves one session and is then removed, like any
// other. Profiles the pool has not seen start cold and teach the pool
// their key; after that, each claim is followed by a refill.
type Pool struct {
	c    *Containerd
	dir  string
	size int

	mu    sync.Mutex
	ready map[string][]*pooled // by poolKey
	fill  map[string]bool      // refill under way
	wg    sync.WaitGroup
	done  bool

	// refills is the context of background refills, cancelled by Close
	// so a start stuck in containerd gives up.
	refills      context.Context
	cancelRefill context.CancelFunc
}

// pooled is a started sandbox waiting for a session.
type pooled struct {
	sb    *ctrSandbox
	stage string // holds ws/ and sock/, shared mount points
}

// PoolOptions configure a Pool.
type PoolOptions struct {
	// Dir holds the staging folders (created, 0700).
	Dir string
	// Size is how many sandboxes are kept ready per profile (default 1).
	Size int
}

// NewPool returns a pool over c. Staging mounts left by an earlier run
// under Dir are detached and removed first (their containers are removed
// by RemoveOrphans).
func (c *Containerd) NewPool(opts PoolOptions) (*Pool, error) {
	if !filepath.IsAbs(opts.Dir) {
		return nil, fmt.Errorf("%w: pool dir %q is not absolute", ErrInvalidSpec, opts.Dir)
	}
	if opts.Size <= 0 {
		opts.Size = 1
	}
	if err := cleanStages(opts.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	p := &Pool{c: c, dir: opts.Dir, size: opts.Size, ready: map[string][]*pooled{}, fill: map[string]bool{}}
	p.refills, p.cancelRefill = context.WithCancel(context.Background())
	return p, nil
}

// poolKey is what a pooled sandbox must match (so pools are per runtime
// class and seccomp profile, among the rest): everything in the spec but
// the session's folders and the workspace's read-only flag (applied when
// the workspace is attached).
func poolKey(s Spec) string {
	p := s.Profile
	return strings.Join([]string{s.Image, strings.Join(s.Init, "\x00"), strings.Join(s.Env, "\x00"), p.Runtime, p.RuntimeClass, p.Seccomp,
		fmt.Sprint(p.MemoryMB, p.CPUs, p.PIDs, p.TmpfsMB, p.Network)}, "\x01")
}

// Ready is how many sandboxes are waiting for a session like s.
func (p *Pool) Ready(s Spec) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready[poolKey(s)])
}

// ReadyTotal is how many sandboxes are waiting, for every profile.
func (p *Pool) ReadyTotal() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, list := range p.ready {
		n += len(list)
	}
	return n
}

// Start gives the session a pooled sandbox if one matches, else starts
// one cold; either way the pool is refilled for this profile.
func (p *Pool) Start(ctx context.Context, s Spec) (Sandbox, error) {
	if err := validateSessionID(s.SessionID); err != nil {
		return nil, err
	}
	if !poolable(s.Profile.RuntimeClass) {
		return p.c.Start(ctx, s)
	}
	key := poolKey(s)
	p.mu.Lock()
	var w *pooled
	if list := p.ready[key]; len(list) > 0 {
		w, p.ready[key] = list[0], list[1:]
	}
	p.mu.Unlock()
	defer p.refill(key, s)
	if w != nil {
		sb, err := p.claim(ctx, w, s)
		if err == nil {
			return sb, nil
		}
		w.remove(context.WithoutCancel(ctx))
		if errors.Is(err, ErrInvalidSpec) {
			return nil, err
		}
	}
	return p.c.Start(ctx, s)
}

// poolable says whether sandboxes of a class can be started before their
// session. gvisor cannot: its gofer serves each bind mount from the folder
// it opened at start, so a workspace attached onto the staging folder
// afterwards is never seen inside (the sandbox would run on an empty
// /workspace). gvisor sessions always start cold.
func poolable(class string) bool { return class != ClassGVisor }

// refill starts sandboxes for key in the background until Size are ready.
func (p *Pool) refill(key string, tmpl Spec) {
	p.mu.Lock()
	if p.done || p.fill[key] || len(p.ready[key]) >= p.size {
		p.mu.Unlock()
		return
	}
	p.fill[key] = true
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() { p.mu.Lock(); p.fill[key] = false; p.mu.Unlock() }()
		for {
			p.mu.Lock()
			enough := p.done || len(p.ready[key]) >= p.size
			p.mu.Unlock()
			if enough {
				return
			}
			w, err := p.start(p.refills, tmpl)
			if err != nil {
				return // cold starts still work; the next Start retries
			}
			p.mu.Lock()
			if p.done {
				p.mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), PoolCloseTimeout)
				w.remove(ctx)
				cancel()
				return
			}
			p.ready[key] = append(p.ready[key], w)
			p.mu.Unlock()
		}
	}()
}

// PoolCloseTimeout bounds Close when the caller's context has no deadline.
const PoolCloseTimeout = 30 * time.Second

// Close removes every waiting sandbox and its staging folders. It cancels
// refills under way and waits for them, then removes what is ready, all
// within ctx's deadline (PoolCloseTimeout if ctx has none), so a wedged
// containerd cannot hold the gateway's shutdown. What could not be
// removed in time is returned, each sandbox by ID; such leftovers carry
// the gateway's owner label, and the next start's RemoveOrphans removes
// them.
func (p *Pool) Close(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, PoolCloseTimeout)
		defer cancel()
	}
	p.mu.Lock()
	p.done = true
	p.mu.Unlock()
	if p.cancelRefill != nil {
		p.cancelRefill()
	}
	var errs []error
	refilled := make(chan struct{})
	go func() { p.wg.Wait(); close(refilled) }()
	select {
	case <-refilled:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("runtime: pool close: a sandbox start still under way (%w); its sandbox may be left for the next start's orphan removal", context.Cause(ctx)))
	}
	p.mu.Lock()
	ready := p.ready
	p.ready = map[string][]*pooled{}
	p.mu.Unlock()
	for _, list := range ready {
		for _, w := range list {
			if err := w.sb.remove(w.sb.rt.ns(ctx)); err != nil {
				errs = append(errs, fmt.Errorf("runtime: pool close: sandbox %s not removed: %w", w.sb.id, err))
			}
			cleanStage(w.stage)
		}
	}
	return errors.Join(errs...)
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// start creates a pooled sandbox for tmpl's profile.
func (p *Pool) start(ctx context.Context, tmpl Spec) (*pooled, error) {
	ctx = p.c.ns(ctx)
	if err := checkLimits(tmpl.Profile); err != nil {
		return nil, err
	}
	rtName, rtOpts, err := p.c.classRuntime(tmpl.Profile.RuntimeClass)
	if err != nil {
		return nil, err
	}
	id := "pool-" + randomID()
	stage := filepath.Join(p.dir, id)
	for _, d := range []string{"ws", "sock"} {
		if err := sharedMountPoint(filepath.Join(stage, d)); err != nil {
			cleanStage(stage)
			return nil, err
		}
	}
	init := tmpl.Init
	if len(init) == 0 {
		init = p.c.opts.Init
	}
	prof := tmpl.Profile
	prof.ReadOnly = false // the attached workspace carries the flag
	spec, err := buildSpec(ctx, specInput{
		Namespace: p.c.opts.Namespace, ID: ContainerID(id), Init: init, Env: tmpl.Env,
		Workspace: filepath.Join(stage, "ws"), SocketDir: filepath.Join(stage, "sock"),
		Profile: prof, SeccompDir: p.c.opts.SeccompDir,
	})
	if err != nil {
		cleanStage(stage)
		return nil, err
	}
	// The staging mounts receive what the host attaches later (slave),
	// and nothing the sandbox does reaches the host. .parachute arrives
	// read-only with the workspace.
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == HooksDir })
	for i, m := range spec.Mounts {
		if m.Destination == WorkspaceDir || m.Destination == SocketDir {
			// The staging folder itself is read-only; what is attached
			// on top carries its own flags.
			spec.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "rprivate" || o == "ro" || o == "rw" })
			spec.Mounts[i].Options = append(spec.Mounts[i].Options, "rslave", "ro")
		}
	}
	ref := tmpl.Image
	if ref == "" {
		ref = DefaultImage
	}
	img, err := p.c.image(ctx, ref)
	if err != nil {
		cleanStage(stage)
		return nil, err
	}
	ctr, err := p.c.client.NewContainer(ctx, ContainerID(id),
		containerd.WithImageName(ref),
		containerd.WithSnapshotter(p.c.opts.Snapshotter),
		containerd.WithNewSnapshotView(ContainerID(id), img),
		containerd.WithRuntime(rtName, rtOpts),
		containerd.WithSpec(spec),
		containerd.WithContainerLabels(withOwner(map[string]string{LabelSession: id})),
	)
	if err != nil {
		cleanStage(stage)
		return nil, p.c.wrap("create container", err)
	}
	b := &ctrSandbox{rt: p.c, id: ContainerID(id), ctr: ctr, spec: spec}
	w := &pooled{sb: b, stage: stage}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err == nil {
		b.task = task
		if b.exitC, err = task.Wait(ctx); err == nil {
			err = task.Start(ctx)
		}
	}
	if err != nil {
		w.remove(context.WithoutCancel(ctx))
		return nil, p.c.wrap("start task", err)
	}
	return w, nil
}

// claim attaches the session's folders to a pooled sandbox and labels it.
func (p *Pool) claim(ctx context.Context, w *pooled, s Spec) (Sandbox, error) {
	ws, err := prepareWorkspace(ctx, s.Workspace, s.Profile.ReadOnly, p.c.opts.DiskDir, s.Profile.DiskMB)
	if err != nil {
		return nil, err
	}
	sock, err := prepareSocketDir(s.SocketDir)
	if err != nil {
		return nil, err
	}
	stageWS := filepath.Join(w.stage, "ws")
	if err := attach(ws, stageWS, s.Profile.ReadOnly); err != nil {
		return nil, err
	}
	if err := attach(filepath.Join(ws, ".parachute"), filepath.Join(stageWS, ".parachute"), true); err != nil {
		return nil, err
	}
	if sock != "" {
		if err := attach(sock, filepath.Join(w.stage, "sock"), true); err != nil {
			return nil, err
		}
	}
	ctx = p.c.ns(ctx)
	if _, err := w.sb.ctr.SetLabels(ctx, map[string]string{LabelSession: s.SessionID, LabelOwner: s.Owner}); err != nil {
		return nil, p.c.wrap("label container", err)
	}
	w.sb.profile = s.Profile
	return &poolSandbox{ctrSandbox: w.sb, stage: w.stage}, nil
}

// poolSandbox is a claimed pooled sandbox; Stop also detaches its staging
// mounts.
type poolSandbox struct {
	*ctrSandbox
	stage string
}

func (b *poolSandbox) Stop(ctx context.Context) error {
	err := b.ctrSandbox.Stop(ctx)
	cleanStage(b.stage)
	return err
}

func (w *pooled) remove(ctx context.Context) {
	_ = w.sb.remove(w.sb.rt.ns(ctx))
	cleanStage(w.stage)
}

// sharedMountPoint makes dir a mount point of its own with shared
// propagation, so mounts attached onto it later reach the sandboxes'
// slave copies.
func sharedMountPoint(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pool: bind %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return fmt.Errorf("pool: make %s shared: %w", dir, err)
	}
	return nil
}

// attach clones src (a folder, not following a final symlink) and mounts
// the clone onto dst with its flags already set: nosuid and nodev always,
// read-only and noexec when readOnly. The clone is set up detached, so it
// is never visible with weaker flags.
func attach(src, dst string, readOnly bool) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("pool: clone %s: %w", src, err)
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if readOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOEXEC
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("pool: set flags on %s: %w", src, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("pool: attach %s: %w", src, err)
	}
	return nil
}

// cleanStage detaches every mount under stage and removes the staging
// folders. It never removes recursively: a folder that is still a mount
// point (the user's workspace) is left in place, never emptied.
func cleanStage(stage string) {
	for _, d := range []string{"ws/.parachute", "sock", "ws"} {
		p := filepath.Join(stage, d)
		// Attached mounts stack on the shared staging mounts: detach
		// until the path is no longer a mount point.
		for i := 0; i < 4 && unix.Unmount(p, unix.MNT_DETACH) == nil; i++ {
		}
	}
	for _, d := range []string{"ws", "sock", ""} {
		_ = os.Remove(filepath.Join(stage, d)) // only if empty
	}
}

// cleanStages removes the stages an earlier run left under dir.
func cleanStages(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "pool-") {
			cleanStage(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}
