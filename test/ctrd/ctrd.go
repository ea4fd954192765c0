// Package ctrd starts a private containerd for tests: its own root and
// state folders and socket under a short temporary folder, the CRI plugin
// and every snapshotter but overlayfs disabled.
//
// Start skips the test when the prerequisites (root, containerd, runc) are
// missing, except under CI=true, where a missing prerequisite fails the
// test: CI must never pass by skipping the sandbox tests.
//
// PARACHUTE_CONTAINERD_ADDRESS points the tests at a containerd already
// running instead.
//
// One daemon per test binary: call ctrd.Main from TestMain and every Start
// shares it; without Main, each Start gets its own daemon stopped at the
// test's cleanup.
package ctrd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/parachute-gateway/parachute/test/prereq"
)

// EnvAddress names an existing containerd socket to use instead of starting
// one.
const EnvAddress = "PARACHUTE_CONTAINERD_ADDRESS"

// Daemon is a containerd this package started.
type Daemon struct {
	Address string // unix socket path
	Dir     string // holds root/, state/, config.toml, containerd.log
	cmd     *exec.Cmd
	done    chan struct{}
}

var (
	mainMode bool
	sharedMu sync.Mutex
	shared   *Daemon
)

// Main runs the tests of a package sharing one containerd, started on
// first use and stopped when the tests end. Use it as TestMain's body:
//
//	func TestMain(m *testing.M) { ctrd.Main(m) }
//
// The cleanups run after the daemon has stopped.
func Main(m *testing.M, cleanups ...func()) {
	mainMode = true
	code := m.Run()
	defer func() {
		for _, c := range cleanups {
			c()
		}
		os.Exit(code)
	}()
	sharedMu.Lock()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "ctrd: stop: %v\n", err)
		}
		shared = nil
	}
	sharedMu.Unlock()
}

// Start returns the address of a running containerd, skipping (or, under
// CI=true, failing) t when there can be none.
func Start(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvAddress); addr != "" {
		return addr
	}
	if why := Missing(); why != "" {
		Unavailable(t, why)
	}
	if mainMode {
		sharedMu.Lock()
		defer sharedMu.Unlock()
		if shared == nil {
			d, err := StartDaemon(context.Background())
			if err != nil {
				t.Fatalf("ctrd: %v", err)
			}
			shared = d
		}
		return shared.Address
	}
	d, err := StartDaemon(context.Background())
	if err != nil {
		t.Fatalf("ctrd: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("ctrd: stop: %v", err)
		}
	})
	return d.Address
}

// Unavailable skips t, or fails it under CI=true.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	prereq.Unavailable(t, "containerd", why)
}

// Missing says which prerequisite of a private containerd is missing, or
// "" when none is.
func Missing() string {
	if os.Geteuid() != 0 {
		return "containerd tests need root"
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " not found in PATH (test/deps/00-base.sh installs it)"
		}
	}
	return ""
}

const configTemplate = `version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  level = "warn"
`

// StartDaemon starts a containerd in a fresh folder under /tmp (short, so
// the unix socket path stays under 108 bytes) and waits until it answers.
func StartDaemon(ctx context.Context) (*Daemon, error) {
	dir, err := os.MkdirTemp("/tmp", "ctrd")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Address: filepath.Join(dir, "c.sock"), Dir: dir, done: make(chan struct{})}
	cfg := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf(configTemplate, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.Address, filepath.Join(dir, "t.sock"))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d.cmd = exec.Command("containerd", "--config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	cmd, done := d.cmd, d.done
	go func() { cmd.Wait(); close(done) }()
	if err := d.waitReady(ctx, 15*time.Second); err != nil {
		log := d.LogTail()
		d.Stop()
		return nil, fmt.Errorf("%w\ncontainerd.log:\n%s", err, log)
	}
	return d, nil
}

func (d *Daemon) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		select {
		case <-d.done:
			return errors.New("containerd exited at start")
		default:
		}
		if _, err := os.Stat(d.Address); err == nil {
			c, err := containerd.New(d.Address, containerd.WithTimeout(time.Second))
			if err == nil {
				cctx, ccancel := context.WithTimeout(ctx, time.Second)
				ok, _ := c.IsServing(cctx)
				ccancel()
				c.Close()
				if ok {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd not ready after %v", timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// LogTail returns the last lines of the daemon's log.
func (d *Daemon) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "containerd.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// Stop removes every task and container the daemon still has, stops it,
// unmounts what it left mounted and deletes its folder.
func (d *Daemon) Stop() error {
	var errs []error
	if err := d.cleanContainers(); err != nil {
		errs = append(errs, err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		errs = append(errs, errors.New("containerd did not exit on SIGTERM"))
	}
	unmountUnder(d.Dir)
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cleanContainers kills and deletes every container in every namespace, so
// no shim outlives the daemon.
func (d *Daemon) cleanContainers() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := containerd.New(d.Address)
	if err != nil {
		return err
	}
	defer c.Close()
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range nss {
		if err := RemoveAll(withNS(ctx, ns), c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mps = append(mps, f[4])
		}
	}
	for i := len(mps) - 1; i >= 0; i-- {
		syscall.Unmount(mps[i], syscall.MNT_DETACH)
	}
}

// Kill stops the daemon process abruptly (SIGKILL), leaving its folder and
// shims: a containerd crash, for reconnect tests.
func (d *Daemon) Kill() {
	d.cmd.Process.Kill()
	<-d.done
}

// Restart starts the daemon again on the same folder and socket after
// Kill.
func (d *Daemon) Restart(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(d.Dir, "containerd.log"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	d.cmd = exec.Command(d.cmd.Path, d.cmd.Args[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	d.done = make(chan struct{})
	if err := d.cmd.Start(); err != nil {
		return err
	}
	cmd, done := d.cmd, d.done
	go func() { cmd.Wait(); close(done) }()
	return d.waitReady(ctx, 15*time.Second)
}
