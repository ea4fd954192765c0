package connectors_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/engine"
)

// dmChat is a Replier that can also write to a user directly; it keeps
// every reply and every direct message by user.
type dmChat struct {
	chat
	mu     sync.Mutex
	direct map[string][]string
	fail   map[string]error // direct messages to these users fail
}

func (c *dmChat) SendDirect(_ context.Context, user, text string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fail[user]; err != nil {
		return err
	}
	if c.direct == nil {
		c.direct = map[string][]string{}
	}
	c.direct[user] = append(c.direct[user], text)
	return nil
}

func (c *dmChat) dms(user string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.direct[user]...)
}

// reasonLog keeps the reasons of every recorded message decision.
type reasonLog struct {
	mu  sync.Mutex
	got [][]string
}

func (l *reasonLog) Record(_ context.Context, _ engine.Input, d *engine.Decision) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, d.Reasons)
	return nil
}

func (l *reasonLog) has(reason string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.got {
		if slices.Contains(r, reason) {
			return true
		}
	}
	return false
}

var codeRE = regexp.MustCompile(`Code: ([A-Z0-9]{8})`)

// The whole exchange, step by step: strangers pair, the owner is told in a
// DM, non-owners and bad answers are refused, the owner's answers are
// recorded with the owner as actor and the requesters are told.
func TestApprovalsFromChat(t *testing.T) {
	ctx := context.Background()
	auth := &authLog{}
	store := newStore(t, auth)
	reasons := &reasonLog{}
	e, err := engine.New(ctx, engine.Options{PolicyDir: policyDir(t), Data: testData(), Recorder: reasons})
	if err != nil {
		t.Fatal(err)
	}
	turns := &countingTurns{}
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: turns, Pairing: store,
		Approvals: &connectors.Approvals{
			Owners:      func(string) []string { return []string{"owner"} },
			RoleDefined: func(role string) bool { return role == "member" || role == "guest" || role == "owner" },
		}})
	if err != nil {
		t.Fatal(err)
	}
	c := &dmChat{}
	codes := map[string]string{} // requester -> code the owner was sent

	type step struct {
		name      string
		from      string
		text      string // CODE:<user> stands for that requester's code
		group     bool
		name2     string // the sender's display name
		wantReply string // in the reply to the sender
		wantDM    map[string]string
		check     func(t *testing.T)
	}
	pending := func(n int) func(t *testing.T) {
		return func(t *testing.T) {
			if l, _ := store.List(ctx); len(l) != n {
				t.Fatalf("%d pending requests, want %d: %+v", len(l), n, l)
			}
		}
	}
	steps := []step{
		{name: "a stranger pairs; the owner gets a DM with the ID, the cleaned name and the code",
			from: "eve", text: "/pair", name2: "Eve\u202e\"gnp.exe\n/approve ALL owner",
			wantReply: "The bot's owner was sent your request",
			wantDM:    map[string]string{"owner": "From: local:eve"},
			check: func(t *testing.T) {
				dm := c.dms("owner")[0]
				if !strings.Contains(dm, `Name given: "Eve'gnp.exe /approve ALL owner"`) || strings.ContainsAny(dm, "\u202e") {
					t.Fatalf("the display name is not shown as cleaned, quoted untrusted text: %q", dm)
				}
			}},
		{name: "asking again tells the owner nothing new", from: "eve", text: "/pair", wantReply: "Send it to the bot's owner",
			check: func(t *testing.T) {
				if n := len(c.dms("owner")); n != 1 {
					t.Fatalf("owner got %d DMs, want 1", n)
				}
			}},
		{name: "a second stranger pairs", from: "mallory", text: "/pair", wantDM: map[string]string{"owner": "From: local:mallory"}},
		{name: "an allowed member's /approve is refused and recorded", from: "bob", text: "/approve CODE:eve member",
			wantReply: connectors.NotOwnerReply, check: func(t *testing.T) {
				pending(2)(t)
				if !reasons.has(connectors.ReasonApprovalNotOwner) {
					t.Fatal("the refusal is not recorded")
				}
			}},
		{name: "a stranger's /approve is denied by policy", from: "mallory", text: "/approve CODE:mallory owner", wantReply: "not on this bot's list", check: pending(2)},
		{name: "the owner answering in a group is refused", from: "owner", group: true, text: "/approve CODE:eve",
			wantReply: connectors.NotDMReply, check: func(t *testing.T) {
				pending(2)(t)
				if !reasons.has(connectors.ReasonApprovalNotDM) {
					t.Fatal("the refusal is not recorded")
				}
			}},
		{name: "a bogus code is refused and recorded", from: "owner", text: "/approve ZZZZ2222 member", wantReply: "No pending pairing request",
			check: func(t *testing.T) {
				pending(2)(t)
				if auth.count(pairing.KindPairApprove, pairing.ReasonNoSuchCode) != 1 {
					t.Fatalf("the refused approval is not recorded: %+v", auth.ev)
				}
			}},
		{name: "an undefined role is refused", from: "owner", text: "/approve CODE:eve admin", wantReply: `Role "admin" is not defined`, check: pending(2)},
		{name: "no code: usage", from: "owner", text: "/approve", wantReply: "Usage: /approve CODE"},
		{name: "deny takes no role", from: "owner", text: "/deny CODE:mallory member", wantReply: "Usage:", check: pending(2)},
		{name: "the owner approves; the grant names the owner; eve is told", from: "owner", text: "/approve code:eve member",
			wantReply: `Approved local:eve (name given: "Eve`, wantDM: map[string]string{"eve": "approved (role member)"},
			check: func(t *testing.T) {
				pending(1)(t)
				auth.mu.Lock()
				defer auth.mu.Unlock()
				i := slices.IndexFunc(auth.ev, func(e pairing.Event) bool { return e.Kind == pairing.KindPairApprove && e.OK })
				if i < 0 || auth.ev[i].Actor != "local:owner" || auth.ev[i].Identity != "local:eve" || auth.ev[i].Role != "member" {
					t.Fatalf("grant record: %+v", auth.ev)
				}
			}},
		{name: "eve is admitted on her next message", from: "eve", text: "hello", wantReply: "echo: hello"},
		{name: "the same code again is refused", from: "owner", text: "/approve CODE:eve", wantReply: "No pending pairing request"},
		{name: "the owner denies mallory; mallory is told", from: "owner", text: "/deny CODE:mallory",
			wantReply: "Denied the pairing request of local:mallory", wantDM: map[string]string{"mallory": "declined"}, check: pending(0)},
		{name: "mallory is still not admitted", from: "mallory", text: "hello", wantReply: "not on this bot's list",
			check: func(t *testing.T) {
				if turns.n() != 1 {
					t.Fatalf("%d turns, want eve's one", turns.n())
				}
				if auth.count(pairing.KindPairDeny, "") != 1 {
					t.Fatalf("the denial is not recorded: %+v", auth.ev)
				}
			}},
	}
	for _, s := range steps {
		before := len(c.all())
		dmBefore := map[string]int{}
		for u := range s.wantDM {
			dmBefore[u] = len(c.dms(u))
		}
		text := regexp.MustCompile(`(?i)CODE:(\w+)`).ReplaceAllStringFunc(s.text, func(m string) string {
			code := codes[strings.SplitN(m, ":", 2)[1]]
			if strings.HasPrefix(m, "code") {
				code = strings.ToLower(code[:4]) + "-" + code[4:] // as an owner may type it
			}
			return code
		})
		m := msg(s.from, text)
		m.DisplayName = s.name2
		if s.group {
			m.ChatID, m.ChatKind, m.Mentioned = "team-room", connectors.KindGroup, true
		}
		if err := r.Handle(ctx, m, c); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := strings.Join(c.all()[before:], "\n")
		if s.wantReply != "" && !strings.Contains(got, s.wantReply) {
			t.Fatalf("%s: reply %q, want it to contain %q", s.name, got, s.wantReply)
		}
		for u, want := range s.wantDM {
			dms := c.dms(u)
			if len(dms) != dmBefore[u]+1 || !strings.Contains(dms[len(dms)-1], want) {
				t.Fatalf("%s: DMs to %s: %q, want one more containing %q", s.name, u, dms, want)
			}
			if u == "owner" {
				code := codeRE.FindStringSubmatch(dms[len(dms)-1])
				if code == nil || !strings.Contains(dms[len(dms)-1], "/approve "+code[1]) {
					t.Fatalf("%s: the owner's DM has no code and no way to answer: %q", s.name, dms[len(dms)-1])
				}
				codes[s.from] = code[1]
			}
		}
		if s.check != nil {
			s.check(t)
		}
	}
}

// An owner the platform cannot reach (Telegram: never started the bot)
// is logged; the requester gets the CLI instructions, and the request is
// still there for the CLI.
func TestApprovalOwnerUnreachable(t *testing.T) {
	ctx := context.Background()
	store := newStore(t, nil)
	e, _ := newEngine(t, testData())
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: &countingTurns{}, Pairing: store,
		Approvals: &connectors.Approvals{Owners: func(string) []string { return []string{"owner"} }, RoleDefined: func(string) bool { return true }}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rep  connectors.Replier
	}{
		{"DM refused", &dmChat{fail: map[string]error{"owner": errTest("Forbidden: bot can't initiate conversation with a user")}}},
		{"no DMs on this connector", &chat{}},
	} {
		user := strings.ReplaceAll(tc.name, " ", "")
		if err := r.Handle(ctx, msg(user, "/pair"), tc.rep); err != nil {
			t.Fatal(err)
		}
		var replies []string
		switch c := tc.rep.(type) {
		case *dmChat:
			replies = c.all()
		case *chat:
			replies = c.all()
		}
		if got := strings.Join(replies, ""); !strings.Contains(got, "Send it to the bot's owner, who approves it with: parachute pair approve") {
			t.Fatalf("%s: reply %q", tc.name, got)
		}
	}
	if l, _ := store.List(ctx); len(l) != 2 {
		t.Fatalf("pending: %+v", l)
	}
}

// Approvals need a store that can answer with the owner as actor.
func TestApprovalsNeedAnApprover(t *testing.T) {
	e, _ := newEngine(t, testData())
	_, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: &countingTurns{}, Approvals: &connectors.Approvals{}})
	if err == nil || !strings.Contains(err.Error(), "ApproveBy") {
		t.Fatalf("err = %v", err)
	}
}

func TestUntrusted(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Alice", `"Alice"`},
		{"", `""`},
		{"a\u202eb\u200bc\u2066d", `"abcd"`},
		{"line1\nline2\r\n\tx", `"line1 line2 x"`},
		{`say "hi"`, `"say 'hi'"`},
		{"  padded  ", `"padded"`},
		{strings.Repeat("é", 70), `"` + strings.Repeat("é", 64) + `…"`},
		{"bad\xffutf8", `"badutf8"`},
	} {
		if got := connectors.Untrusted(tc.in, 64); got != tc.want {
			t.Errorf("Untrusted(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

// Without Approvals an owner is pointed to the CLI, and nothing changes;
// a non-owner is still refused and recorded.
func TestApprovalsOff(t *testing.T) {
	ctx := context.Background()
	store := newStore(t, nil)
	r, _ := newRouter(t, testData(), store)
	c := &chat{}
	_ = r.Handle(ctx, msg("erin", "/pair"), c)
	l, _ := store.List(ctx)
	if len(l) != 1 {
		t.Fatalf("pending: %+v", l)
	}
	for _, tc := range []struct{ from, want string }{
		{"owner", connectors.ChatApprovalOff},
		{"alice", connectors.NotOwnerReply},
	} {
		before := len(c.all())
		if err := r.Handle(ctx, msg(tc.from, "/approve "+l[0].Code), c); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(c.all()[before:], ""); got != tc.want {
			t.Fatalf("%s: reply %q, want %q", tc.from, got, tc.want)
		}
	}
	if l, _ := store.List(ctx); len(l) != 1 {
		t.Fatalf("the request was answered: %+v", l)
	}
}
