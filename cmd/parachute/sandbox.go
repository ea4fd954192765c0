package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/bridge"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/runtime/sandboxinit"
)

func init() {
	register(&command{name: "sandbox run", summary: "run one command in a fresh session sandbox: [flags] -- CMD…", run: sandboxRun})
	register(&command{name: "sandbox init", summary: "PID 1 inside a sandbox (reaps orphans); not for use on the host", run: sandboxInit})
}

// exitError carries the sandboxed command's exit code to main.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
func (e exitError) ExitCode() int { return e.code }

// containerdFlags are the flags every containerd-facing command shares.
type containerdFlags struct {
	address, namespace, seccompDir string
}

func (f *containerdFlags) register(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&f.address, "address", runtime.DefaultAddress, "containerd socket")
	fs.StringVar(&f.namespace, "namespace", runtime.DefaultNamespace, "containerd namespace")
	fs.StringVar(&f.seccompDir, "seccomp-dir", runtime.DefaultSeccompDir, "folder of seccomp profiles (<dir>/<name>/profile.json)")
}

func (f *containerdFlags) options() runtime.ContainerdOptions {
	return runtime.ContainerdOptions{Address: f.address, Namespace: f.namespace, SeccompDir: f.seccompDir}
}

func sandboxRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sandbox run [flags] -- CMD…", stderr)
	var cf containerdFlags
	cf.register(fs)
	p := engine.SessionProfile{Runtime: "containerd"}
	fs.StringVar(&p.Seccomp, "profile", "strict", "seccomp profile name")
	fs.BoolVar(&p.Network, "network", false, "mark the session as allowed egress (through the gateway's proxy; the sandbox never gets an interface)")
	fs.BoolVar(&p.ReadOnly, "read-only", false, "mount the workspace read-only")
	fs.Int64Var(&p.MemoryMB, "memory-mb", 512, "memory limit, swap included")
	fs.Float64Var(&p.CPUs, "cpus", 1, "CPU quota in cores")
	fs.Int64Var(&p.PIDs, "pids", 256, "PID limit")
	fs.Int64Var(&p.TmpfsMB, "tmpfs-mb", 64, "size of /tmp")
	fs.DurationVar(&p.TurnTimeout, "timeout", 2*time.Minute, "kill the command after this long")
	fs.StringVar(&p.RuntimeClass, "class", runtime.ClassRunc, "runtime class: runc or gvisor (gVisor's runsc)")
	fs.Int64Var(&p.DiskMB, "disk-mb", 0, "cap the workspace at N MiB (its own ext4 image, loop-mounted on it; 0: no cap)")
	diskDir := fs.String("disk-dir", runtime.DefaultDiskDir, "folder of the workspaces' disk images (--disk-mb)")
	trust := fs.String("trust", "sandboxed", "sandboxed (containerd) or direct (a host process in the workspace: no walls at all)")
	workspace := fs.String("workspace", "", "host folder mounted at /workspace (default: the current folder; with --disk-mb, a new empty folder)")
	image := fs.String("image", runtime.DefaultImage, "sandbox image")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: no command: parachute sandbox run [flags] -- CMD…", errUsage)
	}
	switch {
	case *trust != "sandboxed" && *trust != "direct":
		return fmt.Errorf("%w: --trust %q: want sandboxed or direct", errUsage, *trust)
	case p.RuntimeClass != runtime.ClassRunc && p.RuntimeClass != runtime.ClassGVisor:
		return fmt.Errorf("%w: --class %q: want %s or %s", errUsage, p.RuntimeClass, runtime.ClassRunc, runtime.ClassGVisor)
	case p.DiskMB < 0:
		return fmt.Errorf("%w: --disk-mb %d: want 0 or more", errUsage, p.DiskMB)
	case *trust == "direct" && (p.DiskMB > 0 || p.RuntimeClass != runtime.ClassRunc):
		return fmt.Errorf("%w: --trust direct runs a host process: no --class, no --disk-mb", errUsage)
	}
	ws := *workspace
	switch {
	case ws == "" && p.DiskMB > 0:
		// A quota moves the folder's files into its image: never the
		// current folder by surprise.
		var err error
		if ws, err = os.MkdirTemp("", "parachute-ws-"); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "parachute sandbox run: workspace %s\n", ws)
	case ws == "":
		var err error
		if ws, err = os.Getwd(); err != nil {
			return err
		}
	}
	if *trust == "direct" {
		p.Runtime = "direct"
		return runTurn(ctx, runtime.NewDirect(runtime.DirectOptions{}), p, ws, *image, fs.Args(), stdout, stderr)
	}
	opts := cf.options()
	opts.DiskDir = *diskDir
	rt, err := runtime.NewContainerd(ctx, opts)
	if err != nil {
		return err
	}
	defer rt.Close()
	if p.DiskMB > 0 {
		defer fmt.Fprintf(stderr, "parachute sandbox run: %s stays mounted on its %d MiB disk image in %s (umount it to detach; its files stay in the image)\n", ws, p.DiskMB, *diskDir)
	}
	// A sandbox whose `sandbox run` was killed (kill -9: no deferred Stop)
	// is removed here; those of a run still going are left alone.
	if n, err := rt.RemoveOrphans(ctx); err != nil {
		return fmt.Errorf("removing orphan sandboxes: %w", err)
	} else if n > 0 {
		fmt.Fprintf(stderr, "parachute sandbox run: removed %d sandbox(es) left by a run that was killed\n", n)
	}
	return runTurn(ctx, rt, p, ws, *image, fs.Args(), stdout, stderr)
}

// runTurn starts one sandbox on rt, runs args in it and removes it.
func runTurn(ctx context.Context, rt interface {
	Start(context.Context, runtime.Spec) (runtime.Sandbox, error)
}, p engine.SessionProfile, ws, image string, args []string, stdout, stderr io.Writer) error {
	sb, err := rt.Start(ctx, runtime.Spec{
		SessionID: "run-" + randomHex(6), Owner: "cli:" + currentUser(),
		Image: image, Workspace: ws, Profile: p,
	})
	if err != nil {
		return err
	}
	defer sb.Stop(context.WithoutCancel(ctx))
	turn := runtime.Turn{Args: args, Stdout: stdout, Stderr: stderr}
	if st, err := os.Stdin.Stat(); err == nil && st.Mode()&os.ModeCharDevice == 0 {
		turn.Stdin = os.Stdin // piped or redirected: pass it on
	}
	res, err := sb.Exec(ctx, turn)
	if err != nil {
		return err
	}
	if res.TimedOut {
		fmt.Fprintf(stderr, "parachute sandbox run: killed after %v\n", p.TurnTimeout)
	}
	if res.Truncated {
		fmt.Fprintf(stderr, "parachute sandbox run: output truncated at %d bytes\n", runtime.DefaultOutputLimit)
	}
	if res.ExitCode != 0 {
		return exitError{res.ExitCode}
	}
	return nil
}

func sandboxInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// A session with network gets the egress bridge from PID 1: loopback
	// TCP (HTTPS_PROXY) forwarded to the session socket, where the
	// gateway decides every destination. Without it there is no way out.
	if addr := os.Getenv("PARACHUTE_BRIDGE_LISTEN"); addr != "" && os.Getpid() == 1 {
		go func() {
			if err := serveBridge(ctx, addr, bridge.Options{Socket: agent.SocketPath(os.Getenv)}); err != nil {
				fmt.Fprintf(stderr, "parachute sandbox init: egress bridge: %v\n", err)
			}
		}()
	}
	return sandboxinit.Run()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func currentUser() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return fmt.Sprint(os.Getuid())
}
