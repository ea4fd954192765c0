package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/internal/strictjson"
)

// Playground limits.
const (
	maxPlaygroundInput = 256 << 10
	maxTrace           = 256 << 10
)

type policyFile struct {
	Name string
	Size int64
	Test bool
}

// playground is the playground's form and, after an evaluation, its result.
type playground struct {
	Entry   string
	Input   string
	From    string // the record it was pre-filled from
	FromErr string
	// Recorded is that record's decision, to compare with.
	Recorded *recorded
	Result   *pgResult
}

// recorded is a recorded decision as the playground compares it.
type recorded struct {
	Seq      uint64
	Allow    bool
	Reasons  []string
	Revision string
}

type pgResult struct {
	Allow      bool
	Reasons    []string
	Error      string
	Decision   string // the decision's fields, indented JSON
	Revision   string
	LatencyUS  int64
	Trace      string
	Truncated  bool
	InputError string
	// Same: the evaluation decided as the record did (allow and reasons,
	// leaving out the reasons only taking effect adds); nil without a
	// record to compare with.
	Same *bool
}

// commitReasons are added when a decision takes effect (engine.Commit),
// not by policy: an evaluation never reproduces them.
var commitReasons = []string{engine.ReasonRateLimited, engine.ReasonAuditUnavailable, engine.ReasonNoReason}

func (r *recorded) same(d *engine.Decision) bool {
	want := slices.DeleteFunc(slices.Clone(r.Reasons), func(s string) bool { return slices.Contains(commitReasons, s) })
	got := slices.Clone(d.Reasons)
	slices.Sort(want)
	slices.Sort(got)
	return r.Allow == d.Allow && slices.Equal(want, got)
}

func (c *Console) policyPage(w http.ResponseWriter, r *http.Request, s *session) {
	pg := playground{Entry: string(engine.Message), Input: "{}"}
	if from := strings.TrimSpace(r.URL.Query().Get("from")); from != "" {
		pg.From = from
		entry, input, rec, err := c.recordedInput(from)
		if err != nil {
			pg.FromErr = err.Error()
		} else {
			pg.Entry, pg.Input, pg.Recorded = entry, input, rec
		}
	}
	c.renderPolicy(w, r, s, http.StatusOK, pg)
}

func (c *Console) renderPolicy(w http.ResponseWriter, r *http.Request, s *session, code int, pg playground) {
	st := c.b.Policy()
	files, ferr := policyFiles(st.Dir)
	var refused map[string]string
	if st.Refused != nil {
		refused = map[string]string{"At": st.Refused.At.UTC().Format("2006-01-02 15:04:05Z"), "Revision": st.Refused.Revision, "Error": fmt.Sprint(st.Refused.Err)}
	}
	entries := make([]string, len(engine.Entries))
	for i, e := range engine.Entries {
		entries[i] = string(e)
	}
	c.render(w, r, code, "policy", s, map[string]any{
		"Status": st, "Refused": refused, "Files": files, "FilesErr": errString(ferr), "Entries": entries, "PG": pg,
	})
}

// policyFiles lists the policy folder's .rego files (links are not
// followed), tests marked.
func policyFiles(dir string) ([]policyFile, error) {
	var out []policyFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".rego") || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, policyFile{Name: rel, Size: info.Size(), Test: strings.HasSuffix(d.Name(), "_test.rego")})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// recordedInput finds a decision record by seq or decision_id and returns
// its entry, its stored input (indented) and its decision. A seq is read
// from the one file holding it; a decision ID from the minutes around the
// time it carries (see decisionTime), where the decision, not the message
// text recorded with the same ID, is taken.
func (c *Console) recordedInput(want string) (string, string, *recorded, error) {
	var (
		rec  *audit.Record
		err  error
		miss string
	)
	keep := func(e audit.Entry) {
		r := e.Record
		rec = &r
	}
	if seq, perr := strconv.ParseUint(want, 10, 64); perr == nil && seq > 0 && strconv.FormatUint(seq, 10) == want {
		err = audit.Read(c.b.AuditDir(), c.readOpts(audit.ReadOptions{FromSeq: seq, BeforeSeq: seq + 1}), func(e audit.Entry) error {
			keep(e)
			return audit.Stop
		})
		miss = fmt.Sprintf("no record with seq %s in the audit log", want)
	} else if t, ok := decisionTime(want); ok {
		from, until := t.Add(-idSlack), t.Add(decisionWindow)
		err = audit.Read(c.b.AuditDir(), c.readOpts(audit.ReadOptions{Since: from, Until: until, Ordered: true}), func(e audit.Entry) error {
			if e.Record.DecisionID != want {
				return nil
			}
			keep(e)
			if isEntry(string(e.Record.Kind)) {
				return audit.Stop
			}
			return nil
		})
		miss = fmt.Sprintf("no record with decision_id %s written from %s to %s, the minutes around the time the ID carries (`parachute logs decision_id=%s` reads the whole log)",
			want, from.Format(time.RFC3339), until.Format(time.RFC3339), want)
	} else {
		return "", "", nil, fmt.Errorf("%q is neither a record's seq number nor a decision ID (32 hex digits)", want)
	}
	if err != nil {
		return "", "", nil, err
	}
	if rec == nil {
		return "", "", nil, errors.New(miss)
	}
	kind := string(rec.Kind)
	if !isEntry(kind) {
		return "", "", nil, fmt.Errorf("record %s is a %s record, not a policy decision", want, kind)
	}
	if len(rec.Input) == 0 {
		return "", "", nil, fmt.Errorf("record %s has no stored input (written by a gateway older than input recording)", want)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, rec.Input, "", "  "); err != nil {
		return "", "", nil, fmt.Errorf("record %s: stored input: %w", want, err)
	}
	return kind, buf.String(), &recorded{Seq: rec.Seq, Allow: rec.Decision == "allow", Reasons: rec.Reasons, Revision: rec.PolicyRevision}, nil
}

// policyEval evaluates the playground's input against the policy in
// force with Backend.Explain: the same prepared query as a real decision,
// but no rate-limit token is taken, the decision cache is not touched and
// nothing is recorded. It changes nothing, so it writes no audit record:
// the record of who could do it is the login.
func (c *Console) policyEval(w http.ResponseWriter, r *http.Request, s *session) {
	pg := playground{Entry: r.PostFormValue("entry"), Input: r.PostFormValue("input"), From: r.PostFormValue("from")}
	res := &pgResult{}
	pg.Result = res
	code := http.StatusOK
	switch {
	case !isEntry(pg.Entry):
		res.InputError = fmt.Sprintf("entry %q is not one of the policy's entry points", pg.Entry)
	case len(pg.Input) > maxPlaygroundInput:
		res.InputError = fmt.Sprintf("the input is %d bytes; at most %d are evaluated here", len(pg.Input), maxPlaygroundInput)
	}
	if res.InputError != "" {
		c.renderPolicy(w, r, s, http.StatusBadRequest, pg)
		return
	}
	// One parse, the strict one: duplicate member names, invalid UTF-8
	// and lone surrogates are refused, not resolved silently.
	doc, err := strictjson.Object([]byte(pg.Input))
	if err != nil {
		res.InputError = "the input is not a JSON object the gateway would read: " + err.Error()
		if errors.Is(err, strictjson.ErrTooDeep) {
			res.InputError = fmt.Sprintf("the input nests arrays and objects more than %d deep, which the gateway's JSON parser refuses; it is not evaluated", strictjson.MaxDepth)
		}
		c.renderPolicy(w, r, s, http.StatusBadRequest, pg)
		return
	}
	if pg.From != "" {
		// Compare with the record only if the input is still its input.
		if entry, input, rec, err := c.recordedInput(pg.From); err == nil && entry == pg.Entry && sameJSON(input, pg.Input) {
			pg.Recorded = rec
		}
	}
	d, trace := c.b.Explain(r.Context(), engine.Entry(pg.Entry), doc)
	if pg.Recorded != nil {
		same := pg.Recorded.same(&d)
		res.Same = &same
	}
	res.Allow, res.Reasons, res.Revision, res.LatencyUS = d.Allow, d.Reasons, d.Revision, d.Latency.Microseconds()
	if res.Reasons == nil {
		res.Reasons = []string{}
	}
	if d.Err != nil {
		res.Error = d.Err.Error()
	}
	if d.Fields != nil {
		if b, err := json.MarshalIndent(d.Fields, "", "  "); err == nil {
			res.Decision = string(b)
		}
	}
	var tb limitedBuffer
	tb.max = maxTrace
	topdown.PrettyTraceWithLocation(&tb, trace)
	lines := strings.Split(tb.String(), "\n")
	for i, l := range lines {
		lines[i] = audit.Escape(l)
	}
	res.Trace, res.Truncated = strings.Join(lines, "\n"), tb.cut
	c.renderPolicy(w, r, s, code, pg)
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	max int
	cut bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.cut = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(a, b string) bool {
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}
