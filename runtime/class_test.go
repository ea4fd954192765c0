package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClassNotInstalled: a gvisor profile on a host without runsc is
// refused before anything is made, with an error that says how to install
// it, and no runc sandbox starts in its place.
func TestClassNotInstalled(t *testing.T) {
	rt, err := NewContainerd(context.Background(), ContainerdOptions{
		Address: "/nonexistent/containerd.sock", SeccompDir: testSeccompDir,
		RunscPath: "/nonexistent/runsc", RunscWrapper: filepath.Join(t.TempDir(), "w", "runsc"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ws := t.TempDir()
	for _, tc := range []struct {
		class   string
		wantErr error
		want    string
	}{
		{ClassGVisor, ErrClassUnavailable, "apt-get install runsc"},
		{"kata", ErrProfile, `runtime class "kata"`},
	} {
		p := limitsProfile("strict", true)
		p.RuntimeClass = tc.class
		_, err := rt.Start(context.Background(), Spec{SessionID: "cls", Image: probeRef, Workspace: ws, Profile: p})
		if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %v naming %q", tc.class, err, tc.wantErr, tc.want)
		}
		if errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: reached containerd: %v", tc.class, err)
		}
	}
	var ce *ClassError
	p := limitsProfile("strict", true)
	p.RuntimeClass = ClassGVisor
	_, err = rt.Start(context.Background(), Spec{SessionID: "cls", Image: probeRef, Workspace: ws, Profile: p})
	if !errors.As(err, &ce) || ce.Reason() != ReasonRuntimeClassUnavailable || !strings.Contains(ce.Reply(), "apt-get install runsc") {
		t.Errorf("ClassError: %#v", err)
	}
	if _, err := os.Stat(filepath.Join(ws, ".parachute")); err == nil {
		t.Error("the workspace was prepared for a sandbox that could not start")
	}
}

// TestRunscWrapper: the wrapper is written once, root-only folder, and
// rewritten when it differs.
func TestRunscWrapper(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gv")
	c := &Containerd{opts: ContainerdOptions{RunscPath: "/usr/bin/runsc", RunscWrapper: filepath.Join(dir, "runsc")}}
	if err := c.writeRunscWrapper(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dir)
	b, _ := os.ReadFile(c.opts.RunscWrapper)
	if st.Mode().Perm() != 0o700 || !strings.Contains(string(b), "exec /usr/bin/runsc --network=none --host-uds=open --oci-seccomp \"$@\"") {
		t.Errorf("dir mode %v, wrapper %q", st.Mode(), b)
	}
	os.WriteFile(c.opts.RunscWrapper, []byte("#!/bin/sh\nexec /bin/evil \"$@\"\n"), 0o755)
	if err := c.writeRunscWrapper(); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(c.opts.RunscWrapper); string(b2) != string(b) {
		t.Errorf("a changed wrapper was kept: %q", b2)
	}
}

// TestPoolGVisorStartsCold: a gvisor session never gets a pooled
// sandbox (its gofer would not see the workspace attached later); it
// starts cold and sees its workspace.
func TestPoolGVisorStartsCold(t *testing.T) {
	rt := testRuntime(t)
	needClass(t, rt, ClassGVisor)
	ctx := context.Background()
	pool, err := rt.NewPool(PoolOptions{Dir: filepath.Join(t.TempDir(), "pool")})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(ctx)
	for _, id := range []string{"gvpool-a", "gvpool-b"} {
		s, _ := poolSpec(t, id, false)
		s.Profile.RuntimeClass = ClassGVisor
		sb, err := pool.Start(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, pooled := sb.(*poolSandbox); pooled || pool.Ready(s) != 0 {
			t.Errorf("%s: pooled %v, %d ready: gvisor must start cold", id, pooled, pool.Ready(s))
		}
		if _, out, _ := run(t, sb, "/bin/cat", "/workspace/hello.txt"); out != "hello from "+id {
			t.Errorf("%s sees %q", id, out)
		}
		sb.Stop(ctx)
	}
}
