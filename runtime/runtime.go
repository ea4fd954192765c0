// Package runtime starts and drives the sandbox an agent session runs in.
//
// Two runtimes implement the same shape: Containerd runs each session in a
// containerd task (seccomp, no capabilities, no network interface but lo,
// cgroup limits, read-only root, non-root user; see docs/runtime.md), and
// Direct runs turns as host processes, which only the "direct" trust level
// may get. The sandbox profile comes from the parachute.session decision
// (engine.SessionProfile); this package never widens it: anything it cannot
// apply is an error, not a silent downgrade.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// DefaultImage is the sandbox image a Spec gets when it names none.
const DefaultImage = "parachute.local/sandbox:latest"

// Labels put on every container this package creates. List and
// RemoveOrphans only ever touch containers carrying LabelSession; an
// upstream's sandbox carries it too (the session it serves), so orphan
// removal covers it.
const (
	LabelSession  = "parachute.session"
	LabelOwner    = "parachute.owner"
	LabelKind     = "parachute.kind"     // KindSession or KindUpstream
	LabelUpstream = "parachute.upstream" // the upstream's configured name
)

// Values of LabelKind. A container without the label (a warm pool's) is a
// session sandbox.
const (
	KindSession  = "session"
	KindUpstream = "upstream"
)

// Paths inside the sandbox.
const (
	WorkspaceDir = "/workspace"            // the session's workspace
	HooksDir     = "/workspace/.parachute" // the vault's hooks and config, always read-only
	SocketDir    = "/run/parachute"        // the session socket: the only way out
)

// Defaults for a Turn.
const (
	DefaultTurnTimeout = 2 * time.Minute
	DefaultOutputLimit = 1 << 20 // bytes per stream
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrUnavailable: containerd could not be reached.
	ErrUnavailable = errors.New("runtime: containerd unavailable")
	// ErrInvalidSpec: the Spec or Turn is malformed (bad ID, relative path…).
	ErrInvalidSpec = errors.New("runtime: invalid sandbox spec")
	// ErrProfile: the sandbox profile cannot be applied as asked (unknown
	// seccomp profile, wrong runtime for this runner…).
	ErrProfile = errors.New("runtime: profile refused")
	// ErrImageNotFound: the image is not in containerd's image store.
	ErrImageNotFound = errors.New("runtime: image not found")
	// ErrStopped: the sandbox was stopped; it runs no more turns.
	ErrStopped = errors.New("runtime: sandbox stopped")
)

// Spec is one session sandbox.
type Spec struct {
	SessionID string                // also container ID suffix; [a-zA-Z0-9_-]
	Owner     string                // identity, stored as a label only
	Image     string                // image ref; "" = DefaultImage
	Workspace string                // host dir mounted at /workspace (read-only if Profile.ReadOnly)
	SocketDir string                // host dir holding the session socket, mounted at /run/parachute
	Profile   engine.SessionProfile // from the parachute.session decision
	Env       []string              // extra env (never secrets)
	// Init overrides the sandbox's PID 1 (default ContainerdOptions.Init).
	// Whatever runs there must reap zombies.
	Init []string
}

// Turn is one command run in a sandbox.
type Turn struct {
	Args    []string // command to exec, e.g. {"/parachute", "agent"}
	Stdin   io.Reader
	Stdout  io.Writer     // capped at OutputLimit; excess dropped, Result.Truncated
	Stderr  io.Writer     // same cap, counted separately
	Timeout time.Duration // default Profile.TurnTimeout or DefaultTurnTimeout
	Env     []string
	// OutputLimit caps each of Stdout and Stderr (default DefaultOutputLimit).
	OutputLimit int64
}

// Result is how a turn ended.
type Result struct {
	ExitCode  int // as the shim reports it: 128+N when killed by signal N
	TimedOut  bool
	Truncated bool
	Duration  time.Duration
}

// Sandbox is one running session sandbox.
type Sandbox interface {
	ID() string
	// Exec runs one turn. Turns on one sandbox run one at a time.
	Exec(ctx context.Context, t Turn) (Result, error)
	// Stop kills every process with SIGKILL and deletes task, container and
	// snapshot. Stop twice is not an error.
	Stop(ctx context.Context) error
}

// Info describes one sandbox found by List.
type Info struct {
	ID, SessionID, Owner string
	Kind                 string // KindSession or KindUpstream
	Upstream             string // the upstream's name when Kind is KindUpstream
	Created              time.Time
	OwnerPID             int        // the process that created it (0: not labelled)
	OwnerState           OwnerState // whether that process still runs
}

var sessionIDRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// ContainerID is the container ID of a session: "parachute-" + SessionID.
func ContainerID(sessionID string) string { return "parachute-" + sessionID }

// validateSessionID refuses IDs that could not be a container ID or a path
// element.
func validateSessionID(id string) error {
	if !sessionIDRE.MatchString(id) {
		return fmt.Errorf("%w: session ID %q must be 1-64 of [a-zA-Z0-9_-]", ErrInvalidSpec, id)
	}
	return nil
}

// turnTimeout picks the timeout of a turn.
func turnTimeout(t Turn, p engine.SessionProfile) time.Duration {
	switch {
	case t.Timeout > 0:
		return t.Timeout
	case p.TurnTimeout > 0:
		return p.TurnTimeout
	}
	return DefaultTurnTimeout
}
