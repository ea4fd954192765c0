package connectors_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
)

// TestRedeliveryAfterRestartRunsOnce: the router's duplicate filter is on
// disk before a message is handled, so the same platform message ID
// delivered again after a restart (kill -9, then Telegram redelivering an
// unconfirmed update) does not run a second turn.
func TestRedeliveryAfterRestartRunsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "seen.db")
	e, _ := newEngine(t, testData())
	turns := &countingTurns{}
	run := func(ids ...string) {
		seen, err := connectors.OpenSeenStore(path, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer seen.Close() // the next run reopens it, as a restarted gateway does
		r, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: turns, Seen: seen})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			m := msg("alice", "run the tool")
			m.MessageID = id
			if err := r.Handle(context.Background(), m, &chat{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	run("chat1:41", "chat1:42")
	run("chat1:42", "chat1:43") // after the restart: 42 again
	if turns.n() != 3 {
		t.Fatalf("%d turns for messages 41, 42, 42 (redelivered), 43: want 3", turns.n())
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("filter file: %v %v", st, err)
	}
}

// TestSeenStoreFailsClosed: when the key cannot be written the message is
// not handled, the sender is told, and a later delivery can still run.
func TestSeenStoreFailsClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seen.db")
	seen, err := connectors.OpenSeenStore(path, 10, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newEngine(t, testData())
	turns := &countingTurns{}
	r, _ := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: turns, Seen: seen})
	seen.Close() // writes now fail
	c := &chat{}
	m := msg("alice", "hi")
	if err := r.Handle(context.Background(), m, c); err == nil || turns.n() != 0 || len(c.all()) != 1 {
		t.Fatalf("err=%v turns=%d replies=%q: want a refusal the user is told about", err, turns.n(), c.all())
	}
	seen2, err := connectors.OpenSeenStore(path, 10, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer seen2.Close()
	r2, _ := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: turns, Seen: seen2})
	if err := r2.Handle(context.Background(), m, c); err != nil || turns.n() != 1 {
		t.Fatalf("redelivery after the failure: %v, %d turns", err, turns.n())
	}
}
