package sessions

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/runtime"
)

// argsRuntime starts sandboxes that record each turn's command and
// environment.
type argsRuntime struct {
	mu    sync.Mutex
	turns []runtime.Turn
}

func (r *argsRuntime) Start(context.Context, runtime.Spec) (runtime.Sandbox, error) {
	return &argsSandbox{r}, nil
}

type argsSandbox struct{ r *argsRuntime }

func (s *argsSandbox) ID() string                 { return "args" }
func (s *argsSandbox) Stop(context.Context) error { return nil }
func (s *argsSandbox) Exec(_ context.Context, t runtime.Turn) (runtime.Result, error) {
	_, _ = io.Copy(io.Discard, t.Stdin)
	s.r.mu.Lock()
	s.r.turns = append(s.r.turns, t)
	s.r.mu.Unlock()
	_, _ = io.WriteString(t.Stdout, "ok")
	return runtime.Result{}, nil
}

// Each turn runs the agent AgentFor picks from the session's facts; a
// choice without a command keeps the default one.
func TestAgentForPicksEachTurnsAgent(t *testing.T) {
	m, _, _ := newManager(t, testData())
	rt := &argsRuntime{}
	m.opts.Runtimes = map[string]Sandboxes{"containerd": rt}
	m.opts.AgentFor = func(f engine.SessionFacts) AgentChoice {
		if f.Identity == "local:alice" {
			return AgentChoice{Args: []string{"/parachute", "agent", "--kind", "claude-code"}, Env: []string{"PARACHUTE_AGENT_TOOLS="}}
		}
		return AgentChoice{}
	}
	for _, user := range []string{"alice", "bob"} {
		if _, err := m.Turn(context.Background(), turn("dev", user, "hi")); err != nil {
			t.Fatal(err)
		}
	}
	if len(rt.turns) != 2 {
		t.Fatalf("%d turns ran", len(rt.turns))
	}
	alice, bob := rt.turns[0], rt.turns[1]
	if got := strings.Join(alice.Args, " "); got != "/parachute agent --kind claude-code" {
		t.Errorf("alice's agent %q", got)
	}
	if !strings.Contains(strings.Join(alice.Env, " "), "PARACHUTE_AGENT_TOOLS=") || !strings.Contains(strings.Join(alice.Env, " "), "PARACHUTE_SOCKET=") {
		t.Errorf("alice's env %q", alice.Env)
	}
	if got := strings.Join(bob.Args, " "); got != "/parachute agent" {
		t.Errorf("bob's agent %q; want the default", got)
	}
}
