package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// envHoldSandbox makes the test binary a stand-in for `parachute sandbox
// run`: it starts one sandbox on the containerd at this address, prints
// its ID and then waits to be killed.
const envHoldSandbox = "PARACHUTE_TEST_HOLD_SANDBOX"

func holdSandbox(addr string) {
	ctx := context.Background()
	rt, err := NewContainerd(ctx, ContainerdOptions{Address: addr, SeccompDir: testSeccompDir})
	if err == nil {
		var sb Sandbox
		ws, _ := os.MkdirTemp("", "hold")
		sb, err = rt.Start(ctx, Spec{SessionID: "hold-" + randomID(), Owner: "cli:test", Image: probeRef,
			Workspace: ws, Profile: limitsProfile("strict", true)})
		if err == nil {
			fmt.Println("started", sb.ID())
			select {}
		}
	}
	fmt.Println("error", err)
	os.Exit(1)
}

// startHolder runs the test binary as a sandbox owner and returns it with
// the ID of its sandbox.
func startHolder(t *testing.T, rt *Containerd) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), envHoldSandbox+"="+rt.opts.Address)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	id, ok := strings.CutPrefix(strings.TrimSpace(line), "started ")
	if !ok {
		t.Fatalf("holder: %q", line)
	}
	return cmd, id
}

func findInfo(t *testing.T, rt *Containerd, id string) (Info, bool) {
	t.Helper()
	infos, err := rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range infos {
		if i.ID == id {
			return i, true
		}
	}
	return Info{}, false
}

// TestKilledOwnerSandboxRemoved: kill -9 of the process that started a
// sandbox (what `parachute sandbox run` is) leaves its container; the
// next RemoveOrphans (sandbox run, doctor, gateway start) removes it, and
// leaves alone the sandbox of an owner still running.
func TestKilledOwnerSandboxRemoved(t *testing.T) {
	rt := testRuntime(t)
	killed, deadID := startHolder(t, rt)
	_, liveID := startHolder(t, rt)
	if err := killed.Process.Kill(); err != nil { // SIGKILL: no deferred Stop runs
		t.Fatal(err)
	}
	killed.Wait()

	dead, ok := findInfo(t, rt, deadID)
	if !ok {
		t.Fatalf("%s gone before any cleanup: the test shows nothing", deadID)
	}
	if dead.OwnerState != OwnerGone || dead.OwnerPID != killed.Process.Pid {
		t.Errorf("killed owner's sandbox: %+v, want owner %d gone", dead, killed.Process.Pid)
	}
	if live, _ := findInfo(t, rt, liveID); live.OwnerState != OwnerAlive {
		t.Errorf("live owner's sandbox: %+v, want alive", live)
	}

	removed, err := rt.RemoveOrphaned(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range removed {
		ids = append(ids, r.ID)
	}
	if !strings.Contains(strings.Join(ids, " "), deadID) || strings.Contains(strings.Join(ids, " "), liveID) {
		t.Errorf("removed %v, want %s and not %s", ids, deadID, liveID)
	}
	assertGone(t, rt, deadID)
	if _, ok := findInfo(t, rt, liveID); !ok {
		t.Errorf("live owner's sandbox %s removed", liveID)
	}
}

func TestOwnerStateReusedPID(t *testing.T) {
	self := ownerLabels()
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   OwnerState
	}{
		{"self", self, OwnerSelf},
		{"no labels", map[string]string{}, OwnerUnknown},
		{"garbage pid", map[string]string{LabelOwnerPID: "x", LabelOwnerStart: "b/1"}, OwnerUnknown},
		{"pid reused", map[string]string{LabelOwnerPID: self[LabelOwnerPID], LabelOwnerStart: self[LabelOwnerStart] + "0"}, OwnerGone},
		{"other boot", map[string]string{LabelOwnerPID: "1", LabelOwnerStart: "00000000-0000-0000-0000-000000000000/1"}, OwnerGone},
		{"no such pid", map[string]string{LabelOwnerPID: "2147483600", LabelOwnerStart: self[LabelOwnerStart]}, OwnerGone},
	} {
		if got := ownerState(tc.labels); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
