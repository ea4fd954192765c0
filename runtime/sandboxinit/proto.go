package sandboxinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/parachute-gateway/parachute/internal/strictjson"
)

// The control channel between the runtime (on the host) and PID 1.
//
// The runtime creates a private folder per sandbox, listens on
// ControlSocket in it and bind-mounts the folder read-only at ControlDir
// before the sandbox starts. PID 1 connects once, first thing; the runtime
// accepts exactly that one connection (its SO_PEERCRED pid must be the
// task's PID 1 and its uid the sandbox's), then closes the listener and
// unlinks the socket. No turn can ever connect: the socket is gone before
// the first turn is started, and PID 1's end is close-on-exec and, PID 1
// being non-dumpable, unreachable through /proc/1/fd.
//
// ControlDir is under /dev, the tmpfs runc makes for every container, so
// its mount point can be made in any image, however old (the image's own
// root is a read-only snapshot: a folder it lacks cannot be created).
//
// Messages are single SOCK_SEQPACKET datagrams of strict JSON
// (internal/strictjson: exact member names, no duplicates, no unknown
// members), at most MaxMessage bytes.
const (
	ControlDir    = "/dev/parachute-init"
	ControlSocket = "ctl.sock"
	MaxMessage    = 64 << 10
)

// Operations.
const (
	OpStart   = "start"   // host → init: start a turn; carries stdin, stdout, stderr
	OpKill    = "kill"    // host → init: SIGKILL the turn's process group, then sweep
	OpStarted = "started" // init → host: the turn runs as Pid
	OpExit    = "exit"    // init → host: the turn ended with Code (128+N for signal N)
	OpError   = "error"   // init → host: the request was refused (Error says why)
)

// Request is what the host sends. A start request carries exactly three
// file descriptors (SCM_RIGHTS): the turn's stdin, stdout and stderr.
type Request struct {
	Op   string   `json:"op"`
	Turn uint64   `json:"turn"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}

// Reply is what init sends back, for the turn named by Turn.
type Reply struct {
	Op    string `json:"op"`
	Turn  uint64 `json:"turn"`
	Pid   int    `json:"pid"`
	Code  int    `json:"code"`
	Error string `json:"error"`
}

// ErrRequest: a request init refuses.
var ErrRequest = errors.New("sandbox init: bad control request")

// ParseRequest reads one request the one way: strict JSON, then the
// checks of its operation. nfds is how many descriptors came with it.
func ParseRequest(raw []byte, nfds int) (Request, error) {
	var r Request
	if err := strictjson.Unmarshal(raw, &r); err != nil {
		return Request{}, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	if r.Turn == 0 {
		return r, fmt.Errorf("%w: turn must be > 0", ErrRequest)
	}
	switch r.Op {
	case OpStart:
		switch {
		case nfds != 3:
			return r, fmt.Errorf("%w: start carries %d descriptors, want 3 (stdin, stdout, stderr)", ErrRequest, nfds)
		case len(r.Args) == 0 || r.Args[0] == "":
			return r, fmt.Errorf("%w: start without a command", ErrRequest)
		case !path.IsAbs(r.Dir) || path.Clean(r.Dir) != r.Dir:
			return r, fmt.Errorf("%w: dir %q is not a clean absolute path", ErrRequest, r.Dir)
		}
		for _, s := range append(append([]string{r.Dir}, r.Args...), r.Env...) {
			if strings.IndexByte(s, 0) >= 0 {
				return r, fmt.Errorf("%w: NUL byte in an argument, the environment or dir", ErrRequest)
			}
		}
		for _, e := range r.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				return r, fmt.Errorf("%w: environment entry %q is not NAME=value", ErrRequest, e)
			}
		}
	case OpKill:
		if nfds != 0 || len(r.Args) != 0 || len(r.Env) != 0 || r.Dir != "" {
			return r, fmt.Errorf("%w: kill carries nothing but the turn", ErrRequest)
		}
	default:
		return r, fmt.Errorf("%w: unknown op %q", ErrRequest, r.Op)
	}
	return r, nil
}

// ParseReply reads one reply, strictly.
func ParseReply(raw []byte) (Reply, error) {
	var r Reply
	if err := strictjson.Unmarshal(raw, &r); err != nil {
		return Reply{}, fmt.Errorf("sandbox init: bad control reply: %w", err)
	}
	switch r.Op {
	case OpStarted, OpExit, OpError:
	default:
		return Reply{}, fmt.Errorf("sandbox init: bad control reply: unknown op %q", r.Op)
	}
	return r, nil
}

func marshalReply(r Reply) ([]byte, error) { return json.Marshal(r) }

// MarshalRequest encodes a request as the host sends it.
func MarshalRequest(r Request) ([]byte, error) { return json.Marshal(r) }
