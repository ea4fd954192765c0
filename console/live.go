package console

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/engine"
)

// row is one audit record as the live and audit pages show it.
type row struct {
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	Allow      string    `json:"allow"` // "true", "false", or "" for a record that is no decision
	Reasons    []string  `json:"reasons"`
	Connector  string    `json:"connector"`
	User       string    `json:"user"`
	Turn       string    `json:"turn"`
	DecisionID string    `json:"decision_id"`
	What       string    `json:"what"`
	// Playground: the record is a policy decision with a stored input;
	// From names it for /console/policy?from= (decision_id, else seq).
	Playground bool   `json:"playground"`
	From       string `json:"from,omitempty"`
}

func isEntry(kind string) bool {
	return slices.Contains(engine.Entries, engine.Entry(kind))
}

func toRow(r audit.Record) row {
	out := row{Seq: r.Seq, Time: r.Time, Kind: audit.Escape(string(r.Kind)), Connector: audit.Escape(r.Connector),
		User: audit.Escape(r.User), Turn: r.TurnID, DecisionID: r.DecisionID}
	for _, reason := range r.Reasons {
		out.Reasons = append(out.Reasons, audit.Escape(reason))
	}
	switch r.Decision {
	case "allow":
		out.Allow = "true"
	case "deny":
		out.Allow = "false"
	}
	if out.Reasons == nil {
		out.Reasons = []string{}
	}
	// A message decision's ID is the ID of the turn it starts.
	if out.Turn == "" && out.Kind == string(engine.Message) && r.Decision == "allow" {
		out.Turn = r.DecisionID
	}
	var what []string
	for _, f := range []struct{ k, v string }{{"tool", r.Tool}, {"path", r.Path}, {"model", r.Model}, {"host", r.Host},
		{"event", r.Detail["event"]}, {"why", r.Detail["why"]}, {"actor", r.Detail["actor"]}, {"error", r.Error}} {
		if f.v != "" {
			what = append(what, f.k+"="+f.v)
		}
	}
	out.What = audit.Escape(strings.Join(what, " "))
	out.Playground = isEntry(out.Kind) && len(r.Input) > 0
	if out.Playground {
		out.From = r.DecisionID
		if out.From == "" {
			out.From = strconv.FormatUint(r.Seq, 10)
		}
	}
	return out
}

// hidden are kinds the live stream leaves out: checkpoints sign the chain
// (the audit page shows them), message text is content, not a decision.
func hidden(kind string) bool {
	return kind == string(audit.KindCheckpoint) || kind == string(audit.KindMessageText)
}

// liveFilter reads the stream's filters from the query string: connector,
// identity, kind, allow (true|false), reason.
func liveFilter(q url.Values) (audit.Filter, error) {
	f := audit.Filter{}
	for param, key := range map[string]string{"connector": "connector", "identity": "user", "kind": "kind", "reason": "reasons"} {
		if v := strings.TrimSpace(q.Get(param)); v != "" {
			f[key] = v
		}
	}
	switch a := q.Get("allow"); a {
	case "":
	case "true":
		f["decision"] = "allow"
	case "false":
		f["decision"] = "deny"
	default:
		return nil, fmt.Errorf("allow=%q: use true, false or leave it out", a)
	}
	return f, nil
}

func (c *Console) livePage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	c.render(w, r, http.StatusOK, "live", s, map[string]any{
		"Q":       map[string]string{"connector": q.Get("connector"), "identity": q.Get("identity"), "kind": q.Get("kind"), "allow": q.Get("allow"), "reason": q.Get("reason")},
		"Kinds":   kindsOffered(),
		"Backlog": LiveBacklog.String(),
	})
}

// kindsOffered are the kinds the live filter offers: the audit registry's,
// less those the stream leaves out.
func kindsOffered() []string {
	var out []string
	for _, k := range audit.Kinds() {
		if !hidden(string(k.Kind)) {
			out = append(out, string(k.Kind))
		}
	}
	return out
}

// LiveBacklog is how far back a new live stream starts, and
// LiveBacklogMax how many of the newest records in that window it starts
// with at most: it reads the log from its newest file back, only the
// files holding them.
const (
	LiveBacklog    = 5 * time.Minute
	LiveBacklogMax = 500
)

// readCounter is implemented by a backend that counts the console's reads
// of the audit log: the tests bound each page's cost with it.
type readCounter interface{ AuditReadStats() *audit.ReadStats }

// readOpts adds the backend's read counter to o.
func (c *Console) readOpts(o audit.ReadOptions) audit.ReadOptions {
	if rc, ok := c.b.(readCounter); ok {
		o.Stats = rc.AuditReadStats()
	}
	return o
}

// Looking records up by decision ID reads only the time around the ID's
// time, not the whole log: a decision's records are written after it, the
// log's clock may read a little behind the engine's (idSlack), a decision
// is recorded as it is decided (decisionWindow), and a turn's trace ends at
// the first record written TraceQuiet after the turn's latest one (turns
// time out after 2 minutes unless configured longer: runtime.DefaultTurnTimeout).
// The reads trust the log's time order (audit.ReadOptions.Ordered).
const (
	idSlack        = time.Minute
	decisionWindow = time.Minute
	TraceQuiet     = 10 * time.Minute
)

// decisionTime is the time a decision ID carries: the engine's IDs are 32
// lowercase hex digits, the first 12 the decision's start in Unix
// milliseconds (engine/engine.go, newID).
func decisionTime(id string) (time.Time, bool) {
	if len(id) != 32 || strings.ToLower(id) != id {
		return time.Time{}, false
	}
	b, err := hex.DecodeString(id)
	if err != nil {
		return time.Time{}, false
	}
	var ms int64
	for _, x := range b[:6] {
		ms = ms<<8 | int64(x)
	}
	return time.UnixMilli(ms).UTC(), true
}

// liveHeartbeat keeps an idle stream open through proxies and tells a
// closed one from a quiet one.
const liveHeartbeat = 15 * time.Second

// liveEvents streams matching records as server-sent events (event
// "record", id = seq, data = the row as JSON), starting with the newest
// LiveBacklogMax of the last LiveBacklog, or after Last-Event-ID when the
// browser reconnects, then every new record as it is appended
// (audit.Follow, polled every FollowPoll). Opening it reads only the files
// holding that start.
func (c *Console) liveEvents(w http.ResponseWriter, r *http.Request, _ *session) {
	f, err := liveFilter(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	if n := c.streams.Add(1); n > MaxStreams {
		c.streams.Add(-1)
		w.Header().Set("Retry-After", "10")
		refuse(w, http.StatusServiceUnavailable, ReasonTooManyStreams, fmt.Sprintf("refused: %d live streams are open (at most %d); close a live page or wait", n-1, MaxStreams))
		return
	}
	defer c.streams.Add(-1)
	opts := c.readOpts(audit.ReadOptions{Filter: f, Since: c.now().Add(-LiveBacklog), Ordered: true, Last: LiveBacklogMax})
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		after, _ := strconv.ParseUint(id, 10, 64)
		// Every record since, from the file holding it; but an ID past
		// the log's head (it would never be reached, and 2^64-1 wraps)
		// or one whose replay would pass LiveBacklogMax opens as a fresh
		// stream does: the audit page holds what a live view skips.
		if head, err := audit.LastSeq(c.b.AuditDir()); err == nil && after > 0 && after <= head && head-after <= LiveBacklogMax {
			opts.FromSeq, opts.Last = after+1, 0
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "retry: 1000\n\n")
	fl.Flush()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rows := make(chan row, 64)
	errc := make(chan error, 1)
	go func() {
		errc <- audit.Follow(ctx, c.b.AuditDir(), opts, c.followPoll, func(e audit.Entry) error {
			if hidden(string(e.Record.Kind)) {
				return nil
			}
			select {
			case rows <- toRow(e.Record):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	hb := time.NewTicker(liveHeartbeat)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.stopped:
			return
		case err := <-errc:
			if err != nil && !errors.Is(err, context.Canceled) {
				_, _ = fmt.Fprintf(w, "event: failed\ndata: %s\n\n", jsonString("the audit log cannot be read: "+err.Error()))
				fl.Flush()
			}
			return
		case <-hb.C:
			_, _ = fmt.Fprint(w, ": ping\n\n")
			fl.Flush()
		case rw := <-rows:
			b, _ := json.Marshal(rw)
			if _, err := fmt.Fprintf(w, "event: record\nid: %d\ndata: %s\n\n", rw.Seq, b); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// --- trace ---

// step is one record of a turn, with the parsed paths of a tool call.
type step struct {
	row
	Record audit.Record
	Paths  []tracePath
	Text   string // the message's text, when audit.record_text is on
}

type tracePath struct{ Raw, Resolved string }

// stepOrder is the order of a turn: message → session → tool calls →
// model calls → egress; within a kind, the log's order.
var stepOrder = map[audit.Kind]int{audit.KindMessageText: 0, audit.KindMessage: 1,
	audit.KindSession: 2, audit.KindSessionStart: 2, audit.KindHook: 2, audit.KindSessionStop: 2,
	audit.KindTool: 3, audit.KindToolList: 3, audit.KindModel: 4, audit.KindEgress: 5}

// readTurn calls add for every record of turn. A turn ID is its message
// decision's ID, which carries the turn's start: the log is read forward
// from there (less idSlack) and the read ends at the first record written
// TraceQuiet after the turn's latest record, so only the files holding
// the turn are read. Any other ID (none the gateway writes) is looked for
// from the newest record back, to TraceQuiet before the oldest match: the
// whole log when there is none.
func (c *Console) readTurn(turn string, add func(audit.Record)) error {
	of := func(r audit.Record) bool {
		return (r.TurnID == turn || r.DecisionID == turn) && r.Kind != audit.KindCheckpoint
	}
	if t0, ok := decisionTime(turn); ok {
		latest := t0
		return audit.Read(c.b.AuditDir(), c.readOpts(audit.ReadOptions{Since: t0.Add(-idSlack), Ordered: true}), func(e audit.Entry) error {
			if e.Record.Time.After(latest.Add(TraceQuiet)) {
				return audit.Stop
			}
			if of(e.Record) {
				if e.Record.Time.After(latest) {
					latest = e.Record.Time
				}
				add(e.Record)
			}
			return nil
		})
	}
	var oldest time.Time
	return audit.ReadBack(c.b.AuditDir(), c.readOpts(audit.ReadOptions{}), func(e audit.Entry) error {
		if !oldest.IsZero() && e.Record.Time.Before(oldest.Add(-TraceQuiet)) {
			return audit.Stop
		}
		if of(e.Record) {
			oldest = e.Record.Time
			add(e.Record)
		}
		return nil
	})
}

func (c *Console) tracePage(w http.ResponseWriter, r *http.Request, s *session) {
	turn := r.PathValue("turn")
	var steps []step
	err := c.readTurn(turn, func(rec audit.Record) {
		st := step{row: toRow(rec), Record: rec}
		if rec.Kind == audit.KindMessageText {
			st.Text = audit.Escape(rec.Detail["text"])
		}
		if string(rec.Kind) == string(engine.Tool) && len(rec.Input) > 0 {
			var in struct {
				Paths []struct {
					Raw      string `json:"raw"`
					Resolved string `json:"resolved"`
				} `json:"paths"`
			}
			if json.Unmarshal(rec.Input, &in) == nil {
				for _, p := range in.Paths {
					st.Paths = append(st.Paths, tracePath{Raw: audit.Escape(p.Raw), Resolved: audit.Escape(p.Resolved)})
				}
			}
		}
		steps = append(steps, st)
	})
	slices.SortStableFunc(steps, func(a, b step) int {
		oa, ok := stepOrder[a.Record.Kind]
		if !ok {
			oa = 6
		}
		ob, ok := stepOrder[b.Record.Kind]
		if !ok {
			ob = 6
		}
		if oa != ob {
			return oa - ob
		}
		return int(a.Seq) - int(b.Seq)
	})
	code := http.StatusOK
	if len(steps) == 0 && err == nil {
		code = http.StatusNotFound
	}
	c.render(w, r, code, "trace", s, map[string]any{"Turn": turn, "Steps": steps, "Err": errString(err)})
}

// --- audit ---

// auditPageSize is how many records one audit page shows.
const auditPageSize = 100

// auditFilterKeys are the filters the audit page offers as fields; any
// other key=value of `parachute logs` goes in "more".
var auditFilterKeys = []string{"connector", "user", "kind", "decision", "reasons", "session_id", "turn_id", "tool"}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f := audit.Filter{}
	vals := map[string]string{}
	for _, k := range auditFilterKeys {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			f[k], vals[k] = v, v
		}
	}
	var errs []string
	if more := strings.TrimSpace(q.Get("more")); more != "" {
		extra, err := audit.ParseFilter(strings.Fields(more))
		if err != nil {
			errs = append(errs, err.Error())
		}
		for k, v := range extra {
			f[k] = v
		}
		vals["more"] = more
	}
	opts := audit.ReadOptions{Filter: f}
	if since := strings.TrimSpace(q.Get("since")); since != "" {
		vals["since"] = since
		if d, err := time.ParseDuration(since); err == nil && d >= 0 {
			opts.Since, opts.Ordered = c.now().Add(-d), true
		} else if t, err := time.Parse(time.RFC3339, since); err == nil {
			opts.Since, opts.Ordered = t, true
		} else {
			errs = append(errs, fmt.Sprintf("since %q is neither a duration (10m, 24h) nor an RFC 3339 time", since))
		}
	}
	if b := q.Get("before"); b != "" {
		opts.BeforeSeq, _ = strconv.ParseUint(b, 10, 64)
	}
	// Newest first, from the newest file back (or the file holding
	// before): one more match than a page says whether there are more.
	var page []row
	more := false
	err := audit.ReadBack(c.b.AuditDir(), c.readOpts(opts), func(e audit.Entry) error {
		if len(page) == auditPageSize {
			more = true
			return audit.Stop
		}
		page = append(page, toRow(e.Record))
		return nil
	})
	if err != nil {
		errs = append(errs, err.Error())
	}
	next := ""
	if more && len(page) > 0 {
		nq := url.Values{}
		for k, v := range vals {
			nq.Set(k, v)
		}
		nq.Set("before", strconv.FormatUint(page[len(page)-1].Seq, 10))
		next = "/console/audit?" + nq.Encode()
	}
	c.render(w, r, http.StatusOK, "audit", s, map[string]any{
		"Rows": page, "Q": vals, "Next": next, "Errs": errs, "Verify": c.verify(), "Keys": auditFilterKeys,
	})
}

// verifyView is the verification status the audit page shows.
type verifyView struct {
	At          time.Time
	OK, Signed  bool
	Err         string
	Records     int
	Files       int
	HeadSeq     uint64
	Checkpoints int
	LastSeq     uint64
	Unsigned    uint64
	Problems    []string
	Gaps        []string
	Warnings    []string
}

// verifyEvery bounds how often the audit page re-verifies the whole log.
const verifyEvery = 10 * time.Second

func (c *Console) verify() verifyView {
	c.mu.Lock()
	if v := c.lastVerify; v != nil && c.now().Sub(v.At) < verifyEvery {
		c.mu.Unlock()
		return *v
	}
	c.mu.Unlock()
	v := verifyView{At: c.now()}
	rep, err := c.b.VerifyAudit()
	if err != nil {
		v.Err = err.Error()
	} else {
		v.OK, v.Signed, v.Records, v.Files, v.HeadSeq, v.Checkpoints = rep.OK(), rep.Signed, rep.Records, rep.Files, rep.HeadSeq, rep.Checkpoints
		v.Unsigned = rep.UnsignedTail
		if rep.Last != nil {
			v.LastSeq = rep.Last.Seq
		}
		for _, p := range rep.Problems {
			v.Problems = append(v.Problems, audit.Escape(p.String()))
		}
		for _, g := range rep.Gaps {
			v.Gaps = append(v.Gaps, audit.Escape(g.String()))
		}
		for _, w := range rep.Warnings {
			v.Warnings = append(v.Warnings, audit.Escape(w.String()))
		}
	}
	c.mu.Lock()
	c.lastVerify = &v
	c.mu.Unlock()
	return v
}
