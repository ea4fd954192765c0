package agent_test

import (
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/agent/agenttest"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// When the gateway sheds a tool listing or call as busy, the turn ends
// with exit ExitBusy and one line saying busy: never "no tool named",
// never the busy error passed to the model as a tool result, never a
// reply built on it.
func TestBusyGatewayEndsTheTurn(t *testing.T) {
	script := model.Script{Steps: []model.Step{
		model.Call("read_file", map[string]any{"path": "/workspace/notes.md"}),
		model.Reply("I could not find that tool."),
	}}
	for _, tc := range []struct {
		name       string
		text       string
		provider   string
		list       bool
		tools      []string
		wantModel  int // model requests made
		wantCalled bool
	}{
		{"tools-only call shed", "/cat notes.md", "", false, []string{"read_file"}, 0, true},
		{"model listing shed", "what is in my notes?", agent.ProviderOpenAI, true, nil, 0, false},
		{"model call shed", "what is in my notes?", agent.ProviderOpenAI, false, []string{"read_file"}, 1, true},
		{"model call shed (anthropic)", "what is in my notes?", agent.ProviderAnthropic, false, []string{"read_file"}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := agenttest.New(t, map[string]string{"notes.md": "buy milk"}, script)
			gw.Shed(tc.list, tc.tools...)
			r := runTurn(t, gw, request(t, tc.text, tc.provider), nil)
			if r.code != agent.ExitBusy || r.stdout != "" {
				t.Fatalf("exit %d stdout %q stderr %q; want exit %d and no reply", r.code, r.stdout, r.stderr, agent.ExitBusy)
			}
			if !strings.Contains(r.stderr, "busy") || strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "no tool named") {
				t.Errorf("stderr %q; want one line saying busy", r.stderr)
			}
			if n := len(gw.Model.Requests()); n != tc.wantModel {
				t.Errorf("%d model requests; want %d (the busy answer must not reach the model)", n, tc.wantModel)
			}
			if called := len(gw.Calls()) > 0; called != tc.wantCalled {
				t.Errorf("tool calls %v; want called %v", gw.Calls(), tc.wantCalled)
			}
		})
	}
}
