package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// With a warm pool, a second user's session runs in a pre-started sandbox
// that sees only that user's workspace: what the first user wrote is not
// there, and the hooks folder stays read-only.
func TestWarmPoolSessionsStayIsolated(t *testing.T) {
	e := setupPool(t, 1, privateBot, model.Script{Steps: []model.Step{
		model.Call("write_file", map[string]any{"path": "/workspace/alice.md", "content": "ALICE-DATA"}),
		model.Reply("alice saved"),
		model.Call("list_directory", map[string]any{"path": "/workspace"}),
		model.Call("read_file", map[string]any{"path": "/workspace/alice.md"}),
		model.Call("write_file", map[string]any{"path": "/workspace/.parachute/hooks/pre-session.sh", "content": "x"}),
		model.Reply("bob done"),
	}})
	if got := e.send("dev", "alice", "save"); !strings.Contains(got, "alice saved") {
		t.Fatalf("alice: %q", got)
	}
	// Wait until the pool has refilled: a sandbox is ready (not only
	// being started), as the gateway's metric says.
	e.waitPoolReady(t, 60*time.Second)
	if got := e.send("dev", "bob", "look around"); !strings.Contains(got, "bob done") {
		t.Fatalf("bob: %q", got)
	}
	var bobSession string
	for _, r := range e.records() {
		if r.Kind == "session" && r.User == "local:bob" && r.Decision == "allow" {
			bobSession = r.SessionID
		}
	}
	ctx := namespaces.WithNamespace(context.Background(), "parachute")
	c, err := containerd.New(e.cfg.Runtime.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctrs, _ := c.Containers(ctx, fmt.Sprintf("labels.%q==%s", runtime.LabelSession, bobSession))
	if len(ctrs) != 1 || !strings.HasPrefix(ctrs[0].ID(), "parachute-pool-") {
		var ids []string
		for _, c := range ctrs {
			ids = append(ids, c.ID())
		}
		t.Fatalf("bob's session %s ran in %v, want one pooled sandbox", bobSession, ids)
	}
	if strings.Contains(toolResults(e.model), "ALICE-DATA") {
		t.Fatal("bob's pooled sandbox reached alice's file")
	}
	if _, err := os.Stat(filepath.Join(e.vault, "users", "local%3Abob", ".parachute", "hooks")); err == nil {
		t.Fatal("a hooks folder appeared in bob's workspace")
	}
}

// waitPoolReady waits until the gateway reports a pre-started sandbox ready
// (parachute_pool_ready ≥ 1) and fails the test, with the last value seen,
// if none is within d. It polls the metric every 50 ms: the pool lives
// inside the gateway, and this end-to-end test sees it only as an operator
// would, through /metrics.
func (e *env) waitPoolReady(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := "no answer from /metrics"
	for {
		resp, err := http.Get("http://" + e.g.AdminAddr().String() + "/metrics")
		if err != nil {
			last = err.Error()
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = "no parachute_pool_ready line"
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "parachute_pool_ready "); ok {
					if v != "0" {
						return
					}
					last = "parachute_pool_ready " + v
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pooled sandbox was ready within %v (last: %s)", d, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
