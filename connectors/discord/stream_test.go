package discord_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/internal/testkit"
	fake "github.com/parachute-gateway/parachute/test/fakes/discord"
)

// TestDiscordStreamedReply: an agent that reports progress gets a
// "thinking…" placeholder, edited (PATCH, no mentions parsed) as its
// output arrives, ending as the full reply in that one message.
func TestDiscordStreamedReply(t *testing.T) {
	var f *fake.Server
	progress := []string{"Hello", "Hello @everyone, wor"}
	const full = "Hello @everyone, world. The full reply."
	placeholder := func() string {
		if s := f.Sent(); len(s) > 0 {
			return f.Current(s[0].ID)
		}
		return ""
	}
	turns := &testkit.Turns{Reply: func(req connectors.TurnRequest) string {
		if req.Progress == nil {
			t.Error("the router gave a streaming connector no Progress")
			return full
		}
		for _, p := range progress {
			req.Progress(p)
			if !until(f, func() bool { return placeholder() == p }) {
				t.Errorf("waited 10 s for the edit to %q", p) // not Fatal: this is the agent's goroutine
				return full
			}
		}
		return full
	}}
	r := start(t, turns)
	f = r.fake
	ch := dmChannel(alice)
	f.Send(fake.Message{ChannelID: ch, AuthorID: alice, Username: "alice", Content: "talk to me"})
	waitFor(t, f, "the full reply", func() bool { return placeholder() == full })

	sent := f.Sent()
	if len(sent) != 1 || sent[0].Content != connectors.Placeholder || sent[0].ChannelID != ch {
		t.Fatalf("sent %+v, want one placeholder %q in %s", sent, connectors.Placeholder, ch)
	}
	var edits []string
	for _, e := range f.Edits() {
		if e.MessageID != sent[0].ID || e.ChannelID != ch {
			t.Errorf("edit of %s in %s, want the placeholder", e.MessageID, e.ChannelID)
		}
		var am struct {
			Parse []string `json:"parse"`
		}
		if err := json.Unmarshal(e.AllowedMentions, &am); err != nil || am.Parse == nil || len(am.Parse) != 0 {
			t.Errorf("edit allowed_mentions %s, want none parsed", e.AllowedMentions)
		}
		edits = append(edits, e.Content)
	}
	if want := append(progress, full); strings.Join(edits, "|") != strings.Join(want, "|") {
		t.Errorf("edits %q, want %q", edits, want)
	}
}
