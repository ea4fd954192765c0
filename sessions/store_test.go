package sessions

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sessions.db")
	s, err := OpenStore(StoreOptions{Path: path, MaxHistory: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestAcquireIsOwnerBound(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t)
	t0 := time.Unix(1_700_000_000, 0)
	alice := Session{Owner: "telegram:1", Connector: "tg", Workspace: "users/telegram%3A1"}

	a1, created, err := s.Acquire(ctx, "user\x00tg\x00telegram:1", alice, time.Hour, t0)
	if err != nil || !created {
		t.Fatalf("first acquire: created=%v err=%v", created, err)
	}
	a2, created, err := s.Acquire(ctx, "user\x00tg\x00telegram:1", alice, time.Hour, t0.Add(time.Minute))
	if err != nil || created || a2.ID != a1.ID {
		t.Fatalf("second acquire: id %s vs %s created=%v err=%v", a2.ID, a1.ID, created, err)
	}

	// Somebody else presenting alice's key (a wrongly built key) is refused.
	mallory := alice
	mallory.Owner = "telegram:2"
	if _, _, err := s.Acquire(ctx, "user\x00tg\x00telegram:1", mallory, time.Hour, t0); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("foreign owner: err=%v, want ErrNotOwner", err)
	}
	if _, err := s.Get(ctx, a1.ID, "telegram:2"); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("Get by another identity: err=%v, want ErrNotOwner", err)
	}
	if _, err := s.End(ctx, "user\x00tg\x00telegram:1", "telegram:2", t0); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("End by another identity: err=%v, want ErrNotOwner", err)
	}
	if list, _ := s.List(ctx, "telegram:2"); len(list) != 0 {
		t.Fatalf("another identity lists %d sessions, want 0", len(list))
	}

	// Idle past the TTL: a fresh session.
	a3, created, err := s.Acquire(ctx, "user\x00tg\x00telegram:1", alice, time.Hour, t0.Add(2*time.Hour))
	if err != nil || !created || a3.ID == a1.ID {
		t.Fatalf("after ttl: created=%v same=%v err=%v", created, a3.ID == a1.ID, err)
	}
	old, _ := s.Get(ctx, a1.ID, "telegram:1")
	if old.Ended.IsZero() {
		t.Fatal("the expired session was not marked ended")
	}
}

func TestEndStartsFresh(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t)
	now := time.Unix(1_700_000_000, 0)
	tmpl := Session{Owner: "local:bob"}
	a, _, _ := s.Acquire(ctx, "k", tmpl, 0, now)
	ended, err := s.End(ctx, "k", "local:bob", now)
	if err != nil || ended != a.ID {
		t.Fatalf("End: %q %v", ended, err)
	}
	b, created, _ := s.Acquire(ctx, "k", tmpl, 0, now)
	if !created || b.ID == a.ID {
		t.Fatal("/new did not start a fresh session")
	}
	if ended, err := s.End(ctx, "nothing", "local:bob", now); err != nil || ended != "" {
		t.Fatalf("End of no session: %q %v", ended, err)
	}
}

func TestHistoryBoundedAndPersistent(t *testing.T) {
	ctx := context.Background()
	s, path := openStore(t)
	now := time.Unix(1_700_000_000, 0)
	a, _, _ := s.Acquire(ctx, "k", Session{Owner: "local:bob"}, 0, now)
	for i, c := range []string{"1", "2", "3", "4", "5", "6"} {
		if err := s.Record(ctx, a.ID, now.Add(time.Duration(i)*time.Second), Entry{Role: "user", Content: c}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s2, err := OpenStore(StoreOptions{Path: path, MaxHistory: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	h, err := s2.History(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 4 || h[0].Content != "3" || h[3].Content != "6" {
		t.Fatalf("history after reopen = %+v, want the newest 4", h)
	}
	got, _ := s2.Get(ctx, a.ID, "local:bob")
	if got.Turns != 6 || !got.LastActive.Equal(now.Add(5*time.Second)) {
		t.Fatalf("turns=%d last=%v", got.Turns, got.LastActive)
	}
	if err := s2.Record(ctx, "nope", now, Entry{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Record on unknown session: %v", err)
	}
}

func TestExpire(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t)
	now := time.Unix(1_700_000_000, 0)
	idle, _, _ := s.Acquire(ctx, "idle", Session{Owner: "a"}, 0, now)
	fresh, _, _ := s.Acquire(ctx, "fresh", Session{Owner: "b"}, 0, now.Add(50*time.Minute))
	n, err := s.Expire(ctx, time.Hour, 24*time.Hour, now.Add(70*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("Expire ended %d (%v), want 1", n, err)
	}
	if g, _ := s.Get(ctx, idle.ID, "a"); g.Ended.IsZero() {
		t.Fatal("idle session not ended")
	}
	if g, _ := s.Get(ctx, fresh.ID, "b"); !g.Ended.IsZero() {
		t.Fatal("active session ended")
	}
	// A day later the ended session and its history are gone.
	if _, err := s.Expire(ctx, 0, 24*time.Hour, now.Add(26*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, idle.ID, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old ended session still there: %v", err)
	}
}

func TestUsagePersistsPerDay(t *testing.T) {
	ctx := context.Background()
	s, path := openStore(t)
	day := time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)
	u := Usage{Store: s, Now: func() time.Time { return day }}
	if err := u.AddTokens(ctx, "local:a", 100); err != nil {
		t.Fatal(err)
	}
	_ = u.AddTokens(ctx, "local:a", 50)
	_ = u.AddTokens(ctx, "local:b", 7)
	s.Close()
	s2, err := OpenStore(StoreOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	u.Store = s2
	if n, _ := u.TokensToday(ctx, "local:a"); n != 150 {
		t.Fatalf("after reopen local:a used %d, want 150", n)
	}
	u.Now = func() time.Time { return day.Add(2 * time.Hour) }
	if n, _ := u.TokensToday(ctx, "local:a"); n != 0 {
		t.Fatalf("next UTC day local:a used %d, want 0", n)
	}
}
