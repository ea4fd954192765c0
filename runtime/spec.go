package runtime

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/parachute-gateway/parachute/engine"
)

// SandboxUID and SandboxGID are the user every sandbox process runs as
// (nobody:nogroup). There is no user namespace: the IDs are the host's, and
// the process holds no capability, so it is an unprivileged user on the
// host too.
const (
	SandboxUID = 65534
	SandboxGID = 65534
)

// cpuPeriod is the CFS period (µs) the CPU quota is expressed in.
const cpuPeriod = 100_000

// specInput is everything the OCI spec of one sandbox is built from. The
// paths are host paths already resolved and checked by prepareWorkspace.
type specInput struct {
	Namespace  string
	ID         string
	Init       []string
	Env        []string
	Workspace  string // resolved host path
	SocketDir  string // resolved host path, "" = no socket mount
	Profile    engine.SessionProfile
	SeccompDir string
	// InitControl is the host folder of PID 1's control socket, mounted
	// read-only at InitDir ("" = no control channel).
	InitControl string
}

// buildSpec composes the OCI spec of a sandbox. Apart from reading the
// seccomp profile file it is a pure function; the unit tests check every
// wall on its output.
func buildSpec(ctx context.Context, in specInput) (*specs.Spec, error) {
	if err := checkLimits(in.Profile); err != nil {
		return nil, err
	}
	if len(in.Init) == 0 {
		return nil, fmt.Errorf("%w: no init command", ErrInvalidSpec)
	}
	ctx = namespaces.WithNamespace(ctx, in.Namespace)
	return oci.GenerateSpec(ctx, nil, &containers.Container{ID: in.ID},
		WithSandboxProcess(in.Init, in.Env),
		WithSandboxUser(SandboxUID, SandboxGID),
		WithoutCapabilities(),
		oci.WithNoNewPrivileges,
		oci.WithRootFSReadonly(),
		WithPrivateNetwork(),
		WithSandboxMounts(in.Workspace, in.Profile.ReadOnly, in.SocketDir, in.Profile.TmpfsMB),
		WithInitControl(in.InitControl),
		WithProcPaths(),
		WithLimits(in.Profile.MemoryMB, in.Profile.CPUs, hostPIDs(in.Profile)),
		oci.WithHostname("sandbox"),
		// Seccomp last: the base profile depends on the capabilities.
		WithSeccompProfile(in.SeccompDir, in.Profile.Seccomp),
	)
}

// GVisorPIDsOverhead is added to the host PID limit of a gvisor sandbox:
// the limit is on the host cgroup, which also holds gVisor's own
// processes and threads (the Sentry's Go runtime, the gofer, one ptrace
// stub thread per sandbox thread). Without it a gvisor sandbox with a
// small pids limit cannot start. A fork bomb inside still stops at the
// host limit; the Sentry, unable to make a thread, then ends the whole
// sandbox (see docs/runtime.md).
const GVisorPIDsOverhead = 128

// hostPIDs is the PID limit the host cgroup gets for profile p.
func hostPIDs(p engine.SessionProfile) int64 {
	if p.RuntimeClass == ClassGVisor {
		return p.PIDs + GVisorPIDsOverhead
	}
	return p.PIDs
}

// checkLimits refuses a profile without limits: a zero means the policy
// said nothing, and a sandbox without limits is not one we start.
func checkLimits(p engine.SessionProfile) error {
	switch {
	case p.MemoryMB <= 0:
		return fmt.Errorf("%w: memory_mb must be > 0, got %d", ErrProfile, p.MemoryMB)
	case p.CPUs <= 0:
		return fmt.Errorf("%w: cpus must be > 0, got %g", ErrProfile, p.CPUs)
	case p.PIDs <= 0:
		return fmt.Errorf("%w: pids must be > 0, got %d", ErrProfile, p.PIDs)
	case p.TmpfsMB <= 0:
		return fmt.Errorf("%w: tmpfs_mb must be > 0, got %d", ErrProfile, p.TmpfsMB)
	case p.Runtime != "containerd":
		return fmt.Errorf("%w: runtime %q is not containerd", ErrProfile, p.Runtime)
	}
	return nil
}

// baseEnv is the environment every sandbox process starts with.
var baseEnv = []string{
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"HOME=/tmp",
	"TMPDIR=/tmp",
}

// WithSandboxProcess sets PID 1's command and environment, cwd /workspace,
// no terminal, a core size of 0 and at most 1024 open files.
func WithSandboxProcess(args, env []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.Args = slices.Clone(args)
		s.Process.Env = append(slices.Clone(baseEnv), env...)
		s.Process.Cwd = WorkspaceDir
		s.Process.Terminal = false
		s.Process.Rlimits = []specs.POSIXRlimit{
			{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024},
			{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
		}
		return nil
	}
}

// WithSandboxUser runs the process as uid:gid with no supplementary groups
// and umask 022. Identity comes from numbers, never from the image's
// /etc/passwd.
func WithSandboxUser(uid, gid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		umask := uint32(0o022)
		s.Process.User = specs.User{UID: uid, GID: gid, Umask: &umask}
		return nil
	}
}

// WithoutCapabilities empties every capability set.
func WithoutCapabilities() oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding:    []string{},
			Effective:   []string{},
			Inheritable: []string{},
			Permitted:   []string{},
			Ambient:     []string{},
		}
		return nil
	}
}

// WithPrivateNetwork gives the sandbox a fresh network namespace (runc
// brings up lo, nothing else: no CNI, no veth) and private PID, IPC, UTS
// and mount namespaces. A namespace path, which would join an existing
// namespace, is refused by being cleared.
func WithPrivateNetwork() oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		want := []specs.LinuxNamespaceType{
			specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace,
			specs.MountNamespace, specs.NetworkNamespace,
		}
		s.Linux.Namespaces = s.Linux.Namespaces[:0]
		for _, t := range want {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
		}
		return nil
	}
}

// WithSandboxMounts replaces every mount with the sandbox's own list:
// /proc, a minimal /dev, /sys read-only, a size-limited /tmp, the
// workspace, its .parachute folder read-only on top, and the socket dir
// read-only (connecting to a socket needs no write access to the mount).
// There is no host /var/run, no runtime socket and no other host path.
func WithSandboxMounts(workspace string, readOnly bool, socketDir string, tmpfsMB int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if !strings.HasPrefix(workspace, "/") {
			return fmt.Errorf("%w: workspace %q is not absolute", ErrInvalidSpec, workspace)
		}
		wsMode := "rw"
		if readOnly {
			wsMode = "ro"
		}
		s.Mounts = []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "strictatime", "mode=755", "size=64k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "mode=1777", "size=" + strconv.FormatInt(tmpfsMB, 10) + "m"}},
			{Destination: WorkspaceDir, Type: "bind", Source: workspace, Options: []string{"rbind", "rprivate", "nosuid", "nodev", wsMode}},
			{Destination: HooksDir, Type: "bind", Source: workspace + "/.parachute", Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "ro"}},
		}
		if socketDir != "" {
			if !strings.HasPrefix(socketDir, "/") {
				return fmt.Errorf("%w: socket dir %q is not absolute", ErrInvalidSpec, socketDir)
			}
			s.Mounts = append(s.Mounts, specs.Mount{
				Destination: SocketDir, Type: "bind", Source: socketDir,
				Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "ro"},
			})
		}
		return nil
	}
}

// WithInitControl bind-mounts dir, the host folder holding PID 1's
// control socket, read-only (nosuid, nodev, noexec) at InitDir. PID 1
// connects to the socket once at start; the runtime then unlinks it, so
// the mount holds nothing any turn can use. "" adds nothing.
func WithInitControl(dir string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if dir == "" {
			return nil
		}
		if !strings.HasPrefix(dir, "/") {
			return fmt.Errorf("%w: init control dir %q is not absolute", ErrInvalidSpec, dir)
		}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: InitDir, Type: "bind", Source: dir,
			Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "ro"},
		})
		return nil
	}
}

// initControlSource is the host folder of spec's init control mount, ""
// if it has none.
func initControlSource(s *specs.Spec) string {
	for _, m := range s.Mounts {
		if m.Destination == InitDir {
			return m.Source
		}
	}
	return ""
}

// WithProcPaths keeps containerd's masked and read-only /proc and /sys
// paths and makes sure /proc/sysrq-trigger and /proc/sys are read-only.
func WithProcPaths() oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		for _, p := range []string{"/proc/sysrq-trigger", "/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"} {
			if !slices.Contains(s.Linux.ReadonlyPaths, p) {
				s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, p)
			}
		}
		for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"} {
			if !slices.Contains(s.Linux.MaskedPaths, p) {
				s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, p)
			}
		}
		return nil
	}
}

// WithLimits sets the cgroup limits: memory with swap equal to memory (no
// swap on top), a CFS quota of cpus cores, and a PID limit.
func WithLimits(memoryMB int64, cpus float64, pids int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		r := s.Linux.Resources
		mem := memoryMB << 20
		swap := mem
		r.Memory = &specs.LinuxMemory{Limit: &mem, Swap: &swap}
		quota := int64(cpus * cpuPeriod)
		if quota < 1000 {
			quota = 1000 // the kernel's minimum
		}
		period := uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
		r.Pids = &specs.LinuxPids{Limit: &pids}
		return nil
	}
}
