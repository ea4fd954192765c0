package engine

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestExplainIsTheEvaluation: Explain decides exactly what Evaluate
// decides, on the repository's policies with data.json's role defaults and
// the operator's data, and its trace is of that evaluation (it reads the
// role settings the decision's rate limit comes from).
func TestExplainIsTheEvaluation(t *testing.T) {
	var doc struct {
		Parachute struct {
			Config map[string]any `json:"config"`
		} `json:"parachute"`
	}
	b, err := os.ReadFile("../policies/examples/data.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Options{PolicyDir: "../policies", Data: doc.Parachute.Config})
	ctx := context.Background()
	member := MessageInput{Connector: "discord-team", ConnectorType: "discord",
		Sender: Sender{ID: "discord:777888999000111222", PlatformID: "777888999000111222"},
		Chat:   Chat{ID: "c", Kind: "dm"}, TextLength: 3}
	inputs := map[string]Input{
		"member message": member,
		"stranger":       MessageInput{Connector: "discord-team", ConnectorType: "discord", Sender: Sender{ID: "discord:1", PlatformID: "1"}, Chat: Chat{ID: "c", Kind: "dm"}},
		"raw owner":      RawInput{For: Message, Doc: map[string]any{"connector": "telegram-private", "connector_type": "telegram", "sender": map[string]any{"id": "telegram:123456789", "platform_id": "123456789"}, "chat": map[string]any{"id": "1", "kind": "dm"}, "requested_trust_level": "direct"}},
		"session":        SessionInput{Session: SessionFacts{ID: "s", Identity: "discord:777888999000111222", Connector: "discord-team", Role: "member", TrustLevel: "sandboxed", Workspace: "workspaces/team"}},
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			want := e.Evaluate(ctx, in)
			got, trace := e.Explain(ctx, in)
			if got.Allow != want.Allow || !reflect.DeepEqual(got.Reasons, want.Reasons) || !reflect.DeepEqual(got.Fields, want.Fields) || got.Revision != want.Revision {
				t.Fatalf("Explain decided %v %v %v; Evaluate %v %v %v", got.Allow, got.Reasons, got.Fields, want.Allow, want.Reasons, want.Fields)
			}
			if len(trace) == 0 {
				t.Fatal("no trace")
			}
		})
	}
	d, trace := e.Explain(ctx, member)
	if !d.Allow {
		t.Fatalf("member denied: %v", d.Reasons)
	}
	var sawRoles bool
	for _, ev := range trace {
		if ev.Node != nil && strings.Contains(ev.Node.String(), "data.parachute.config.roles") {
			sawRoles = true
		}
	}
	if !sawRoles {
		t.Error("the trace never reads the role settings the decision used")
	}
}
