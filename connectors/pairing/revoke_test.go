package pairing_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors/pairing"
)

func onlyInvite(t *testing.T, s *pairing.Store) string {
	t.Helper()
	m, err := s.Invites(context.Background())
	if err != nil || len(m) != 1 {
		t.Fatalf("invites: %v %v", m, err)
	}
	for h := range m {
		return h
	}
	return ""
}

func TestRevokeInvite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	rec := &recorder{}
	gw, err := pairing.Open(ctx, pairing.Options{Path: path, Recorder: rec, Actor: "operator uid:0"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := gw.CreateInvite(ctx, pairing.Invite{Role: "member", Workspace: "team"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hash := onlyInvite(t, gw)
	for _, bad := range []string{"", "abc", "zzzzzzzzzzzzzzzz", hash[:11]} {
		if _, err := gw.RevokeInvite(ctx, bad); !errors.Is(err, pairing.ErrInvalid) {
			t.Errorf("RevokeInvite(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := gw.RevokeInvite(ctx, strings.Repeat("0", 12)); !errors.Is(err, pairing.ErrInvalidToken) {
		t.Errorf("no such invite: %v", err)
	}
	inv, err := gw.RevokeInvite(ctx, hash)
	if err != nil || inv.Role != "member" || inv.Workspace != "team" {
		t.Fatalf("RevokeInvite: %+v %v", inv, err)
	}
	if _, err := gw.RedeemInvite(ctx, "tg", "telegram:1", tok); !errors.Is(err, pairing.ErrInvalidToken) {
		t.Fatalf("a revoked invite was redeemed: %v", err)
	}
	ev := rec.events()
	var revoked *pairing.Event
	for i := range ev {
		if ev[i].Kind == pairing.KindInviteRevoke {
			revoked = &ev[i]
		}
	}
	if revoked == nil || !revoked.OK || revoked.Actor != "operator uid:0" || revoked.Workspace != "team" {
		t.Fatalf("revoke record %+v in %+v", revoked, ev)
	}

	// An invite the CLI made with no gateway (held) is revoked too, and
	// the gateway's later drain releases nothing.
	cli, err := pairing.Open(ctx, pairing.Options{Path: path, Actor: "operator uid:0"})
	if err != nil {
		t.Fatal(err)
	}
	tok2, _ := cli.CreateInvite(ctx, pairing.Invite{Role: "member"}, time.Hour)
	if _, err := cli.RevokeInvite(ctx, onlyInvite(t, cli)); err != nil {
		t.Fatal(err)
	}
	if _, err := pairing.Open(ctx, pairing.Options{Path: path, Recorder: rec}); err != nil { // drains
		t.Fatal(err)
	}
	if m, _ := cli.Invites(ctx); len(m) != 0 {
		t.Fatalf("invites left: %v", m)
	}
	if _, err := gw.RedeemInvite(ctx, "tg", "telegram:2", tok2); !errors.Is(err, pairing.ErrInvalidToken) {
		t.Fatalf("a revoked held invite was redeemed: %v", err)
	}
}
