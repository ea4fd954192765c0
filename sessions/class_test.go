package sessions

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/runtime"
)

// noGVisor refuses every sandbox as a host without runsc does.
type noGVisor struct{ *fakeRuntime }

func (noGVisor) Start(context.Context, runtime.Spec) (runtime.Sandbox, error) {
	return nil, &runtime.ClassError{Class: runtime.ClassGVisor, Detail: "stat /usr/bin/runsc: no such file or directory", Fix: "apt-get install runsc"}
}

// TestRuntimeClassUnavailableIsAReply: a session whose runtime class is
// not installed does not start, and the user is told which class and how
// the operator installs it.
func TestRuntimeClassUnavailableIsAReply(t *testing.T) {
	m, rt, _ := newManager(t, testData())
	m.opts.Runtimes["containerd"] = noGVisor{rt}
	got, err := m.Turn(context.Background(), turn("pub", "stranger", "hi"))
	if err != nil {
		t.Fatalf("an unavailable class is an error, not a reply: %v", err)
	}
	for _, want := range []string{"gvisor", runtime.ReasonRuntimeClassUnavailable, "apt-get install runsc"} {
		if !strings.Contains(got, want) {
			t.Errorf("reply %q lacks %q", got, want)
		}
	}
	if len(rt.started) != 0 {
		t.Error("a sandbox started")
	}
}

// preparing records when the workspace was prepared.
type preparing struct {
	*fakeRuntime
	mu    *sync.Mutex
	order *[]string
}

func (p preparing) PrepareWorkspace(_ context.Context, ws string, prof engine.SessionProfile) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	*p.order = append(*p.order, "prepare")
	return nil
}

// TestWorkspacePreparedBeforeSocket: the disk quota is mounted before the
// session's socket handler (which holds the vault tools and their open
// workspace) is made, so the tools write into the capped filesystem.
func TestWorkspacePreparedBeforeSocket(t *testing.T) {
	m, rt, _ := newManager(t, testData())
	var mu sync.Mutex
	var order []string
	m.opts.Runtimes["containerd"] = preparing{rt, &mu, &order}
	sock := m.opts.Socket
	m.opts.Socket = func(l *Live) (http.Handler, error) {
		mu.Lock()
		order = append(order, "socket")
		mu.Unlock()
		return sock(l)
	}
	if _, err := m.Turn(context.Background(), turn("dev", "alice", "hi")); err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, ",") != "prepare,socket" {
		t.Errorf("order %v, want the workspace prepared before the socket", order)
	}
}
