package sessions

import (
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/engine"
)

func sharedData(readOnlyConnector bool) map[string]any {
	return map[string]any{
		"connectors": map[string]any{
			"team": map[string]any{"type": "local", "owners": []any{"olivia"}, "allowed_users": []any{"olivia", "mia", "gus"},
				"shared_chat_sessions": true, "allow_direct": true, "default_trust_level": "direct",
				"network_enabled": true, "read_only": readOnlyConnector},
		},
		"users": map[string]any{"local:gus": map[string]any{"role": "guest"}},
		"roles": map[string]any{"guest": map[string]any{"read_only": true}},
	}
}

// TestSharedChatSession: three members of different roles (owner, member,
// guest) share one session and one workspace per chat, the chat's own, in
// a sandbox decided for the chat (never direct, though the owner's DMs are
// direct); each turn is decided as its sender (identity, role, read-only),
// and a second chat has a session and workspace of its own.
func TestSharedChatSession(t *testing.T) {
	st := newStack(t, sharedData(false))
	chatWS := ChatWorkspace("team", "group-1")
	members := []struct {
		user, role, readOnly string
	}{
		{"olivia", "owner", "false"},
		{"mia", "member", "false"},
		{"gus", "guest", "true"},
	}
	for round := range 2 {
		for _, m := range members {
			text := m.user + "-" + itoa(round)
			got := st.send(t, "team", m.user, "group-1", text)
			want := "socket=local:" + m.user + "/" + m.role + "/sandboxed/" + chatWS + "/ro=" + m.readOnly
			if !strings.Contains(got, "text="+text) || !strings.Contains(got, want) {
				t.Fatalf("%s's turn: %q; want their own facts on the chat's session (%s)", m.user, got, want)
			}
			st.consistent(t)
		}
	}
	if got := st.send(t, "team", "olivia", "group-1", "/whoami"); !strings.Contains(got, "Trust level: sandboxed") || !strings.Contains(got, "Workspace: "+chatWS) {
		t.Errorf("the owner's /whoami in the shared chat: %q; want sandboxed", got)
	}
	// Everyone's messages are in the one conversation.
	if got := st.send(t, "team", "mia", "group-1", "recap"); !strings.Contains(got, "user:olivia-0") || !strings.Contains(got, "user:gus-1") {
		t.Errorf("shared history %q lacks the other members' messages", got)
	}
	if len(st.ctrd.started) != 1 || len(st.dirt.started) != 0 {
		t.Fatalf("starts: containerd %d direct %d; want one containerd sandbox for the chat", len(st.ctrd.started), len(st.dirt.started))
	}
	spec := st.ctrd.started[0]
	if !strings.HasSuffix(spec.Workspace, "/"+chatWS) || spec.Owner != ChatPrincipal("team", "group-1") {
		t.Errorf("sandbox workspace %s owner %s; want the chat's", spec.Workspace, spec.Owner)
	}
	if spec.Profile.Runtime != "containerd" || spec.Profile.ReadOnly || !spec.Profile.Network {
		t.Errorf("chat profile %+v; want containerd, writable, network (member role on a network connector)", spec.Profile)
	}
	// The owner's DM on the same connector is their own, direct, session.
	if got := st.send(t, "team", "olivia", "", "private"); !strings.Contains(got, "/owner/direct/users/local%3Aolivia/") || strings.Contains(got, "mia-0") {
		t.Errorf("owner's DM %q; want her own direct session without the chat's history", got)
	}
	// Another chat: its own session and workspace.
	if got := st.send(t, "team", "mia", "group-2", "other"); !strings.Contains(got, ChatWorkspace("team", "group-2")) || strings.Contains(got, "olivia-0") {
		t.Errorf("second chat %q; want its own workspace and history", got)
	}
	// Records: the chat's session decision was made for the chat, its start
	// record names the sender whose message started it.
	var start bool
	for _, r := range st.audit.all() {
		if r.Kind == "session-start" && r.Workspace == chatWS {
			start = r.User == "local:olivia" && r.TrustLevel == "sandboxed"
		}
	}
	if !start {
		t.Errorf("no session-start record for the chat by its first sender: %+v", st.audit.all())
	}
}

// TestSharedChatReadOnlyConnector: on a read-only connector the chat's
// sandbox mounts its workspace read-only, whoever speaks.
func TestSharedChatReadOnlyConnector(t *testing.T) {
	st := newStack(t, sharedData(true))
	for _, u := range []string{"olivia", "mia"} {
		if got := st.send(t, "team", u, "group-1", "hi "+u); !strings.Contains(got, "ro=true") {
			t.Errorf("%s on a read-only connector: %q", u, got)
		}
	}
	if len(st.ctrd.started) != 1 || !st.ctrd.started[0].Profile.ReadOnly {
		t.Fatalf("starts %+v; want one read-only chat sandbox", st.ctrd.started)
	}
}

// TestSharedChatTakesOverAMemberOwnedSession: a chat session made before
// chats had their own principal (owned by its first sender) does not lock
// the other members out.
func TestSharedChatTakesOverAMemberOwnedSession(t *testing.T) {
	st := newStack(t, sharedData(false))
	key := "chat\x00team\x00group-1"
	ctx := t.Context()
	if _, _, err := st.m.opts.Store.Acquire(ctx, key, Session{Owner: "local:olivia", Workspace: "users/local%3Aolivia"}, 0, st.m.opts.Now()); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"mia", "olivia"} {
		if got := st.send(t, "team", u, "group-1", "hi "+u); !strings.Contains(got, "text=hi "+u) {
			t.Fatalf("%s in a chat whose old session was olivia's: %q", u, got)
		}
	}
}

// TestSharedChatWorkspaceMustBeTheChats: a policy that hands a shared chat
// a member's workspace runs nothing.
func TestSharedChatWorkspaceMustBeTheChats(t *testing.T) {
	st := newStack(t, sharedData(false))
	req := connectors.TurnRequest{
		SessionKey: "chat\x00team\x00group-1", TurnID: "t1", Identity: "local:mia",
		Message: &connectors.Message{Connector: "team", Type: "local", UserID: "mia", ChatID: "group-1", ChatKind: connectors.KindGroup, Text: "hi"},
		Result:  engine.MessageResult{Role: "member", TrustLevel: "sandboxed", Workspace: "users/local%3Amia", SessionScope: "chat"},
	}
	if _, err := st.m.Turn(t.Context(), req); err == nil || !strings.Contains(err.Error(), "its own workspace") {
		t.Fatalf("Turn: %v; want a refusal naming the chat's workspace", err)
	}
	if len(st.ctrd.started) != 0 {
		t.Fatal("a sandbox started on a member's workspace for a shared chat")
	}
}
