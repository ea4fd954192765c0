package connectors_test

import (
	"context"
	"testing"

	"github.com/parachute-gateway/parachute/connectors"
)

func TestDecideInvite(t *testing.T) {
	inv := func(user, kind string) connectors.Invite {
		return connectors.Invite{Connector: "dev", Type: "local", InviterID: user, ChatID: "room1", ChatKind: kind}
	}
	tests := []struct {
		name    string
		inv     connectors.Invite
		want    bool
		wantErr bool
	}{
		{"owner to a DM", inv("owner", connectors.KindDM), true, false},
		{"allowed user to a group (require_mention does not block invites)", inv("alice", connectors.KindGroup), true, false},
		{"stranger", inv("mallory", connectors.KindDM), false, false},
		{"stranger with the owner's display name", func() connectors.Invite {
			i := inv("mallory", connectors.KindDM)
			i.DisplayName = "owner"
			return i
		}(), false, false},
		{"inviter ID shaped like an identity", inv("local:owner", connectors.KindDM), false, false},
		{"other connector type", func() connectors.Invite { i := inv("owner", connectors.KindDM); i.Type = "matrix"; return i }(), false, false},
		{"unknown connector", func() connectors.Invite { i := inv("owner", connectors.KindDM); i.Connector = "nope"; return i }(), false, false},
		{"malformed inviter", inv("own er", connectors.KindDM), false, true},
		{"malformed chat kind", inv("owner", "space"), false, true},
	}
	r, turns := newRouter(t, testData(), newStore(t, nil))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.DecideInvite(context.Background(), tt.inv)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("allow = %v, want %v", got, tt.want)
			}
		})
	}
	if turns.n() != 0 {
		t.Errorf("invites ran %d agent turns", turns.n())
	}
}

func TestGroupSessionsPerUserUnlessShared(t *testing.T) {
	tests := []struct {
		name   string
		shared bool
		same   bool
	}{
		{"per user by default", false, false},
		{"one per chat when policy shares it", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, turns := newRouter(t, testData(func(c map[string]any) { c["shared_chat_sessions"] = tt.shared }), nil)
			for _, u := range []string{"alice", "bob"} {
				m := msg(u, "hi")
				m.ChatID, m.ChatKind, m.Mentioned = "g1", connectors.KindGroup, true
				if err := r.Handle(context.Background(), m, &chat{}); err != nil {
					t.Fatal(err)
				}
			}
			if turns.n() != 2 {
				t.Fatalf("%d turns, want 2", turns.n())
			}
			a, b := turns.turns[0].SessionKey, turns.turns[1].SessionKey
			if (a == b) != tt.same {
				t.Errorf("session keys %q and %q: same = %v, want %v", a, b, a == b, tt.same)
			}
		})
	}
}
