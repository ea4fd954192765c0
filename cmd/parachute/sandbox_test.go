package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/test/ctrd"
)

const testSeccompDir = "../../policies/seccomp"

// TestSandboxCommands builds an image (with test/probe standing in for the
// static parachute binary), imports it, runs commands in sandboxes and
// checks doctor against the same containerd.
func TestSandboxCommands(t *testing.T) {
	addr := ctrd.Start(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	bin := probeBinary(t)
	ref := "parachute.local/cli-test:1"
	common := []string{"--address", addr, "--namespace", "parachute-cli-test"}

	code, out, errOut := runCLI(t, append([]string{"doctor", "--seccomp-dir", testSeccompDir, "--image", ref}, common...)...)
	if code != 1 || !strings.Contains(out, "FAIL  image") || !strings.Contains(out, "fix: build and import it") {
		t.Errorf("doctor before build: code %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, append([]string{"image", "build", "--binary", bin, "--ref", ref}, common...)...)
	if code != 0 || !strings.Contains(out, "imported "+ref) {
		t.Fatalf("image build: code %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, append([]string{"doctor", "--seccomp-dir", testSeccompDir, "--image", ref}, common...)...)
	if code != 0 || !strings.Contains(out, "no check failed") {
		t.Errorf("doctor after build: code %d\n%s%s", code, out, errOut)
	}

	ws := t.TempDir()
	sandbox := func(args ...string) (int, string, string) {
		a := append([]string{"sandbox", "run", "--image", ref, "--seccomp-dir", testSeccompDir, "--workspace", ws}, common...)
		return runCLI(t, append(a, args...)...)
	}
	code, out, errOut = sandbox("--", "/bin/sh", "-c", "id -u; echo made > /workspace/out; exit 3")
	if code != 3 || strings.TrimSpace(out) != "65534" {
		t.Errorf("sandbox run: code %d out %q err %q", code, out, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "out")); string(b) != "made\n" {
		t.Errorf("workspace write: %q", b)
	}
	code, _, errOut = sandbox("--read-only", "--", "/bin/touch", "/workspace/nope")
	if code == 0 || !strings.Contains(errOut, "Read-only file system") {
		t.Errorf("read-only run: code %d err %q", code, errOut)
	}
	code, out, _ = sandbox("--profile", "strict", "--", "/parachute", "check", "--profile", "strict")
	if code != 0 || !strings.Contains(out, `"strict-no-socket-AF_INET"`) {
		t.Errorf("probe under strict: code %d\n%s", code, out)
	}
	if code, _, errOut = sandbox("--profile", "nonesuch", "--", "/bin/true"); code != 1 || !strings.Contains(errOut, "unknown seccomp profile") {
		t.Errorf("unknown profile: code %d err %q", code, errOut)
	}
	if code, _, _ = sandbox(); code != 2 {
		t.Errorf("no command: code %d, want 2", code)
	}
}

func TestDoctorWithoutContainerd(t *testing.T) {
	code, out, _ := runCLI(t, "doctor", "--address", "/nonexistent/containerd.sock", "--seccomp-dir", testSeccompDir)
	if code != 1 || !strings.Contains(out, "FAIL  containerd") || !strings.Contains(out, "fix: install containerd") {
		t.Errorf("code %d\n%s", code, out)
	}
	if !strings.Contains(out, "ok    seccomp profile strict") {
		t.Errorf("profiles not checked:\n%s", out)
	}
}

func TestImageBuildRefusesDynamicBinary(t *testing.T) {
	dyn := "/bin/sh"
	if err := checkStatic(dyn); err == nil {
		t.Skip("/bin/sh is static here")
	}
	code, _, errOut := runCLI(t, "image", "build", "--binary", dyn, "--no-import", "--out", filepath.Join(t.TempDir(), "x.tar"))
	if code != 1 || !strings.Contains(errOut, "dynamically linked") {
		t.Errorf("code %d err %q", code, errOut)
	}
}

// TestImageBuildAddFlags: --add and --add-dir reach the image; a bad
// HOST[:IMAGE] is a usage error, a script given to --add a clear refusal.
func TestImageBuildAddFlags(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static not installed (a static binary for --binary)")
	}
	tree := t.TempDir()
	os.WriteFile(filepath.Join(tree, "index.js"), []byte("1\n"), 0o644)
	script := filepath.Join(t.TempDir(), "run.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	build := func(extra ...string) (int, string, string, string) {
		out := filepath.Join(t.TempDir(), "x.tar")
		args := append([]string{"image", "build", "--binary", "/bin/busybox", "--busybox", "", "--no-import", "--out", out}, extra...)
		code, stdout, stderr := runCLI(t, args...)
		return code, stdout, stderr, out
	}
	code, stdout, stderr, out := build("--add", "/bin/ls", "--add-dir", tree+":/opt/app")
	if code != 0 || !strings.Contains(stdout, "wrote "+out) {
		t.Fatalf("code %d\n%s%s", code, stdout, stderr)
	}
	code2, _, _, out2 := build("--add", "/bin/ls", "--add-dir", tree+":/opt/app")
	b1, _ := os.ReadFile(out)
	b2, _ := os.ReadFile(out2)
	if code2 != 0 || !bytes.Equal(b1, b2) {
		t.Error("two builds of the same inputs differ")
	}
	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"relative add-dir": {[]string{"--add-dir", "npm"}, 2, "HOST[:IMAGE]"},
		"script as --add":  {[]string{"--add", script}, 1, "not an ELF"},
		"add-dir on /tmp":  {[]string{"--add-dir", tree + ":/tmp/app"}, 1, "mounts over /tmp"},
	} {
		if code, _, stderr, _ := build(tc.args...); code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: code %d err %q, want %d and %q", name, code, stderr, tc.code, tc.want)
		}
	}
}

// envCLIArgs makes the test binary run the CLI with these arguments (a
// JSON array) instead of the tests: a real `parachute sandbox run` process
// that a test can kill -9.
const envCLIArgs = "PARACHUTE_TEST_CLI_ARGS"

// probeBinary builds test/probe, which stands in for the static parachute
// binary in test images, into t's temporary folder.
func probeBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "probe")
	build := exec.Command(filepath.Join(goruntime.GOROOT(), "bin", "go"), "build", "-o", bin, "../../test/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	return bin
}

// probeImage builds and imports, with the CLI, the probe image
// parachute.local/NAME:1 in namespace parachute-NAME of the containerd at
// addr, and returns its ref and the flags naming that containerd.
func probeImage(t *testing.T, addr, name string) (ref string, common []string) {
	t.Helper()
	bin := probeBinary(t)
	ref = "parachute.local/" + name + ":1"
	common = []string{"--address", addr, "--namespace", "parachute-" + name}
	if code, out, errOut := runCLI(t, append([]string{"image", "build", "--binary", bin, "--ref", ref}, common...)...); code != 0 {
		t.Fatalf("image build: code %d\n%s%s", code, out, errOut)
	}
	return ref, common
}

func TestMain(m *testing.M) {
	if a := os.Getenv(envCLIArgs); a != "" {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			panic(err)
		}
		os.Exit(run(context.Background(), args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestSandboxRunKilledNoOrphan: kill -9 of `parachute sandbox run` leaves
// its container; the next `sandbox run` removes it, and doctor lists (and
// removes) one left after that.
func TestSandboxRunKilledNoOrphan(t *testing.T) {
	addr := ctrd.Start(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	ref, common := probeImage(t, addr, "cli-orphan")
	ws := t.TempDir()
	runArgs := append([]string{"sandbox", "run", "--image", ref, "--seccomp-dir", testSeccompDir, "--workspace", ws}, common...)
	killedRun := func() {
		t.Helper()
		args, _ := json.Marshal(append(slices.Clone(runArgs), "--", "/bin/sh", "-c", "echo ready; exec sleep 300"))
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envCLIArgs+"="+string(args))
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("sandbox run child: %q", line)
		}
		cmd.Process.Kill() // SIGKILL: its deferred Stop never runs
		cmd.Wait()
	}

	killedRun()
	code, _, errOut := runCLI(t, append(slices.Clone(runArgs), "--", "/bin/true")...)
	if code != 0 || !strings.Contains(errOut, "removed 1 sandbox(es) left by a run that was killed") {
		t.Errorf("next sandbox run: code %d err %q, want the orphan removed", code, errOut)
	}

	killedRun()
	doctor := append([]string{"doctor", "--seccomp-dir", testSeccompDir, "--image", ref}, common...)
	code, out, _ := runCLI(t, doctor...)
	if code != 1 || !strings.Contains(out, "FAIL  orphan sandboxes") || !strings.Contains(out, "found and removed 1: parachute-run-") {
		t.Errorf("doctor after a killed run: code %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, doctor...); !strings.Contains(out, "ok    orphan sandboxes") {
		t.Errorf("doctor again: code %d\n%s", code, out)
	}
}

// TestSandboxRunClassDiskTrust: --class, --disk-mb and --trust reach the
// sandbox; bad combinations are usage errors.
func TestSandboxRunClassDiskTrust(t *testing.T) {
	addr := ctrd.Start(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	ref, common := probeImage(t, addr, "cli-class")
	diskDir := filepath.Join(t.TempDir(), "disks")
	sandbox := func(args ...string) (int, string, string) {
		a := append([]string{"sandbox", "run", "--image", ref, "--seccomp-dir", testSeccompDir, "--disk-dir", diskDir}, common...)
		return runCLI(t, append(a, args...)...)
	}
	if _, err := os.Stat("/usr/bin/runsc"); err == nil || os.Getenv("CI") == "true" {
		code, out, errOut := sandbox("--class", "gvisor", "--workspace", t.TempDir(), "--", "/parachute", "check", "--class", "gvisor")
		if code != 0 || !strings.Contains(out, `"check": "kernel-gvisor"`) {
			t.Errorf("--class gvisor: code %d\n%s%s", code, out, errOut)
		}
	}
	ws := t.TempDir()
	t.Cleanup(func() { unix.Unmount(ws, unix.MNT_DETACH) })
	code, _, errOut := sandbox("--disk-mb", "8", "--workspace", ws, "--", "/bin/dd", "if=/dev/zero", "of=/workspace/fill", "bs=1M", "count=32")
	if code == 0 || !strings.Contains(errOut, "No space left on device") || !strings.Contains(errOut, "stays mounted on its 8 MiB disk image") {
		t.Errorf("--disk-mb 8: code %d err %q", code, errOut)
	}
	direct := t.TempDir()
	code, out, errOut := sandbox("--trust", "direct", "--workspace", direct, "--", "/bin/pwd")
	if real, _ := filepath.EvalSymlinks(direct); code != 0 || strings.TrimSpace(out) != real {
		t.Errorf("--trust direct: code %d out %q err %q", code, out, errOut)
	}
	for _, args := range [][]string{
		{"--class", "kata", "--", "/bin/true"},
		{"--trust", "root", "--", "/bin/true"},
		{"--trust", "direct", "--disk-mb", "8", "--", "/bin/true"},
		{"--disk-mb", "-1", "--", "/bin/true"},
	} {
		if code, _, errOut := sandbox(args...); code != 2 {
			t.Errorf("%v: code %d err %q, want a usage error", args, code, errOut)
		}
	}
}
