package e2e

import (
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/test/fakes/model"
)

func TestSmokeSandboxedTurn(t *testing.T) {
	e := setup(t, `
connectors:
  dev:
    type: local
    listen: 127.0.0.1:0
    owners: [owner]
    allowed_users: [alice]
`, model.Script{Steps: []model.Step{model.Reply("hello from the model")}, RepeatLast: true})
	got := e.send("dev", "alice", "hi")
	t.Logf("reply: %q", got)
	if !strings.Contains(got, "hello from the model") {
		t.Errorf("reply %q", got)
	}
}
