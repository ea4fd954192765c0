package runtime

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/test/ctrd"
)

// TestUnavailable: no containerd at the address is ErrUnavailable, not a
// hang and not another error.
func TestUnavailable(t *testing.T) {
	rt, err := NewContainerd(context.Background(), ContainerdOptions{Address: "/nonexistent/containerd.sock", SeccompDir: testSeccompDir})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = rt.Start(ctx, Spec{SessionID: "s", Workspace: t.TempDir(), Profile: limitsProfile("strict", true)})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Start: %v, want ErrUnavailable", err)
	}
	if _, err := rt.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping: %v, want ErrUnavailable", err)
	}
	if _, err := rt.List(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("List: %v, want ErrUnavailable", err)
	}
}

// TestReconnect: containerd dies and comes back; the runtime reports
// ErrUnavailable meanwhile and starts sandboxes again afterwards.
func TestReconnect(t *testing.T) {
	if os.Getenv(ctrd.EnvAddress) != "" {
		t.Skip("needs a containerd of its own to kill")
	}
	if why := ctrd.Missing(); why != "" {
		ctrd.Unavailable(t, why)
	}
	ctx := context.Background()
	d, err := ctrd.StartDaemon(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	rt, err := NewContainerd(ctx, ContainerdOptions{Address: d.Address, SeccompDir: testSeccompDir})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	importProbe(t, rt)
	sb, _ := startSandbox(t, rt, limitsProfile("strict", true))
	if err := sb.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	d.Kill()
	if _, err := rt.Start(ctx, Spec{SessionID: "down", Image: probeRef, Workspace: t.TempDir(), Profile: limitsProfile("strict", true)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start with containerd down: %v, want ErrUnavailable", err)
	}
	if err := d.Restart(ctx); err != nil {
		t.Fatalf("restart containerd: %v\n%s", err, d.LogTail())
	}
	sb, _ = startSandbox(t, rt, limitsProfile("strict", true))
	if res, _, _ := run(t, sb, "/parachute", "sleep", "0"); res.ExitCode != 0 {
		t.Errorf("exec after restart: %+v", res)
	}
}
