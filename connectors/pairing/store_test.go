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

// recorder keeps events; while fail is set it refuses them, as a full
// audit disk does.
type recorder struct {
	mu   sync.Mutex
	fail bool
	ev   []pairing.Event
}

func (r *recorder) RecordAuth(_ context.Context, e pairing.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("audit log unavailable: no space left on device")
	}
	r.ev = append(r.ev, e)
	return nil
}

func (r *recorder) setFail(v bool) { r.mu.Lock(); r.fail = v; r.mu.Unlock() }

func (r *recorder) events() []pairing.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pairing.Event(nil), r.ev...)
}

func (r *recorder) find(kind string, ok bool) *pairing.Event {
	for _, e := range r.events() {
		if e.Kind == kind && e.OK == ok {
			return &e
		}
	}
	return nil
}

// open is a gateway-side store: it records on a recorder.
func open(t *testing.T, path string, c *clock) *pairing.Store {
	t.Helper()
	s, _ := openRec(t, path, c)
	return s
}

func openRec(t *testing.T, path string, c *clock) (*pairing.Store, *recorder) {
	t.Helper()
	rec := &recorder{}
	s, err := pairing.Open(context.Background(), pairing.Options{Path: path, Now: c.now, AttemptsPerHour: 1000, AttemptBurst: 1000, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

// openCLI is the CLI's store: no recorder, events queued for the gateway.
func openCLI(t *testing.T, path string, c *clock) *pairing.Store {
	t.Helper()
	s, err := pairing.Open(context.Background(), pairing.Options{Path: path, Now: c.now, Actor: "operator uid:7"})
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
	gw, cli := open(t, path, c), openCLI(t, path, c)
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

// TestNoGrantWithoutRecord: with the audit log refusing records, no invite
// is redeemed, no pairing code issued, no approval or invite made; the
// caller gets ErrNotRecorded; once records work again, everything does.
func TestNoGrantWithoutRecord(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, rec := openRec(t, filepath.Join(t.TempDir(), "s.db"), c)
	tok, err := s.CreateInvite(ctx, pairing.Invite{Role: "owner"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pend, err := s.RequestCode(ctx, "tg", "telegram:2", "")
	if err != nil {
		t.Fatal(err)
	}
	rec.setFail(true)
	if _, err := s.RedeemInvite(ctx, "tg", "telegram:1", tok); !errors.Is(err, pairing.ErrNotRecorded) {
		t.Fatalf("redeem with the audit log down: %v, want ErrNotRecorded", err)
	}
	if b, _ := s.Binding(ctx, "tg", "telegram:1"); b != nil {
		t.Fatalf("bound without a record: %+v", b)
	}
	if _, err := s.RequestCode(ctx, "tg", "telegram:3", ""); !errors.Is(err, pairing.ErrNotRecorded) {
		t.Fatalf("pairing code with the audit log down: %v", err)
	}
	if _, err := s.Approve(ctx, pend.Code, "member", ""); !errors.Is(err, pairing.ErrNotRecorded) {
		t.Fatalf("approve with the audit log down: %v", err)
	}
	if b, _ := s.Binding(ctx, "tg", "telegram:2"); b != nil {
		t.Fatalf("approved without a record: %+v", b)
	}
	if _, err := s.CreateInvite(ctx, pairing.Invite{Role: "member"}, time.Hour); !errors.Is(err, pairing.ErrNotRecorded) {
		t.Fatalf("invite with the audit log down: %v", err)
	}
	if l, _ := s.List(ctx); len(l) != 1 || l[0].Code != pend.Code {
		t.Fatalf("pending after refused grants: %+v (want only the first, still approvable)", l)
	}
	if inv, _ := s.Invites(ctx); len(inv) != 1 {
		t.Fatalf("invites after refused grants: %+v", inv)
	}

	rec.setFail(false)
	b, err := s.RedeemInvite(ctx, "tg", "telegram:1", tok)
	if err != nil || b.Role != "owner" {
		t.Fatalf("redeem once records work: %+v %v", b, err)
	}
	if e := rec.find(pairing.KindInviteRedeem, true); e == nil || e.Identity != "telegram:1" || e.Actor != "telegram:1" || e.Role != "owner" {
		t.Fatalf("redemption record %+v", e)
	}
	if _, err := s.Approve(ctx, pend.Code, "member", "team"); err != nil {
		t.Fatal(err)
	}
}

// TestCLIGrantsWaitForTheirRecord: the CLI never writes the audit log;
// its approval and invite are held in the store until the gateway has
// recorded them (with the operator as actor), while its denial and
// revocation take effect at once and are recorded after.
func TestCLIGrantsWaitForTheirRecord(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "s.db")
	gw, rec := openRec(t, path, c)
	cli := openCLI(t, path, c)
	if !cli.Queued() || gw.Queued() {
		t.Fatal("Queued: the CLI store queues, the gateway's records")
	}
	p1, _ := gw.RequestCode(ctx, "tg", "telegram:1", "")
	p2, _ := gw.RequestCode(ctx, "tg", "telegram:2", "")
	rec.setFail(true) // the audit disk is full
	if _, err := cli.Approve(ctx, p1.Code, "owner", ""); err != nil {
		t.Fatal(err)
	}
	tok, err := cli.CreateInvite(ctx, pairing.Invite{Role: "owner"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := gw.Binding(ctx, "tg", "telegram:1"); b != nil {
		t.Fatalf("approval in effect before it was recorded: %+v", b)
	}
	if _, err := gw.RedeemInvite(ctx, "tg", "telegram:9", tok); !errors.Is(err, pairing.ErrInvalidToken) {
		t.Fatalf("unrecorded invite redeemed: %v", err)
	}
	if _, err := cli.Deny(ctx, p2.Code); err != nil {
		t.Fatal(err)
	}
	if l, _ := gw.List(ctx); len(l) != 0 {
		t.Fatalf("denied request still pending: %+v", l)
	}

	rec.setFail(false)
	c.add(2 * time.Second) // a failed drain is retried at most once a second
	b, err := gw.Binding(ctx, "tg", "telegram:1")
	if err != nil || b == nil || b.Role != "owner" {
		t.Fatalf("approval once recorded: %+v %v", b, err)
	}
	e := rec.find(pairing.KindPairApprove, true)
	if e == nil || e.Actor != "operator uid:7" || e.Identity != "telegram:1" || e.Role != "owner" || e.Queued.IsZero() {
		t.Fatalf("approval record %+v", e)
	}
	if e := rec.find(pairing.KindPairDeny, true); e == nil || e.Actor != "operator uid:7" || e.Identity != "telegram:2" {
		t.Fatalf("denial record %+v", e)
	}
	if e := rec.find(pairing.KindInviteCreate, true); e == nil || e.Actor != "operator uid:7" || e.Role != "owner" {
		t.Fatalf("invite record %+v", e)
	}
	if _, err := gw.RedeemInvite(ctx, "tg", "telegram:9", tok); err != nil {
		t.Fatalf("recorded invite: %v", err)
	}

	// A revocation cuts access at once, even with the audit log down.
	rec.setFail(true)
	if err := cli.Revoke(ctx, "tg", "telegram:1"); err != nil {
		t.Fatal(err)
	}
	if b, _ := gw.Binding(ctx, "tg", "telegram:1"); b != nil {
		t.Fatalf("revoked binding still in effect: %+v", b)
	}
	rec.setFail(false)
	c.add(2 * time.Second)
	_, _ = gw.Binding(ctx, "tg", "telegram:1")
	if e := rec.find(pairing.KindRevoke, true); e == nil || e.Previous != "owner" || e.Actor != "operator uid:7" {
		t.Fatalf("revocation record %+v", e)
	}
	// Each queued event is recorded once.
	n := 0
	for _, e := range rec.events() {
		if e.Kind == pairing.KindPairApprove {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("approval recorded %d times", n)
	}
}

// TestAttemptLimitSurvivesRestart: invite guesses spend attempts kept in
// the file, so reopening the store (a restart) gives no fresh ones.
func TestAttemptLimitSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "s.db")
	openLimited := func() *pairing.Store {
		s, err := pairing.Open(ctx, pairing.Options{Path: path, Now: c.now, AttemptsPerHour: 1, AttemptBurst: 3, Recorder: &recorder{}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := openLimited()
	for i := range 3 {
		if _, err := s.RedeemInvite(ctx, "tg", "telegram:6", "pi_guess"+string(rune('a'+i))); !errors.Is(err, pairing.ErrInvalidToken) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	for _, restart := range []bool{false, true} {
		if restart {
			s = openLimited()
		}
		var rl *pairing.RateLimitError
		if _, err := s.RedeemInvite(ctx, "tg", "telegram:6", "pi_guess"); !errors.As(err, &rl) || rl.RetryAfter < time.Minute {
			t.Fatalf("restart=%v: guess past the burst: %v, want rate-limited for about an hour", restart, err)
		}
		if _, err := s.RequestCode(ctx, "tg", "telegram:6", ""); !errors.Is(err, pairing.ErrRateLimited) {
			t.Fatalf("restart=%v: pairing request past the burst: %v", restart, err)
		}
	}
	c.add(time.Hour)
	if _, err := s.RequestCode(ctx, "tg", "telegram:6", ""); err != nil {
		t.Fatalf("after an hour: %v", err)
	}
}
