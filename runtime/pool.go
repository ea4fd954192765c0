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
//
// Sizing: each profile keeps Size sandboxes ready. Under a burst it grows:
// its target is Size plus the claims (pooled or cold) of the last
// PoolRateWindow, never more than Max. A window without a claim shrinks
// it back to Size. Ready plus starting never exceeds Max: a start is a
// reservation made before it runs.
//
// Starts: at most Parallel sandbox starts run at once, cold starts and
// refills together, for all profiles, and the runtime's own cold starts
// (Containerd.Start, which share the one bound). A burst of a few hundred sessions
// starting at once leaves the host's CPU to hundreds of runc and shim
// processes, and the gateway's own decisions then miss their deadline
// (overloaded); bounded, the starts finish in turn and the sessions
// already started keep being served. A claim with nothing ready takes a
// free slot and starts cold; when there is none it waits for one, or for
// a sandbox becoming ready, whichever comes first, until its context
// ends. Waiting claims go before refills: a refill starts only when no
// claim waits, so a claim never waits behind one.
type Pool struct {
	c    *Containerd
	be   poolBackend
	dir  string
	size int
	max  int

	// b is the start bound, shared with the runtime's cold starts
	// (Containerd.Start): its mutex guards the pool's state too, so a
	// slot, a ready sandbox and the waiters are seen in one place.
	b    *startBound
	keys map[string]*poolKeyState
	wg   sync.WaitGroup
	done bool

	// refills is the context of background refills, cancelled by Close
	// so a start stuck in containerd gives up.
	refills      context.Context
	cancelRefill context.CancelFunc
}

// poolKeyState is one profile's pool.
type poolKeyState struct {
	tmpl     Spec // the profile's last spec: what refills start
	ready    []*pooled
	starting int         // starts under way for this profile
	claims   []time.Time // claim times within PoolRateWindow, oldest first
	failed   bool        // the last start failed: no more until the next claim
	trim     *time.Timer // shrinks the pool back to Size after a quiet window
}

// poolBackend makes, hands out and removes the pool's sandboxes:
// containerd (ctrPool), or a fake in the tests of the pool's logic.
type poolBackend interface {
	// startPooled starts a sandbox for tmpl's profile. On failure it may
	// return a half-made sandbox with the error, for the pool to remove.
	startPooled(ctx context.Context, tmpl Spec) (*pooled, error)
	claimPooled(ctx context.Context, w *pooled, s Spec) (Sandbox, error)
	removePooled(ctx context.Context, w *pooled) error
	startCold(ctx context.Context, s Spec) (Sandbox, error)
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
	// Max is the most a profile's pool grows to under a burst of claims
	// (ready and starting together); at most Size (the default) keeps the
	// pool fixed at Size.
	Max int
	// Parallel bounds the sandbox starts under way at once, cold starts
	// and refills, all profiles together, and the runtime's own
	// Containerd.Start (the bound is shared; 0 keeps the runtime's
	// ContainerdOptions.StartParallel).
	Parallel int
}

const (
	// PoolRateWindow is how far back claims count toward a profile's
	// target, and how long without a claim shrinks it back to Size.
	PoolRateWindow = 10 * time.Second
	// PoolStartsPerCPU sets the default bound on concurrent starts: this
	// many per CPU, at least PoolMinStarts (4 on a 2-core host).
	PoolStartsPerCPU = 2
	PoolMinStarts    = 4
	// PoolCleanupTimeout bounds the removal of a sandbox whose pooled
	// start or claim failed, and of one trimmed or finished after Close.
	PoolCleanupTimeout = 30 * time.Second
	// PoolCloseTimeout bounds Close when the caller's context has no
	// deadline.
	PoolCloseTimeout = 30 * time.Second
)

// NewPool returns a pool over c. Staging mounts left by an earlier run
// under Dir are detached and removed first (their containers are removed
// by RemoveOrphans).
func (c *Containerd) NewPool(opts PoolOptions) (*Pool, error) {
	if !filepath.IsAbs(opts.Dir) {
		return nil, fmt.Errorf("%w: pool dir %q is not absolute", ErrInvalidSpec, opts.Dir)
	}
	if err := cleanStages(opts.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	p := newPoolOn(ctrPool{c: c, dir: opts.Dir}, opts, c.starts)
	p.c, p.dir = c, opts.Dir
	return p, nil
}

// newPool returns a pool over be with a start bound of its own.
func newPool(be poolBackend, opts PoolOptions) *Pool {
	return newPoolOn(be, opts, newStartBound(0))
}

// newPoolOn returns a pool over be sharing the start bound b (the
// runtime's, so cold starts without the pool count too). A non-zero
// opts.Parallel sets b's bound.
func newPoolOn(be poolBackend, opts PoolOptions, b *startBound) *Pool {
	if opts.Size <= 0 {
		opts.Size = 1
	}
	if opts.Max < opts.Size {
		opts.Max = opts.Size
	}
	p := &Pool{be: be, size: opts.Size, max: opts.Max, b: b, keys: map[string]*poolKeyState{}}
	p.refills, p.cancelRefill = context.WithCancel(context.Background())
	b.mu.Lock()
	if opts.Parallel > 0 {
		b.parallel = opts.Parallel
	}
	// A slot freed by a cold start outside the pool lets refills run.
	b.freed = func() {
		if !p.done {
			p.scheduleLocked(time.Now())
		}
	}
	b.mu.Unlock()
	return p
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
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if k := p.keys[poolKey(s)]; k != nil {
		return len(k.ready)
	}
	return 0
}

// ReadyTotal is how many sandboxes are waiting, for every profile.
func (p *Pool) ReadyTotal() int {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	n := 0
	for _, k := range p.keys {
		n += len(k.ready)
	}
	return n
}

// Start gives the session a pooled sandbox if one matches, else starts
// one cold, in a start slot (waiting for one, or for a ready sandbox,
// when all are taken). Either way the claim counts toward the profile's
// target and the refill is scheduled before the claim is served, so it
// runs alongside a cold start rather than after it.
func (p *Pool) Start(ctx context.Context, s Spec) (Sandbox, error) {
	if err := validateSessionID(s.SessionID); err != nil {
		return nil, err
	}
	if !poolable(s.Profile.RuntimeClass) {
		return p.b.run(ctx, func() (Sandbox, error) { return p.be.startCold(ctx, s) })
	}
	key := poolKey(s)
	p.b.mu.Lock()
	if p.done {
		p.b.mu.Unlock()
		return p.be.startCold(ctx, s)
	}
	k := p.keys[key]
	if k == nil {
		k = &poolKeyState{}
		p.keys[key] = k
	}
	k.tmpl = s
	k.failed = false
	k.claims = append(k.claims, time.Now())
	p.armTrimLocked(key, k)
	w, slot, err := p.takeLocked(ctx, k)
	if err == nil {
		p.scheduleLocked(time.Now())
	}
	p.b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if w != nil {
		sb, err := p.be.claimPooled(ctx, w, s)
		if err == nil {
			return sb, nil
		}
		p.discard(w) // in the background: the session starts cold meanwhile
		if errors.Is(err, ErrInvalidSpec) {
			return nil, err
		}
		return p.b.run(ctx, func() (Sandbox, error) { return p.be.startCold(ctx, s) })
	}
	if slot {
		defer p.release()
	}
	return p.be.startCold(ctx, s)
}

// takeLocked returns a ready sandbox of k, or takes a start slot (slot),
// waiting for either while all slots are taken; p.b.mu is held, and
// released while waiting. A closed pool gives neither (start cold).
func (p *Pool) takeLocked(ctx context.Context, k *poolKeyState) (w *pooled, slot bool, err error) {
	for {
		switch {
		case len(k.ready) > 0:
			w, k.ready = k.ready[0], k.ready[1:]
			return w, false, nil
		case p.done:
			return nil, false, nil
		case p.b.starting < p.b.parallel:
			p.b.starting++
			return nil, true, nil
		}
		changed := p.b.changed
		p.b.waiting++
		p.b.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
		}
		p.b.mu.Lock()
		p.b.waiting--
		if ctx.Err() != nil {
			return nil, false, p.b.waitErrLocked(ctx)
		}
	}
}

// release frees a cold start's slot (and schedules refills).
func (p *Pool) release() { p.b.release() }

// wakeLocked wakes every waiting claim to look again.
func (p *Pool) wakeLocked() { p.b.wakeLocked() }

// poolable says whether sandboxes of a class can be started before their
// session. gvisor cannot: its gofer serves each bind mount from the folder
// it opened at start, so a workspace attached onto the staging folder
// afterwards is never seen inside (the sandbox would run on an empty
// /workspace). gvisor sessions always start cold.
func poolable(class string) bool { return class != ClassGVisor }

// targetLocked is how many sandboxes key should hold (ready and
// starting): Size plus the claims of the last PoolRateWindow, at most Max.
func (p *Pool) targetLocked(k *poolKeyState, now time.Time) int {
	cut := 0
	for cut < len(k.claims) && now.Sub(k.claims[cut]) >= PoolRateWindow {
		cut++
	}
	k.claims = k.claims[cut:]
	return min(p.size+len(k.claims), p.max)
}

// scheduleLocked starts refills in the free start slots for every
// profile below its target, unless a claim is waiting for a slot (it
// goes first). Each start is counted before it runs, so ready plus
// starting never passes Max.
func (p *Pool) scheduleLocked(now time.Time) {
	for _, k := range p.keys {
		if k.failed {
			continue
		}
		target := p.targetLocked(k, now)
		for !p.done && p.b.waiting == 0 && p.b.starting < p.b.parallel && len(k.ready)+k.starting < target {
			k.starting++
			p.b.starting++
			p.wg.Add(1)
			go p.startOne(k, k.tmpl)
		}
	}
}

// startOne runs one refill start for k and files its sandbox.
func (p *Pool) startOne(k *poolKeyState, tmpl Spec) {
	defer p.wg.Done()
	w, err := p.be.startPooled(p.refills, tmpl)
	if err != nil && w != nil {
		p.removeBounded(w) // a half-made sandbox
	}
	p.b.mu.Lock()
	k.starting--
	p.b.starting--
	switch {
	case err != nil:
		k.failed = true // cold starts still work; the next claim retries
		w = nil
	case p.done:
	default:
		k.ready = append(k.ready, w)
		w = nil
	}
	p.wakeLocked()
	if !p.done {
		p.scheduleLocked(time.Now())
	}
	p.b.mu.Unlock()
	if w != nil { // finished after Close
		p.removeBounded(w)
	}
}

// armTrimLocked (re)sets key's trim to one PoolRateWindow after its last
// claim, when the pool can grow past Size at all.
func (p *Pool) armTrimLocked(key string, k *poolKeyState) {
	if p.max <= p.size {
		return
	}
	if k.trim == nil {
		k.trim = time.AfterFunc(PoolRateWindow, func() { p.shrink(key) })
		return
	}
	k.trim.Reset(PoolRateWindow)
}

// shrink removes what key holds ready beyond its target (Size after a
// quiet window), the oldest first.
func (p *Pool) shrink(key string) {
	p.b.mu.Lock()
	k := p.keys[key]
	if p.done || k == nil {
		p.b.mu.Unlock()
		return
	}
	extra := len(k.ready) + k.starting - p.targetLocked(k, time.Now())
	extra = min(max(extra, 0), len(k.ready))
	gone := slices.Clone(k.ready[:extra])
	k.ready = k.ready[extra:]
	p.wg.Add(len(gone))
	p.b.mu.Unlock()
	for _, w := range gone {
		go func() { defer p.wg.Done(); p.removeBounded(w) }()
	}
}

// discard removes a sandbox whose claim failed, in the background.
func (p *Pool) discard(w *pooled) {
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.removeBounded(w) }()
}

// removeBounded removes w within PoolCleanupTimeout, whatever context
// led here: a cancelled refill (Close) must still clean up, and a wedged
// containerd must not hold the cleanup forever. What is left carries the
// owner label, for the next start's RemoveOrphans.
func (p *Pool) removeBounded(w *pooled) {
	ctx, cancel := context.WithTimeout(context.Background(), PoolCleanupTimeout)
	defer cancel()
	_ = p.be.removePooled(ctx, w)
}

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
	p.b.mu.Lock()
	p.done = true
	p.wakeLocked() // waiting claims start cold
	for _, k := range p.keys {
		if k.trim != nil {
			k.trim.Stop()
		}
	}
	p.b.mu.Unlock()
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
	p.b.mu.Lock()
	var ready []*pooled
	for _, k := range p.keys {
		ready = append(ready, k.ready...)
		k.ready = nil
	}
	p.b.mu.Unlock()
	for _, w := range ready {
		if err := p.be.removePooled(ctx, w); err != nil {
			errs = append(errs, fmt.Errorf("runtime: pool close: %w", err))
		}
	}
	return errors.Join(errs...)
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ctrPool is the pool's containerd backend.
type ctrPool struct {
	c   *Containerd
	dir string
}

// startCold runs in a slot the pool took, so not through Containerd.Start
// (which would take a second one).
func (p ctrPool) startCold(ctx context.Context, s Spec) (Sandbox, error) { return p.c.start(ctx, s) }

// removePooled removes a waiting sandbox and its staging folders.
func (p ctrPool) removePooled(ctx context.Context, w *pooled) error {
	err := w.sb.remove(w.sb.rt.ns(ctx))
	cleanStage(w.stage)
	if err != nil {
		return fmt.Errorf("sandbox %s not removed: %w", w.sb.id, err)
	}
	return nil
}

// startPooled creates a pooled sandbox for tmpl's profile.
func (p ctrPool) startPooled(ctx context.Context, tmpl Spec) (*pooled, error) {
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
		Profile: prof, SeccompDir: p.c.opts.SeccompDir, InitControl: p.c.initControlDir(ContainerID(id), prof.RuntimeClass),
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
	if err := b.startTask(ctx); err != nil {
		// The pool removes it, under PoolCleanupTimeout: ctx may be the
		// refill's, cancelled by Close.
		return w, p.c.wrap("start task", err)
	}
	return w, nil
}

// claimPooled attaches the session's folders to a pooled sandbox and
// labels it.
func (p ctrPool) claimPooled(ctx context.Context, w *pooled, s Spec) (Sandbox, error) {
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
