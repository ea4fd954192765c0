package connectors_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/engine/ratelimit"
)

// trail keeps every message decision as the audit log would see it; while
// fail is set it refuses them, as a full audit disk does.
type trail struct {
	mu   sync.Mutex
	fail bool
	recs []trailRec
}

type trailRec struct {
	user    string
	reasons []string
	detail  map[string]string
}

func (tr *trail) Record(_ context.Context, in engine.Input, d *engine.Decision) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.fail {
		return errors.New("audit log unavailable: no space left on device")
	}
	m, _ := in.(engine.MessageInput)
	tr.recs = append(tr.recs, trailRec{user: m.Sender.ID, reasons: d.Reasons, detail: d.Detail})
	return nil
}

func (tr *trail) setFail(v bool) { tr.mu.Lock(); tr.fail = v; tr.mu.Unlock() }

func (tr *trail) len() int { tr.mu.Lock(); defer tr.mu.Unlock(); return len(tr.recs) }

// denials is how many denied messages the trail accounts for: one per
// record of its own, plus every detail.suppressed.
func (tr *trail) denials(t *testing.T) int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var n int64
	for _, r := range tr.recs {
		if !slices.Contains(r.reasons, connectors.ReasonDenialsSuppressed) {
			n++
		}
		if s := r.detail[connectors.DetailSuppressed]; s != "" {
			c, err := strconv.ParseInt(s, 10, 64)
			if err != nil || c <= 0 {
				t.Fatalf("detail.suppressed %q", s)
			}
			n += c
		}
	}
	return n
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func throttledRouter(t *testing.T, lim *ratelimit.Limiter, clk *testClock) (*connectors.Router, *trail) {
	t.Helper()
	tr := &trail{}
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(t), Data: testData(), Recorder: tr})
	if err != nil {
		t.Fatal(err)
	}
	if lim == nil {
		lim = ratelimit.New(ratelimit.Options{Now: clk.now})
	}
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: &countingTurns{},
		Denials: connectors.DenialBudget{Limiter: lim, Now: clk.now}})
	if err != nil {
		t.Fatal(err)
	}
	return r, tr
}

// A stranger's flood and a crowd of strangers cost a bounded number of
// replies and records, and the records account for every message.
func TestDenialFloodIsBounded(t *testing.T) {
	tests := []struct {
		name       string
		senders    int // each sends per messages
		per        int
		maxReplies int
		maxRecords int // before the window ends
	}{
		{name: "one stranger, 100 messages in a second", senders: 1, per: 100,
			maxReplies: connectors.DefaultDenialSenderBurst, maxRecords: connectors.DefaultDenialSenderBurst},
		{name: "100 strangers once each", senders: 100, per: 1,
			maxReplies: connectors.DefaultDenialGlobalBurst + 1, maxRecords: connectors.DefaultDenialGlobalBurst + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clk := &testClock{t: time.Unix(1_700_000_000, 0)}
			r, tr := throttledRouter(t, nil, clk)
			c := &chat{}
			total := tt.senders * tt.per
			for i := range total {
				m := msg(fmt.Sprintf("stranger%d", i%tt.senders), "let me in")
				if err := r.Handle(ctx, m, c); err != nil {
					t.Fatal(err)
				}
				clk.advance(time.Second / time.Duration(total))
			}
			if n := len(c.all()); n > tt.maxReplies {
				t.Errorf("%d replies to %d denied messages, want at most %d", n, total, tt.maxReplies)
			}
			if n := tr.len(); n > tt.maxRecords {
				t.Errorf("%d records for %d denied messages, want at most %d", n, total, tt.maxRecords)
			}
			if got := tr.denials(t) + r.PendingDenials(); got != int64(total) {
				t.Fatalf("records and pending counts account for %d messages, want %d", got, total)
			}
			before := tr.len()
			// A window after the first suppressed denial the senders'
			// summaries are written while the global budget lasts; the
			// rest join one summary per connector, due a window later.
			for range 2 {
				clk.advance(connectors.DefaultDenialWindow)
				r.FlushDenials(ctx, false)
			}
			if got := tr.denials(t); got != int64(total) || r.PendingDenials() != 0 {
				t.Fatalf("after the window the records account for %d of %d messages (%d pending)", got, total, r.PendingDenials())
			}
			if n := tr.len() - before; n > connectors.DefaultDenialGlobalBurst+1 {
				t.Fatalf("%d summary records, want at most %d", n, connectors.DefaultDenialGlobalBurst+1)
			}
			if n := len(c.all()); n > tt.maxReplies {
				t.Fatalf("summaries sent replies: %d", n)
			}
		})
	}
}

// Suppressed denials ride on the sender's next recorded denial; a summary
// that cannot be recorded is kept, not lost; a shutdown flushes all.
func TestSuppressedDenialsAreRecordedLater(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	r, tr := throttledRouter(t, nil, clk)
	c := &chat{}
	for range 10 {
		r.Handle(ctx, msg("mallory", "hi"), c)
	}
	clk.advance(time.Duration(float64(time.Second) / connectors.DefaultDenialSenderRate)) // one token back
	r.Handle(ctx, msg("mallory", "hi again"), c)
	last := tr.recs[len(tr.recs)-1]
	if last.detail[connectors.DetailSuppressed] != "7" {
		t.Fatalf("the next recorded denial carries %q suppressed, want 7: %+v", last.detail[connectors.DetailSuppressed], last)
	}

	for range 5 {
		r.Handle(ctx, msg("mallory", "more"), c)
	}
	tr.setFail(true)
	clk.advance(connectors.DefaultDenialWindow)
	r.FlushDenials(ctx, false)
	if r.PendingDenials() != 5 {
		t.Fatalf("a summary that could not be recorded left %d pending, want 5", r.PendingDenials())
	}
	tr.setFail(false)
	r.FlushDenials(ctx, true)
	if got := tr.denials(t); got != 16 || r.PendingDenials() != 0 {
		t.Fatalf("after the shutdown flush the trail accounts for %d of 16 (%d pending)", got, r.PendingDenials())
	}
	sum := tr.recs[len(tr.recs)-1]
	if !slices.Contains(sum.reasons, connectors.ReasonDenialsSuppressed) || sum.user != "local:mallory" || sum.detail[connectors.DetailFirst] == "" {
		t.Fatalf("summary record %+v", sum)
	}
}

// The denial budget lives in the limiter the gateway saves: a flooder
// who spent it gets no fresh replies after a restart.
func TestDenialBudgetSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	lim := ratelimit.New(ratelimit.Options{Now: clk.now})
	r, _ := throttledRouter(t, lim, clk)
	c := &chat{}
	for range 10 {
		r.Handle(ctx, msg("mallory", "hi"), c)
	}
	path := filepath.Join(t.TempDir(), "ratelimit")
	if err := lim.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	lim2 := ratelimit.New(ratelimit.Options{Now: clk.now})
	if err := lim2.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	r2, tr2 := throttledRouter(t, lim2, clk)
	c2 := &chat{}
	r2.Handle(ctx, msg("mallory", "after restart"), c2)
	if len(c2.all()) != 0 || tr2.len() != 0 {
		t.Fatalf("after a restart the flooder got %d replies and %d records, want none", len(c2.all()), tr2.len())
	}
}

// A local connector's peer (uid on its socket) is in the message
// decision's record.
func TestPeerReachesTheRecord(t *testing.T) {
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	r, tr := throttledRouter(t, nil, clk)
	for _, user := range []string{"alice", "mallory"} {
		m := msg(user, "hi")
		m.Peer = "uid:1000 pid:42"
		r.Handle(context.Background(), m, &chat{})
	}
	for _, rec := range tr.recs {
		if rec.detail[connectors.DetailPeer] != "uid:1000 pid:42" {
			t.Errorf("record of %s lacks the peer: %+v", rec.user, rec.detail)
		}
	}
	if len(tr.recs) != 2 {
		t.Fatalf("%d records, want 2", len(tr.recs))
	}
}

// Past MaxPending senders with a count, counts go into one summary per
// connector (no user, scope global), written a window after it opened.
func TestDenialCountsPastMaxPending(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	tr := &trail{}
	e, err := engine.New(ctx, engine.Options{PolicyDir: policyDir(t), Data: testData(), Recorder: tr})
	if err != nil {
		t.Fatal(err)
	}
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: &countingTurns{},
		Denials: connectors.DenialBudget{GlobalBurst: 1, GlobalRate: 1e-9, MaxPending: 2, Now: clk.now,
			Limiter: ratelimit.New(ratelimit.Options{Now: clk.now})}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		r.Handle(ctx, msg(fmt.Sprintf("s%d", i), "hi"), &chat{})
	}
	if tr.len() != 1 {
		t.Fatalf("%d records with a global burst of 1, want 1", tr.len())
	}
	clk.advance(connectors.DefaultDenialWindow)
	r.FlushDenials(ctx, false)
	if got := tr.denials(t); got != 10 || r.PendingDenials() != 0 {
		t.Fatalf("the trail accounts for %d of 10 (%d pending)", got, r.PendingDenials())
	}
	if n := tr.len(); n != 2 {
		t.Fatalf("%d records, want the first denial and one global summary", n)
	}
	sum := tr.recs[1]
	if sum.user != "" || sum.detail[connectors.DetailScope] != "global" || sum.detail[connectors.DetailSuppressed] != "9" {
		t.Fatalf("global summary %+v", sum)
	}
}

// A message whose decision cannot be recorded is refused and the sender
// is told why, allowed sender or not.
func TestUnrecordedDecisionIsTold(t *testing.T) {
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	r, tr := throttledRouter(t, nil, clk)
	tr.setFail(true)
	for _, user := range []string{"alice", "mallory"} {
		c := &chat{}
		if err := r.Handle(context.Background(), msg(user, "hi"), c); err != nil {
			t.Fatal(err)
		}
		if got := c.all(); len(got) != 1 || got[0] != connectors.AuditUnavailableReply {
			t.Errorf("%s was told %q", user, got)
		}
	}
}

// RecordText runs only for decisions that are recorded, and a text that
// cannot be recorded refuses the message with a reply.
func TestRecordTextFollowsDecisions(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	tr := &trail{}
	e, err := engine.New(ctx, engine.Options{PolicyDir: policyDir(t), Data: testData(), Recorder: tr})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	failText := false
	turns := &countingTurns{}
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: turns,
		Denials: connectors.DenialBudget{Now: clk.now, Limiter: ratelimit.New(ratelimit.Options{Now: clk.now})},
		RecordText: func(_ context.Context, m *connectors.Message, id string) error {
			if failText {
				return errors.New("no space left on device")
			}
			texts = append(texts, m.Text+"@"+id)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		r.Handle(ctx, msg("mallory", "flood"), &chat{})
	}
	if len(texts) != connectors.DefaultDenialSenderBurst || len(texts) != tr.len() {
		t.Fatalf("%d texts and %d decision records for a flood of 20, want %d of each", len(texts), tr.len(), connectors.DefaultDenialSenderBurst)
	}
	failText = true
	c := &chat{}
	if err := r.Handle(ctx, msg("alice", "hello"), c); err == nil {
		t.Fatal("a message whose text could not be recorded was handled")
	}
	if got := c.all(); len(got) != 1 || got[0] != connectors.AuditUnavailableReply || turns.n() != 0 {
		t.Fatalf("alice was told %q and %d turns ran", got, turns.n())
	}
}

// An admitted member flooding past their rate limit meets the same denial
// budget: a bounded number of records, and the records still account for
// every message (allowed ones, denied ones, suppressed counts).
func TestAdmittedSenderFloodIsBounded(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	r, tr := throttledRouter(t, nil, clk)
	c := &chat{}
	const total = 100
	for range total {
		if err := r.Handle(ctx, msg("alice", "again"), c); err != nil {
			t.Fatal(err)
		}
		clk.advance(time.Second / total)
	}
	// The member role's burst is 5 messages; the rest are rate-limited.
	if max := 5 + connectors.DefaultDenialSenderBurst; tr.len() > max {
		t.Fatalf("%d records for %d messages from an admitted sender past their rate limit, want at most %d", tr.len(), total, max)
	}
	// tr.denials counts every record of its own (allowed ones too) and the
	// counts they carry.
	if got := tr.denials(t) + r.PendingDenials(); got != total {
		t.Fatalf("records and pending counts account for %d messages, want %d", got, total)
	}
}
