package pairing_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors/pairing"
)

// An owner answering in chat approves only their own connector's
// requests, and the grant names them as its actor.
func TestApproveByIsScopedToTheConnector(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, rec := openRec(t, filepath.Join(t.TempDir(), "s.db"), c)
	p, err := s.RequestCode(ctx, "tg", "telegram:1", "x")
	if err != nil || !p.New {
		t.Fatalf("first request: %+v %v (want New)", p, err)
	}
	if again, _ := s.RequestCode(ctx, "tg", "telegram:1", "x"); again.New || again.Code != p.Code {
		t.Fatalf("repeated request: %+v (want the same code, not New)", again)
	}
	for _, tc := range []struct {
		name string
		fn   func() (pairing.Pending, error)
	}{
		{"approve", func() (pairing.Pending, error) { return s.ApproveBy(ctx, "discord:9", "dc", p.Code, "member", "") }},
		{"deny", func() (pairing.Pending, error) { return s.DenyBy(ctx, "discord:9", "dc", p.Code) }},
	} {
		got, err := tc.fn()
		if !errors.Is(err, pairing.ErrNoSuchCode) || got.Identity != "" {
			t.Fatalf("%s by another connector's owner: %+v %v (want ErrNoSuchCode, nothing revealed)", tc.name, got, err)
		}
	}
	if l, _ := s.List(ctx); len(l) != 1 {
		t.Fatalf("the request did not stay pending: %+v", l)
	}
	if _, err := s.ApproveBy(ctx, "", "tg", p.Code, "member", ""); !errors.Is(err, pairing.ErrInvalid) {
		t.Fatalf("no actor: %v", err)
	}
	if _, err := s.ApproveBy(ctx, "telegram:42", "tg", p.Code, "member", ""); err != nil {
		t.Fatal(err)
	}
	e := rec.find(pairing.KindPairApprove, true)
	if e == nil || e.Actor != "telegram:42" || e.Identity != "telegram:1" || e.Role != "member" {
		t.Fatalf("grant record: %+v", e)
	}
	if b, _ := s.Binding(ctx, "tg", "telegram:1"); b == nil || b.Role != "member" {
		t.Fatalf("binding: %+v", b)
	}
	if r := rec.find(pairing.KindPairApprove, false); r == nil || r.Actor != "discord:9" || r.Reason != pairing.ReasonNoSuchCode {
		t.Fatalf("the refused attempt of another connector's owner is not recorded: %+v", r)
	}
}
