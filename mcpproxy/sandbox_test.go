package mcpproxy

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/test/ctrd"
	"github.com/parachute-gateway/parachute/test/upstreamimage"
)

// One private containerd for the package's sandboxed-upstream tests.
func TestMain(m *testing.M) { ctrd.Main(m) }

var (
	rtOnce sync.Once
	rtConn *runtime.Containerd
	rtErr  error
)

// sandboxRuntime connects to the test containerd and imports the upstream
// image (node and the npm filesystem server). It skips t outside CI when
// containerd, root, node or the server are missing.
func sandboxRuntime(t testing.TB) *runtime.Containerd {
	t.Helper()
	addr := ctrd.Start(t)
	rtOnce.Do(func() {
		rtConn, rtErr = runtime.NewContainerd(context.Background(), runtime.ContainerdOptions{
			Address: addr, SeccompDir: filepath.Join(repoRoot(t), "policies", "seccomp"), StopTimeout: 5 * time.Second,
		})
	})
	if rtErr != nil {
		t.Fatalf("containerd: %v", rtErr)
	}
	upstreamimage.Import(t, rtConn)
	return rtConn
}

// upstreamProfile is the profile the sandboxed upstream runs under in
// these tests: a sandboxed member's.
var upstreamProfile = engine.SessionProfile{
	Runtime: "containerd", Seccomp: "strict", MemoryMB: 512, CPUs: 1, PIDs: 128, TmpfsMB: 64,
}

// sandboxedNPM is the npm filesystem server as the gateway runs it: in a
// containerd sandbox per session that holds only the session's workspace.
func sandboxedNPM(t testing.TB, f fixture) Options {
	rt := sandboxRuntime(t)
	return Options{Vault: f.vault, Upstreams: []Upstream{{Name: "fs", Command: upstreamimage.Command}},
		Launcher: ctrdLauncher{rt}}
}

// ctrdLauncher starts upstreams as mcpproxy/sandboxed.Launcher does (that
// package imports this one, so the test cannot): runtime.StartProcess with
// the session's spec and no network.
type ctrdLauncher struct{ rt *runtime.Containerd }

func (l ctrdLauncher) Launch(ctx context.Context, up Upstream, workspace string) (*Launched, error) {
	p, err := l.rt.StartProcess(ctx, runtime.Spec{SessionID: "mcpproxy-test", Owner: "telegram:1",
		Image: upstreamimage.Ref, Workspace: workspace, Profile: upstreamProfile},
		runtime.ProcessSpec{Upstream: up.Name, Args: up.Command})
	if err != nil {
		return nil, err
	}
	return &Launched{Stdin: p.Stdin(), Stdout: p.Stdout(), Close: p.Close}, nil
}
