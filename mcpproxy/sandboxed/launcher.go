// Package sandboxed runs the MCP proxy's command upstreams (third-party MCP
// servers) in containerd sandboxes: it is the mcpproxy.Launcher the gateway
// uses, kept apart so that mcpproxy itself does not depend on containerd.
package sandboxed

import (
	"context"
	"fmt"
	"io"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy"
	"github.com/parachute-gateway/parachute/runtime"
)

// Starter starts long-lived processes in sandboxes of their own;
// *runtime.Containerd implements it.
type Starter interface {
	StartProcess(ctx context.Context, s runtime.Spec, ps runtime.ProcessSpec) (*runtime.Process, error)
}

// CatalogProfile bounds the instance that only lists an upstream's tools,
// over an empty folder: the strictest seccomp profile and small limits.
var CatalogProfile = engine.SessionProfile{
	Runtime: "containerd", Seccomp: "strict", MemoryMB: 512, CPUs: 1, PIDs: 128, TmpfsMB: 64, ReadOnly: true,
}

// Launcher runs each upstream in a sandbox of its own with a session's
// walls: the session's seccomp profile and limits, no network whatever the
// session has, read-only root, only the workspace folder mounted (at
// mcpproxy.SandboxWorkspace), .parachute read-only over it.
type Launcher struct {
	Runtime Starter
	Image   string                // default image ("" = runtime.DefaultImage); an upstream's own Image wins
	Session string                // the session served ("catalog" for the listing instance)
	Owner   string                // identity, as a label
	Profile engine.SessionProfile // the session's profile (CatalogProfile for listing)
	Stderr  io.Writer             // the upstream's stderr (nil: discarded)
}

// Launch implements mcpproxy.Launcher.
func (l Launcher) Launch(ctx context.Context, up mcpproxy.Upstream, workspace string) (*mcpproxy.Launched, error) {
	prof := l.Profile
	prof.Network = false
	prof.Hooks = false
	img := up.Image
	if img == "" {
		img = l.Image
	}
	p, err := l.Runtime.StartProcess(ctx, runtime.Spec{
		SessionID: l.Session, Owner: l.Owner, Image: img, Workspace: workspace, Profile: prof,
	}, runtime.ProcessSpec{Upstream: up.Name, Args: up.Command, Stderr: l.Stderr})
	if err != nil {
		return nil, fmt.Errorf("starting upstream %s in a sandbox: %w", up.Name, err)
	}
	return &mcpproxy.Launched{Stdin: p.Stdin(), Stdout: p.Stdout(), Close: p.Close}, nil
}
