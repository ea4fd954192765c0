package telegram_test

import (
	"context"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/internal/testkit"
	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/connectors/telegram"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/internal/backoff"
	fake "github.com/parachute-gateway/parachute/test/fakes/telegram"
)

// records keeps what the audit log would: message decisions' reasons and
// pairing events.
type records struct {
	mu      sync.Mutex
	reasons [][]string
	auth    []pairing.Event
}

func (r *records) Record(_ context.Context, _ engine.Input, d *engine.Decision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, d.Reasons)
	return nil
}

func (r *records) RecordAuth(_ context.Context, e pairing.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.auth = append(r.auth, e)
	return nil
}

func (r *records) denied(reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.reasons, func(rs []string) bool { return slices.Contains(rs, reason) })
}

func (r *records) event(kind string, ok bool, reason string) *pairing.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.auth {
		if e.Kind == kind && e.OK == ok && e.Reason == reason {
			return &e
		}
	}
	return nil
}

// handled tells when each message has been handled: replies and direct
// messages are sent before Handle returns.
type handled struct {
	h    connectors.Handler
	done chan struct{}
}

func (h handled) Handle(ctx context.Context, m *connectors.Message, r connectors.Replier) error {
	defer func() { h.done <- struct{}{} }()
	return h.h.Handle(ctx, m, r)
}

// The chat-approval exchange on the Telegram fake, with Telegram's rule
// that a bot can write only to someone who started it.
func TestApprovalsFromChatOnTelegram(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := fake.New(token)
	t.Cleanup(f.Close)
	f.RequireStart(true)
	lg := &testkit.Log{}
	c, err := telegram.New(telegram.Options{Name: "tg", Token: token, Endpoint: f.URL + "/", PollTimeout: time.Second,
		Logger: lg.Logger(), Backoff: backoff.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &records{}
	e, err := engine.New(ctx, engine.Options{PolicyDir: testkit.PolicyDir(), Recorder: rec,
		Data: testkit.Data("tg", "telegram", []string{strconv.Itoa(owner)}, []string{strconv.Itoa(alice)})})
	if err != nil {
		t.Fatal(err)
	}
	store, err := pairing.Open(ctx, pairing.Options{Path: filepath.Join(t.TempDir(), "parachute.db"), Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	turns := &testkit.Turns{}
	router, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: turns, Pairing: store, Logger: lg.Logger(),
		Approvals: &connectors.Approvals{
			Owners:      func(string) []string { return []string{strconv.Itoa(owner)} },
			RoleDefined: func(role string) bool { return role == "owner" || role == "member" || role == "guest" },
		}})
	if err != nil {
		t.Fatal(err)
	}
	h := handled{h: router, done: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	// send pushes a private message from user and returns what the bot
	// sent, to anyone, while handling it.
	send := func(from int64, name, text string) []fake.Sent {
		t.Helper()
		before := len(f.Sent())
		f.Push(fake.Message{FromID: from, FirstName: name, Text: text})
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%q from %d not handled; log:\n%.4000s", text, from, lg.String())
		}
		return f.Sent()[before:]
	}
	to := func(sent []fake.Sent, user int64) string {
		var out []string
		for _, s := range sent {
			if s.ChatID == strconv.FormatInt(user, 10) {
				out = append(out, s.Text)
			}
		}
		return strings.Join(out, "\n")
	}
	want := func(step, got, sub string) {
		t.Helper()
		if !strings.Contains(got, sub) {
			t.Fatalf("%s: got %q, want it to contain %q", step, got, sub)
		}
	}
	pending := func(n int) {
		t.Helper()
		if l, _ := store.List(ctx); len(l) != n {
			t.Fatalf("%d pending requests, want %d", len(l), n)
		}
	}

	// The owner never started the bot: Telegram refuses the DM, the log
	// says what to do, the stranger gets the CLI route.
	out := send(stranger, "Stan", "/pair")
	want("unreachable owner", to(out, stranger), "Send it to the bot's owner, who approves it with: parachute pair approve")
	want("unreachable owner: log", lg.String(), "the owner sends the bot /start")
	want("unreachable owner: log", lg.String(), "can't initiate conversation")
	pending(1)

	// The owner starts the bot; the next stranger's request reaches them.
	send(owner, "Owner", "/start")
	const mallory = 6667
	out = send(mallory, "Mallory\u202e\ngnp.exe", "/pair")
	want("owner notified", to(out, mallory), "The bot's owner was sent your request")
	dm := to(out, owner)
	want("owner notified", dm, "From: telegram:6667")
	want("owner notified: untrusted name", dm, `Name given: "Mallory gnp.exe"`)
	m := regexp.MustCompile(`Code: ([A-Z0-9]{8})`).FindStringSubmatch(dm)
	if m == nil {
		t.Fatalf("no code in the owner's DM: %q", dm)
	}
	code := m[1]
	want("owner notified: how to answer", dm, "/approve "+code+" [role]")

	// An allowed member is not an owner: refused and recorded.
	out = send(alice, "Alice", "/approve "+code+" member")
	want("non-owner", to(out, alice), connectors.NotOwnerReply)
	if !rec.denied(connectors.ReasonApprovalNotOwner) {
		t.Fatal("the non-owner's /approve is not recorded as a denial")
	}
	pending(2)

	// Bogus code, undefined role: refused, nothing granted.
	out = send(owner, "Owner", "/approve BOGUS234 member")
	want("bogus code", to(out, owner), "No pending pairing request")
	if e := rec.event(pairing.KindPairApprove, false, pairing.ReasonNoSuchCode); e == nil || e.Actor != "telegram:1001" {
		t.Fatalf("the refused approval is not recorded with the owner as actor: %+v", e)
	}
	out = send(owner, "Owner", "/approve "+code+" admin")
	want("undefined role", to(out, owner), `Role "admin" is not defined`)
	pending(2)

	// The owner approves (as Telegram sends it, with the bot's name);
	// mallory is told and admitted on the next message.
	out = send(owner, "Owner", "/approve@"+fake.BotUsername+" "+code+" member")
	want("approve", to(out, owner), "Approved telegram:6667")
	want("approve: requester told", to(out, mallory), "approved (role member)")
	if e := rec.event(pairing.KindPairApprove, true, ""); e == nil || e.Actor != "telegram:1001" || e.Identity != "telegram:6667" || e.Role != "member" {
		t.Fatalf("grant record: %+v", e)
	}
	out = send(mallory, "Mallory", "hello")
	want("admitted", to(out, mallory), "echo: hello")

	// The owner denies the first stranger, who is told and stays out.
	l, _ := store.List(ctx)
	if len(l) != 1 || l[0].Identity != "telegram:6666" {
		t.Fatalf("pending: %+v", l)
	}
	out = send(owner, "Owner", "/deny "+l[0].Code)
	want("deny", to(out, owner), "Denied the pairing request of telegram:6666")
	want("deny: requester told", to(out, stranger), "declined")
	if e := rec.event(pairing.KindPairDeny, true, ""); e == nil || e.Actor != "telegram:1001" {
		t.Fatalf("deny record: %+v", e)
	}
	out = send(stranger, "Stan", "hello")
	want("denied stays out", to(out, stranger), "not on this bot's list")
	if got := turns.Texts(); len(got) != 1 || got[0] != "hello" {
		t.Fatalf("turns: %q, want mallory's hello only", got)
	}
}
