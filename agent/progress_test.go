package agent_test

import (
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/agent/agenttest"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// TestProgressLines: with PARACHUTE_PROGRESS=1 the model's words before
// its tool calls are written first as progress lines, then the reply;
// without it stdout is the reply alone, as the contract always was.
func TestProgressLines(t *testing.T) {
	for _, provider := range providers {
		for _, tt := range []struct {
			env  map[string]string
			want string
		}{
			{map[string]string{agent.ProgressEnv: "1"}, `{"type":"progress","text":"Let me look \u003cnotes\u003e.\n\n"}` + "\nYour notes say: buy milk."},
			{nil, "Your notes say: buy milk."},
		} {
			t.Run(provider, func(t *testing.T) {
				call := model.Call("read_file", map[string]any{"path": "/workspace/notes.md"})
				call.Text = "Let me look <notes>."
				gw := agenttest.New(t, map[string]string{"notes.md": "buy milk"}, model.Script{Steps: []model.Step{
					call, model.Reply("Your notes say: buy milk."),
				}})
				r := runTurn(t, gw, request(t, "what is in my notes?", provider), tt.env)
				wantSuccess(t, r)
				if r.stdout != tt.want {
					t.Errorf("stdout %q, want %q", r.stdout, tt.want)
				}
				if strings.Count(r.stdout, "\n") > 1 && tt.env == nil {
					t.Errorf("progress lines without PARACHUTE_PROGRESS")
				}
			})
		}
	}
}
