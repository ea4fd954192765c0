package gateway

import (
	"context"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy"
	"github.com/parachute-gateway/parachute/runtime"
)

// processStarter starts long-lived processes in sandboxes of their own;
// *runtime.Containerd implements it.
type processStarter interface {
	StartProcess(ctx context.Context, s runtime.Spec, ps runtime.ProcessSpec) (*runtime.Process, error)
}

// upstreamLauncher runs sandboxed MCP upstreams (mcpproxy.Launcher): each
// in a sandbox of its own with a session's walls: the session's seccomp
// profile and limits, no network whatever the session has (an upstream
// gets no egress unless a later policy grants it one), read-only root,
// only the workspace folder mounted, .parachute read-only over it.
type upstreamLauncher struct {
	rt      processStarter
	image   string
	session string // the session the upstream serves ("catalog" for listing)
	owner   string
	profile engine.SessionProfile
	stderr  io.Writer
}

// catalogProfile bounds the instance that only lists an upstream's tools,
// over an empty folder: the strictest seccomp profile and small limits.
var catalogProfile = engine.SessionProfile{
	Runtime: "containerd", Seccomp: "strict", MemoryMB: 512, CPUs: 1, PIDs: 128, TmpfsMB: 64, ReadOnly: true,
}

// Launch implements mcpproxy.Launcher.
func (l upstreamLauncher) Launch(ctx context.Context, up mcpproxy.Upstream, workspace string) (*mcpproxy.Launched, error) {
	prof := l.profile
	prof.Network = false
	prof.Hooks = false
	img := up.Image
	if img == "" {
		img = l.image
	}
	p, err := l.rt.StartProcess(ctx, runtime.Spec{
		SessionID: l.session, Owner: l.owner, Image: img, Workspace: workspace, Profile: prof,
	}, runtime.ProcessSpec{Upstream: up.Name, Args: up.Command, Stderr: l.stderr})
	if err != nil {
		return nil, fmt.Errorf("starting upstream %s in a sandbox: %w", up.Name, err)
	}
	return &mcpproxy.Launched{Stdin: p.Stdin(), Stdout: p.Stdout(), Close: p.Close}, nil
}

// upstreamLog writes an upstream's stderr to the gateway log, a line at a
// time as the writes come, bounded so a chatty server cannot flood it.
type upstreamLog struct{ log zerolog.Logger }

func (u upstreamLog) Write(b []byte) (int, error) {
	line := string(b)
	if len(line) > 2048 {
		line = line[:2048] + "…"
	}
	u.log.Warn().Str("stderr", line).Msg("mcp upstream")
	return len(b), nil
}
