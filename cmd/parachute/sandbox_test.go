package main

import (
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

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
	bin := filepath.Join(t.TempDir(), "probe")
	build := exec.Command(filepath.Join(goruntime.GOROOT(), "bin", "go"), "build", "-o", bin, "../../test/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
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
	if code != 0 || !strings.Contains(out, "all checks passed") {
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
