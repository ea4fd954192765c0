package e2e

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/typeurl/v2"

	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/test/ctrd"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// TestRuntimeClassPerSession: with the shipped policy, a stranger on a
// public bot gets a gVisor sandbox and a member of a private bot a runc
// one. Checked on the host: the container's runtime options, and what
// its PID 1 is (runsc's sandbox process under gVisor, sandbox init under
// runc). TestProbe (runtime) checks from inside that gVisor answers.
func TestRuntimeClassPerSession(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, conn, user, class string
	}{
		{"public stranger", publicBot, "pub", "stranger", runtime.ClassGVisor},
		{"private member", privateBot, "dev", "alice", runtime.ClassRunc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.class == runtime.ClassGVisor {
				if _, err := os.Stat(runtime.DefaultRunscPath); err != nil {
					ctrd.Unavailable(t, "runsc not installed (test/deps/00-base.sh)")
				}
			}
			e := setup(t, tc.yaml, model.Script{Steps: []model.Step{model.Reply("hi")}, RepeatLast: true})
			if got := e.send(tc.conn, tc.user, "hello"); !strings.Contains(got, "hi") {
				t.Fatalf("reply %q", got)
			}
			ctx := namespaces.WithNamespace(context.Background(), "parachute")
			c, err := containerd.New(e.cfg.Runtime.Socket)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctrs, err := c.Containers(ctx, `labels."parachute.owner"==local:`+tc.user)
			if err != nil || len(ctrs) != 1 {
				t.Fatalf("containers of local:%s: %d, %v", tc.user, len(ctrs), err)
			}
			info, err := ctrs[0].Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			binary := ""
			if info.Runtime.Options != nil && info.Runtime.Options.GetTypeUrl() != "" {
				v, err := typeurl.UnmarshalAny(info.Runtime.Options)
				if err != nil {
					t.Fatal(err)
				}
				if o, ok := v.(*runcoptions.Options); ok {
					binary = o.BinaryName
				}
			}
			task, err := ctrs[0].Task(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(int(task.Pid())) + "/cmdline")
			pid1 := strings.ReplaceAll(string(cmdline), "\x00", " ")
			switch tc.class {
			case runtime.ClassGVisor:
				if binary != runtime.DefaultRunscWrapper || !strings.Contains(pid1, "runsc") {
					t.Errorf("stranger's sandbox: runtime binary %q, PID 1 %q; want gVisor", binary, pid1)
				}
			case runtime.ClassRunc:
				if binary != "" || !strings.Contains(pid1, "sandbox init") {
					t.Errorf("member's sandbox: runtime binary %q, PID 1 %q; want runc", binary, pid1)
				}
			}
		})
	}
}
