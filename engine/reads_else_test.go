package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestCacheKeyFollowsElseBranches: an input field read only by a rule that
// an else branch depends on is part of the cache key, so two inputs that
// differ in it are not served one decision (the shipped message policy's
// decision names the workspace in its else branch, and a shared chat's
// workspace comes from chat.id alone).
func TestCacheKeyFollowsElseBranches(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"message.rego": `package parachute.message

where := concat(":", ["chat", input.chat.id]) if {
	input.chat.kind == "group"
} else := deeper

deeper := input.sender.platform_id if {
	input.mentioned == true
} else := "none"

decision := {"allow": false, "reasons": ["nope"]} if {
	input.connector == "blocked"
} else := {"allow": true, "reasons": [], "where": where}
`,
	}
	for _, e := range []string{"session", "tool", "model", "egress"} {
		files[e+".rego"] = "package parachute." + e + "\n\ndecision := {\"allow\": false, \"reasons\": [\"x\"]}\n"
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := newEngine(t, Options{PolicyDir: dir})
	ctx := context.Background()
	cases := []struct {
		in   MessageInput
		want string
	}{
		{MessageInput{Connector: "c", Chat: Chat{ID: "g1", Kind: "group"}}, "chat:g1"},
		{MessageInput{Connector: "c", Chat: Chat{ID: "g2", Kind: "group"}}, "chat:g2"},
		{MessageInput{Connector: "c", Chat: Chat{ID: "d", Kind: "dm"}, Mentioned: true, Sender: Sender{PlatformID: "p1"}}, "p1"},
		{MessageInput{Connector: "c", Chat: Chat{ID: "d", Kind: "dm"}, Mentioned: true, Sender: Sender{PlatformID: "p2"}}, "p2"},
	}
	for range 2 { // the second round is served from the cache
		for _, c := range cases {
			d := e.Evaluate(ctx, c.in)
			if got := d.String("where"); got != c.want {
				t.Fatalf("where = %q for %+v; want %q (the cache key lacks a field an else branch reads)", got, c.in, c.want)
			}
		}
	}
}
