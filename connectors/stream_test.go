package connectors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeStreamer records what a streamed reply did, by the bubble's clock.
type fakeStreamer struct {
	interval  time.Duration
	failEdits bool

	mu     sync.Mutex
	sent   []string
	edits  []time.Time
	texts  map[string]string // message ID → current text
	typing int
}

func (f *fakeStreamer) SendText(_ context.Context, _, text string) error {
	_, err := f.SendPlaceholder(context.Background(), "", text)
	return err
}

func (f *fakeStreamer) Typing(context.Context, string) error {
	f.mu.Lock()
	f.typing++
	f.mu.Unlock()
	return nil
}

func (f *fakeStreamer) SendPlaceholder(_ context.Context, _, text string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, text)
	id := fmt.Sprint(len(f.sent))
	if f.texts == nil {
		f.texts = map[string]string{}
	}
	f.texts[id] = text
	f.edits = append(f.edits, time.Now()) // a send counts against the limit too
	return id, nil
}

func (f *fakeStreamer) EditText(_ context.Context, _, id, text string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.edits = append(f.edits, time.Now())
	if f.failEdits {
		return errors.New("edit refused")
	}
	f.texts[id] = text
	return nil
}

func (f *fakeStreamer) EditInterval() time.Duration { return f.interval }

// TestStreamEditsRespectTheRateLimit: an agent reporting progress every
// 50 ms for 5 s gets its placeholder edited no faster than the platform
// allows, the latest text winning, and the final edit waits its turn too.
func TestStreamEditsRespectTheRateLimit(t *testing.T) {
	for _, tt := range []struct {
		platform string
		interval time.Duration
	}{
		{"telegram", time.Second},          // about 1 edit/s per chat
		{"discord", time.Second},           // 5 per 5 s per channel
		{"matrix", 300 * time.Millisecond}, // a few per second
	} {
		t.Run(tt.platform, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeStreamer{interval: tt.interval}
				limit, unit := PlatformLimit(tt.platform)
				st := startStream(t.Context(), f, "chat", limit, unit)
				text := ""
				for i := range 100 {
					text += fmt.Sprintf("word%d ", i)
					st.Progress(text)
					time.Sleep(50 * time.Millisecond) // fake time: the agent writing
				}
				if err := st.finish(t.Context(), text+"done."); err != nil {
					t.Fatal(err)
				}
				if len(f.sent) != 1 || f.sent[0] != Placeholder {
					t.Fatalf("sent %q, want one placeholder", f.sent)
				}
				if got, want := f.texts["1"], text+"done."; got != want {
					t.Errorf("final text %q, want %q", got, want)
				}
				if len(f.edits) < 3 {
					t.Errorf("%d sends and edits, want the placeholder and at least two edits", len(f.edits))
				}
				for i := 1; i < len(f.edits); i++ {
					if gap := f.edits[i].Sub(f.edits[i-1]); gap < tt.interval {
						t.Errorf("edit %d came %v after the one before, want at least %v", i, gap, tt.interval)
					}
				}
				if max := int(5*time.Second/tt.interval) + 2; len(f.edits) > max {
					t.Errorf("%d edits in about 5 s, want at most %d", len(f.edits), max)
				}
				if f.typing < 1 {
					t.Errorf("no typing indicator renewed during a 5 s turn")
				}
			})
		})
	}
}

// TestStreamWithoutProgressIsOneMessage: a turn that reports nothing (an
// agent that does not stream) sends no placeholder: one final message.
func TestStreamWithoutProgressIsOneMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeStreamer{interval: time.Second}
		st := startStream(t.Context(), f, "chat", DiscordLimit, Runes)
		if err := st.finish(t.Context(), "the reply"); err != nil {
			t.Fatal(err)
		}
		if len(f.sent) != 1 || f.sent[0] != "the reply" {
			t.Fatalf("sent %q, want the reply alone", f.sent)
		}
	})
}

// TestStreamFinalEditRefusedSendsTheReply: when the platform refuses the
// final edit (message deleted by the user), the reply still arrives, as a
// new message.
func TestStreamFinalEditRefusedSendsTheReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeStreamer{interval: time.Second, failEdits: true}
		st := startStream(t.Context(), f, "chat", DiscordLimit, Runes)
		st.Progress("partial")
		time.Sleep(3 * time.Second) // fake time: the placeholder is sent and its edits refused
		if err := st.finish(t.Context(), "the full reply"); err != nil {
			t.Fatal(err)
		}
		if n := len(f.sent); n != 2 || f.sent[1] != "the full reply" {
			t.Fatalf("sent %q, want the placeholder then the full reply", f.sent)
		}
	})
}
