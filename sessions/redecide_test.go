package sessions

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/engine"
)

// recordingAudit keeps every session record.
type recordingAudit struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (a *recordingAudit) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
	return r, nil
}

func (a *recordingAudit) all() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.recs...)
}

// chatReplies is a connectors.Replier keeping what the bot said.
type chatReplies struct {
	mu   sync.Mutex
	said []string
}

func (c *chatReplies) SendText(_ context.Context, _, text string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.said = append(c.said, text)
	return nil
}
func (c *chatReplies) Typing(context.Context, string) error { return nil }
func (c *chatReplies) last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.said) == 0 {
		return ""
	}
	return c.said[len(c.said)-1]
}

// stack is the router, the real engine and a manager over fake containerd
// and direct runtimes: messages go the way the gateway sends them.
type stack struct {
	eng        *engine.Engine
	m          *Manager
	r          *connectors.Router
	ctrd, dirt *fakeRuntime
	audit      *recordingAudit
	chat       *chatReplies
	seq        int
}

func newStack(t *testing.T, data map[string]any) *stack {
	t.Helper()
	eng, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: data})
	if err != nil {
		t.Fatal(err)
	}
	store, _ := openStore(t)
	st := &stack{eng: eng, ctrd: &fakeRuntime{}, dirt: &fakeRuntime{}, audit: &recordingAudit{}, chat: &chatReplies{}}
	now := time.Unix(1_700_000_000, 0)
	dir := t.TempDir()
	st.m, err = NewManager(Options{
		Store: store, Decider: eng, Audit: st.audit,
		Runtimes: map[string]Sandboxes{"containerd": st.ctrd, "direct": st.dirt},
		Vault:    filepath.Join(dir, "vault"), SocketRoot: filepath.Join(dir, "s"),
		Socket: func(l *Live) (http.Handler, error) {
			return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				f := l.Facts()
				w.Write([]byte(f.Identity + "/" + f.Role + "/" + f.TrustLevel + "/" + f.Workspace + "/ro=" + boolStr(f.ReadOnly)))
			}), nil
		},
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.m.Close(context.Background()) })
	st.r, err = connectors.NewRouter(connectors.RouterOptions{Decider: eng, Turns: st.m})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// send handles one message from user in chat (a DM when chat is "") and
// returns the bot's reply.
func (st *stack) send(t *testing.T, connector, user, chat, text string) string {
	t.Helper()
	st.seq++
	m := &connectors.Message{Connector: connector, Type: "local", UserID: user, DisplayName: user,
		ChatID: "dm-" + user, ChatKind: connectors.KindDM, Text: text, MessageID: "m" + itoa(st.seq)}
	if chat != "" {
		m.ChatID, m.ChatKind, m.Mentioned = chat, connectors.KindGroup, true
	}
	if err := st.r.Handle(context.Background(), m, st.chat); err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	return st.chat.last()
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}

// consistent fails the test if a live session runs under one decision and
// its turns are decided as another: trust direct in containerd, or the
// reverse.
func (st *stack) consistent(t *testing.T) {
	t.Helper()
	st.m.mu.Lock()
	defer st.m.mu.Unlock()
	for id, l := range st.m.live {
		f := l.Facts()
		if (f.TrustLevel == "direct") != (l.Profile.Runtime == "direct") || l.start.TrustLevel != f.TrustLevel && !strings.HasPrefix(l.Session.Key, chatKeyPrefix) {
			t.Errorf("session %s: turns decided as trust %s, started as %s, running in %s", id, f.TrustLevel, l.start.TrustLevel, l.Profile.Runtime)
		}
	}
}

func reloadData(trust string) map[string]any {
	return map[string]any{"connectors": map[string]any{
		"dev": map[string]any{"type": "local", "owners": []any{"owner"}, "allowed_users": []any{"alice"},
			"allow_direct": true, "default_trust_level": trust},
	}}
}

// TestReloadRedecidesLiveSessions: a reload that changes trust on a live
// session is listed by Redecide, and the next turn ends the session and
// starts a new one under the new decision: never a containerd sandbox
// whose turns are decided (and recorded) as direct, and /new works after.
func TestReloadRedecidesLiveSessions(t *testing.T) {
	ctx := context.Background()
	st := newStack(t, reloadData("sandboxed"))
	if got := st.send(t, "dev", "owner", "", "ONE"); !strings.Contains(got, "/sandboxed/") {
		t.Fatalf("first turn %q; want a sandboxed session", got)
	}
	if got := st.send(t, "dev", "alice", "", "HELLO"); !strings.Contains(got, "text=HELLO") {
		t.Fatalf("alice's turn %q", got)
	}
	if len(st.ctrd.started) != 2 || len(st.dirt.started) != 0 {
		t.Fatalf("starts: containerd %d direct %d; want 2 and 0", len(st.ctrd.started), len(st.dirt.started))
	}
	oldID := st.ctrd.started[0].SessionID

	if err := st.eng.SetData(ctx, reloadData("direct")); err != nil {
		t.Fatal(err)
	}
	redec := st.m.Redecide(ctx)
	if len(redec) != 1 || redec[0].SessionID != oldID {
		t.Fatalf("Redecide %+v; want the owner's session only (alice cannot be direct)", redec)
	}
	joined := strings.Join(redec[0].Changes, "; ")
	for _, want := range []string{"trust_level sandboxed→direct", "runtime containerd→direct"} {
		if !strings.Contains(joined, want) {
			t.Errorf("changes %q lack %q", joined, want)
		}
	}
	st.consistent(t)

	got := st.send(t, "dev", "owner", "", "TWO")
	if !strings.Contains(got, "restarted") || !strings.Contains(got, "trust_level sandboxed→direct") || !strings.Contains(got, "/direct/") {
		t.Fatalf("turn after the reload %q; want a restart note and a direct session", got)
	}
	if strings.Contains(got, "ONE") {
		t.Errorf("the restarted session carries the old one's history: %q", got)
	}
	if len(st.dirt.started) != 1 || st.dirt.started[0].SessionID == oldID {
		t.Fatalf("direct starts %+v; want one new session", st.dirt.started)
	}
	if st.ctrd.live[oldID] == nil || !st.ctrd.live[oldID].stopped {
		t.Fatal("the containerd sandbox of the old decision still runs")
	}
	st.consistent(t)
	if got := st.send(t, "dev", "alice", "", "AGAIN"); strings.Contains(got, "restarted") {
		t.Errorf("alice's unchanged session was restarted: %q", got)
	}
	if got := st.send(t, "dev", "owner", "", "/new"); !strings.Contains(got, "fresh session") {
		t.Fatalf("/new after the reload: %q", got)
	}
	if got := st.send(t, "dev", "owner", "", "THREE"); !strings.Contains(got, "/direct/") {
		t.Fatalf("turn after /new %q", got)
	}
	st.consistent(t)

	// The records: the old session stops as sandboxed with the changes
	// named; no record has the old session as direct.
	var stop bool
	for _, r := range st.audit.all() {
		if r.SessionID == oldID && r.TrustLevel == "direct" {
			t.Errorf("record %+v: the containerd session recorded as direct", r)
		}
		if r.SessionID == oldID && r.Kind == "session-stop" && r.Detail["why"] == "policy-changed" &&
			strings.Contains(r.Detail["changed"], "runtime containerd→direct") {
			stop = true
		}
	}
	if !stop {
		t.Errorf("no session-stop record naming the change: %+v", st.audit.all())
	}
	if n := len(st.m.Redecide(ctx)); n != 0 {
		t.Errorf("Redecide after the restarts lists %d sessions; want 0", n)
	}
}

// TestReloadRevokedUser: a reload that removes a user lists the session
// as refused; the next message is refused and runs nothing.
func TestReloadRevokedUser(t *testing.T) {
	ctx := context.Background()
	st := newStack(t, reloadData("sandboxed"))
	st.send(t, "dev", "alice", "", "HI")
	data := reloadData("sandboxed")
	data["connectors"].(map[string]any)["dev"].(map[string]any)["allowed_users"] = []any{}
	if err := st.eng.SetData(ctx, data); err != nil {
		t.Fatal(err)
	}
	redec := st.m.Redecide(ctx)
	if len(redec) != 1 || len(redec[0].Refused) == 0 || redec[0].Refused[0] != "message" {
		t.Fatalf("Redecide %+v; want alice's session refused", redec)
	}
	before := len(st.ctrd.started)
	if got := st.send(t, "dev", "alice", "", "STILL HERE"); strings.Contains(got, "text=STILL") {
		t.Fatalf("a revoked user's message ran: %q", got)
	}
	if len(st.ctrd.started) != before {
		t.Fatal("a sandbox started for a revoked user")
	}
}

func TestChangesNameEveryProfileField(t *testing.T) {
	for in, want := range map[string]string{"ReadOnly": "read_only", "MemoryMB": "memory_mb", "CPUs": "cpus", "PIDs": "pids",
		"TmpfsMB": "tmpfs_mb", "TurnTimeout": "turn_timeout", "Runtime": "runtime", "RuntimeClass": "runtime_class", "DiskMB": "disk_mb"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%s) = %s, want %s", in, got, want)
		}
	}
	a := engine.SessionProfile{Runtime: "containerd", MemoryMB: 512}
	b := a
	b.MemoryMB = 1024
	if got := changes(engine.SessionFacts{}, engine.SessionFacts{}, a, b); len(got) != 1 || got[0] != "memory_mb 512→1024" {
		t.Errorf("changes %v", got)
	}
}
