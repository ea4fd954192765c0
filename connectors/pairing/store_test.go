package pairing_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors/pairing"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, path string, c *clock) *pairing.Store {
	t.Helper()
	s, err := pairing.Open(context.Background(), pairing.Options{Path: path, Now: c.now, AttemptsPerHour: 1000, AttemptBurst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCodesExpire(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := open(t, filepath.Join(t.TempDir(), "s.db"), c)
	p, err := s.RequestCode(ctx, "tg", "telegram:1", "x")
	if err != nil || len(p.Code) != 8 || !p.Expires.Equal(c.now().Add(time.Hour)) {
		t.Fatalf("%+v %v", p, err)
	}
	c.add(time.Hour)
	if l, _ := s.List(ctx); len(l) != 0 {
		t.Fatalf("expired code listed: %+v", l)
	}
	if _, err := s.Approve(ctx, p.Code, "member", ""); !errors.Is(err, pairing.ErrNoSuchCode) {
		t.Fatalf("approving an expired code: %v", err)
	}
	p2, _ := s.RequestCode(ctx, "tg", "telegram:1", "x")
	if p2.Code == p.Code {
		t.Fatal("an expired code was handed out again")
	}
}

func TestInvites(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := open(t, filepath.Join(t.TempDir(), "s.db"), c)
	tests := []struct {
		name    string
		inv     pairing.Invite
		ttl     time.Duration
		advance time.Duration
		conn    string
		wantErr error
	}{
		{"valid", pairing.Invite{Role: "member"}, time.Hour, 0, "tg", nil},
		{"expired", pairing.Invite{Role: "member"}, time.Hour, time.Hour, "tg", pairing.ErrInvalidToken},
		{"other connector", pairing.Invite{Role: "member", Connector: "dc"}, time.Hour, 0, "tg", pairing.ErrInvalidToken},
		{"its connector", pairing.Invite{Role: "member", Connector: "tg"}, time.Hour, 0, "tg", nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := s.CreateInvite(ctx, tt.inv, tt.ttl)
			if err != nil {
				t.Fatal(err)
			}
			c.add(tt.advance)
			id := "telegram:" + string(rune('a'+i))
			_, err = s.RedeemInvite(ctx, tt.conn, id, tok)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("redeem: %v, want %v", err, tt.wantErr)
			}
			b, _ := s.Binding(ctx, tt.conn, id)
			if (b != nil) != (tt.wantErr == nil) {
				t.Fatalf("binding %+v after redeem err %v", b, err)
			}
		})
	}
	for _, bad := range []pairing.Invite{{Role: ""}, {Role: "../x"}, {Role: "member", Workspace: "a/b"}} {
		if _, err := s.CreateInvite(ctx, bad, time.Hour); !errors.Is(err, pairing.ErrInvalid) {
			t.Errorf("CreateInvite(%+v) = %v", bad, err)
		}
	}
}

func TestTwoProcessesShareTheFile(t *testing.T) {
	// The gateway and the CLI each open the store; the gateway's cached
	// bindings see the CLI's approval.
	ctx := context.Background()
	c := &clock{t: time.Now()}
	path := filepath.Join(t.TempDir(), "s.db")
	gw, cli := open(t, path, c), open(t, path, c)
	p, _ := gw.RequestCode(ctx, "tg", "telegram:9", "")
	if b, _ := gw.Binding(ctx, "tg", "telegram:9"); b != nil {
		t.Fatal("bound before approval")
	}
	if _, err := cli.Approve(ctx, p.Code, "member", "team"); err != nil {
		t.Fatal(err)
	}
	b, err := gw.Binding(ctx, "tg", "telegram:9")
	if err != nil || b == nil || b.Role != "member" || b.Workspace != "team" || b.Source != "pairing" {
		t.Fatalf("gateway sees %+v, %v", b, err)
	}
	if b, _ := gw.Binding(ctx, "other", "telegram:9"); b != nil {
		t.Fatal("binding leaked to another connector")
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("store mode %v", st.Mode().Perm())
	}
}

func TestStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := pairing.Open(ctx, pairing.Options{Path: filepath.Join(dir, "s.db")})
	if err := os.Remove(filepath.Join(dir, "s.db")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Binding(ctx, "tg", "telegram:1"); !errors.Is(err, pairing.ErrStore) {
		t.Fatalf("Binding on a missing store: %v", err)
	}
	if _, err := pairing.Open(ctx, pairing.Options{}); !errors.Is(err, pairing.ErrInvalid) {
		t.Fatalf("Open without path: %v", err)
	}
}
