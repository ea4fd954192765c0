package matrix_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/matrix"
)

// streamed is what the room's creator sees of the bot's streamed reply:
// the placeholder's body and the m.new_content bodies of the m.replace
// edits of it, oldest first.
func (w *world) streamed(t testing.TB, room string) (placeholder string, edits []string, others int) {
	t.Helper()
	var out struct {
		Chunk []struct {
			Type    string         `json:"type"`
			Sender  string         `json:"sender"`
			EventID string         `json:"event_id"`
			Content map[string]any `json:"content"`
		} `json:"chunk"`
	}
	w.reader(room).do(t, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/messages?dir=b&limit=100", nil, &out)
	first := ""
	for i := len(out.Chunk) - 1; i >= 0; i-- {
		e := out.Chunk[i]
		if e.Type != "m.room.message" || e.Sender != w.bot.UserID {
			continue
		}
		rel, _ := e.Content["m.relates_to"].(map[string]any)
		switch {
		case rel == nil && first == "":
			first = e.EventID
			placeholder, _ = e.Content["body"].(string)
		case rel != nil && rel["rel_type"] == "m.replace" && rel["event_id"] == first:
			nc, _ := e.Content["m.new_content"].(map[string]any)
			if nc["msgtype"] != "m.notice" || e.Content["msgtype"] != "m.notice" {
				t.Errorf("edit %v is not a notice", e.Content)
			}
			if m, ok := nc["m.mentions"].(map[string]any); !ok || len(m) != 0 {
				t.Errorf("edit's new content mentions %v, want none", nc["m.mentions"])
			}
			body, _ := nc["body"].(string)
			edits = append(edits, body)
		default:
			others++
		}
	}
	return placeholder, edits, others
}

// TestMatrixStreamedReply: against Dendrite, an agent that reports
// progress gets a "thinking…" notice, edited with m.replace events sent
// by the bot as its output arrives, ending as the full reply.
func TestMatrixStreamedReply(t *testing.T) {
	w := newWorldWith(t, func(o *matrix.Options) { o.EditInterval = 20 * time.Millisecond })
	aliceDM := w.dm(t, w.alice)
	progress := []string{"Hello", "Hello, wor"}
	const full = "Hello, world. The full reply."
	last := func() string {
		_, edits, _ := w.streamed(t, aliceDM)
		if len(edits) == 0 {
			return ""
		}
		return edits[len(edits)-1]
	}
	w.turns.Reply = func(req connectors.TurnRequest) string {
		if req.Progress == nil {
			t.Error("the router gave a streaming connector no Progress")
			return full
		}
		for _, p := range progress {
			req.Progress(p)
			waitFor(t, "the edit to "+p, func() bool { return last() == p })
		}
		return full
	}
	w.alice.say(t, aliceDM, "talk to me")
	waitFor(t, "the full reply", func() bool { return last() == full })
	placeholder, edits, others := w.streamed(t, aliceDM)
	if placeholder != connectors.Placeholder || others != 0 {
		t.Errorf("placeholder %q and %d other messages, want %q alone", placeholder, others, connectors.Placeholder)
	}
	if want := append(progress, full); strings.Join(edits, "|") != strings.Join(want, "|") {
		t.Errorf("edits %q, want %q", edits, want)
	}
}
