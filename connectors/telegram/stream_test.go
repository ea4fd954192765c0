package telegram_test

import (
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/internal/testkit"
	fake "github.com/parachute-gateway/parachute/test/fakes/telegram"
)

// TestTelegramStreamedReply: an agent that reports progress gets a
// "thinking…" placeholder, edited with editMessageText as its output
// arrives, ending as the full reply, in one message.
func TestTelegramStreamedReply(t *testing.T) {
	var f *fake.Server
	progress := []string{"Hello", "Hello, wor"}
	const full = "Hello, world. This is the full reply."
	turns := &testkit.Turns{Reply: func(req connectors.TurnRequest) string {
		if req.Progress == nil {
			t.Error("the router gave a streaming connector no Progress")
			return full
		}
		for _, p := range progress {
			req.Progress(p)
			// The agent goes on only once the chat shows it: each
			// progress text becomes an edit of its own.
			if !until(f, 10*time.Second, func() bool { return f.Current(1) == p }) {
				t.Errorf("waited 10 s for the edit to %q", p) // not Fatal: this is the agent's goroutine
				return full
			}
		}
		return full
	}}
	r := start(t, turns)
	f = r.fake
	r.fake.Push(fake.Message{FromID: alice, Text: "talk to me"})
	waitFor(t, f, "the edit to the full reply", func() bool { return f.Current(1) == full })

	sent := f.Sent()
	if len(sent) != 1 || sent[0].Text != connectors.Placeholder {
		t.Fatalf("sent %q, want one placeholder %q", texts(sent), connectors.Placeholder)
	}
	var edits []string
	for _, e := range f.Edits() {
		if e.MessageID != 1 || e.ChatID != sent[0].ChatID {
			t.Errorf("edit of message %d in chat %s, want the placeholder", e.MessageID, e.ChatID)
		}
		edits = append(edits, e.Text)
	}
	if want := append(progress, full); strings.Join(edits, "|") != strings.Join(want, "|") {
		t.Errorf("edits %q, want %q", edits, want)
	}
}

// TestTelegramStreamedLongReply: a streamed reply longer than the platform
// limit ends as the placeholder edited to the first chunk and the rest as
// new messages, each within the limit.
func TestTelegramStreamedLongReply(t *testing.T) {
	long := strings.Repeat("word ", 2000) // 10,000 characters
	var f *fake.Server
	turns := &testkit.Turns{Reply: func(req connectors.TurnRequest) string {
		req.Progress(long[:5000])
		if !until(f, 10*time.Second, func() bool { return strings.HasSuffix(f.Current(1), " …") }) {
			t.Error("waited 10 s for the progress edit") // not Fatal: this is the agent's goroutine
		}
		return long
	}}
	r := start(t, turns)
	f = r.fake
	r.fake.Push(fake.Message{FromID: alice, Text: "a lot"})
	got := waitSent(t, f, 3, 10*time.Second)
	waitFor(t, f, "the placeholder's final edit", func() bool { return !strings.HasSuffix(f.Current(1), " …") })
	parts := []string{f.Current(1)}
	for i := 2; i <= len(got); i++ {
		parts = append(parts, f.Current(i))
	}
	for _, p := range parts {
		if n := len([]rune(p)); n > connectors.TelegramLimit {
			t.Errorf("a message of %d characters", n)
		}
	}
	if j := strings.Join(parts, " "); j != strings.TrimSpace(long) {
		t.Errorf("the messages do not join back to the reply (%d chars, want %d)", len(j), len(strings.TrimSpace(long)))
	}
}

// waitFor waits until cond holds, checking it at every send or edit of
// the fake, and fails the test naming what after 10 s.
func waitFor(t *testing.T, f *fake.Server, what string, cond func() bool) {
	t.Helper()
	if !until(f, 10*time.Second, cond) {
		t.Fatalf("waited 10 s for %s", what)
	}
}
