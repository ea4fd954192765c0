// Package engine decides every request the gateway sees with the operator's
// Rego policies, embedded through OPA.
//
// An Engine compiles the policy folder once, prepares one query per entry
// point (data.parachute.<entry>.decision) and evaluates typed inputs against
// it. It fails closed: a compile error at start is an error from New, and
// anything that goes wrong while deciding (undefined decision, conflicting
// values, a builtin error, the deadline, a panic, a malformed decision, an
// unrecordable decision) is a deny with a reason, never an allow.
//
// Policies can change under a running engine. Reload and Watch compile the
// new version (and, if asked, run its tests) before swapping it in
// atomically; a broken edit leaves the last good version in force and is
// logged with file and line.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/engine/ratelimit"
)

// DefaultTimeout is the per-decision deadline when Options leaves it 0.
const DefaultTimeout = 250 * time.Millisecond

// OverloadRetryAfter is the RetryAfter of an overloaded deny: how long a
// user is asked to wait before trying again when a decision missed its
// deadline.
const OverloadRetryAfter = 5 * time.Second

// errDeadline is the failure of an evaluation the engine's own deadline cut.
var errDeadline = errors.New("decision deadline passed")

// Options configure an Engine.
type Options struct {
	// PolicyDir is the folder of .rego files (subfolders included;
	// *_test.rego files are tests, not policy).
	PolicyDir string
	// Data is the operator's configuration, visible to policy as
	// data.parachute.config.
	Data map[string]any
	// Recorder receives every decision (nil: decisions are not recorded).
	Recorder Recorder
	// Logger receives reload outcomes and recorder failures.
	Logger zerolog.Logger
	// Timeout bounds one decision (default DefaultTimeout).
	Timeout time.Duration
	// TestOnReload runs the policy folder's own tests and decides its
	// documented examples (examples/*/input.json against expected.json)
	// before a new version is swapped in; a version whose tests fail or
	// error, or whose examples decide otherwise, is refused and the last
	// good one kept (see Refused). It applies at start too.
	TestOnReload bool
	// Limiter enforces the rate limits policies name (default: a new one).
	Limiter *ratelimit.Limiter
	// CacheSize bounds the decision cache: how many evaluated decisions
	// each policy revision keeps (default DefaultCacheSize; negative: no
	// cache). The cache holds only what the policy said, never the rate
	// limits or the record, and is used only when the policy calls no
	// non-deterministic builtin (see Uncached).
	CacheSize int
}

// Engine evaluates policy decisions. It is safe for concurrent use.
type Engine struct {
	dir      string
	timeout  time.Duration
	tests    bool
	recorder Recorder
	log      zerolog.Logger
	limiter  *ratelimit.Limiter
	cacheMax int // 0: no cache

	cur atomic.Pointer[policySet]

	refused  atomic.Pointer[ReloadRefusal] // the last reload refused, nil after a good one
	refusals atomic.Uint64

	hits, misses atomic.Uint64 // decision cache look-ups since start

	mu   sync.Mutex // serialises Reload and SetData
	data map[string]any

	// watched, when set (tests), is told by Watch that its watches are in
	// place (reloaded false) and the outcome of every reload it runs
	// (reloaded true), so a test waits on the event instead of sleeping.
	watched func(err error, reloaded bool)
}

// New loads and compiles the policies in opts.PolicyDir. It returns an error
// wrapping ErrPolicy, naming file and line, if there is no usable policy: the
// gateway must not start without one.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.PolicyDir == "" {
		return nil, fmt.Errorf("%w: no policy folder given", ErrPolicy)
	}
	e := &Engine{
		dir:      opts.PolicyDir,
		timeout:  opts.Timeout,
		tests:    opts.TestOnReload,
		recorder: opts.Recorder,
		log:      opts.Logger,
		limiter:  opts.Limiter,
		data:     opts.Data,
		cacheMax: opts.CacheSize,
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	switch {
	case e.cacheMax == 0:
		e.cacheMax = DefaultCacheSize
	case e.cacheMax < 0:
		e.cacheMax = 0
	}
	if e.limiter == nil {
		e.limiter = ratelimit.New(ratelimit.Options{})
	}
	set, err := e.build(ctx, e.data)
	if err != nil {
		return nil, err
	}
	e.cur.Store(set)
	return e, nil
}

func (e *Engine) build(ctx context.Context, data map[string]any) (*policySet, error) {
	src, err := readSource(e.dir)
	if err != nil {
		return nil, err
	}
	set, err := compile(ctx, src, data, e.tests, e.timeout*40)
	if err != nil {
		return nil, err
	}
	if e.tests {
		if err := checkExamples(ctx, e.dir, src, e.timeout*40); err != nil {
			return nil, err
		}
	}
	if e.cacheMax > 0 && set.uncached == "" {
		set.cache = newDecisionCache(e.cacheMax)
	}
	return set, nil
}

// CacheStats counts decision cache look-ups since start, for a metric.
type CacheStats struct {
	Hits, Misses uint64
	Entries      int // held now, for the revision in force
}

// CacheStats returns the decision cache's counters.
func (e *Engine) CacheStats() CacheStats {
	st := CacheStats{Hits: e.hits.Load(), Misses: e.misses.Load()}
	if c := e.cur.Load().cache; c != nil {
		st.Entries = c.len()
	}
	return st
}

// Uncached says why decisions are not cached: the first call to a
// non-deterministic builtin in the policy in force ("time.now_ns at
// tool.rego:12:3"), "disabled" when Options.CacheSize is negative, or ""
// when they are cached.
func (e *Engine) Uncached() string {
	set := e.cur.Load()
	switch {
	case set.uncached != "":
		return set.uncached
	case set.cache == nil:
		return "disabled"
	}
	return ""
}

// Revision identifies the policy files and data in force: the first 16 hex
// digits of a SHA-256 over them.
func (e *Engine) Revision() string { return e.cur.Load().revision }

// ReloadRefusal is a reload that was refused: the policy in force is still
// Revision.
type ReloadRefusal struct {
	Err      error // wraps ErrPolicy; names file:line, failing tests or examples
	At       time.Time
	Revision string // the revision kept in force
}

// Refused returns the last refused reload, or nil when the last reload (or
// the start) succeeded. The gateway shows it in /readyz.
func (e *Engine) Refused() *ReloadRefusal { return e.refused.Load() }

// Refusals counts refused reloads since start, for a metric.
func (e *Engine) Refusals() uint64 { return e.refusals.Load() }

// Limiter is the rate limiter the engine enforces policy buckets with.
func (e *Engine) Limiter() *ratelimit.Limiter { return e.limiter }

// Reload recompiles the policy folder. On error the running version stays in
// force and the error (wrapping ErrPolicy, with file:line) is returned.
func (e *Engine) Reload(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.swap(ctx, e.data)
}

// SetData replaces the operator data (after a config reload) and recompiles.
// On error the previous data and policies stay in force.
func (e *Engine) SetData(ctx context.Context, data map[string]any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.swap(ctx, data); err != nil {
		return err
	}
	e.data = data
	return nil
}

func (e *Engine) swap(ctx context.Context, data map[string]any) error {
	old := e.cur.Load().revision
	set, err := e.build(ctx, data)
	if err != nil {
		e.log.Error().Err(err).Str("policy_revision", old).Msg("policy reload refused; keeping the last good policy")
		e.refused.Store(&ReloadRefusal{Err: err, At: time.Now(), Revision: old})
		e.refusals.Add(1)
		return err
	}
	e.refused.Store(nil)
	e.cur.Store(set)
	if set.revision != old {
		e.log.Info().Str("policy_revision", set.revision).Str("previous_revision", old).
			Int("files", set.files).Msg("policy reloaded")
	}
	return nil
}

// Decide evaluates in against its entry point. It never returns an error:
// every failure is a deny whose reasons say why, with Err set for
// policy-error. The decision is handed to the Recorder before it is returned;
// if recording fails the decision is a deny. Decide is Evaluate then Commit.
func (e *Engine) Decide(ctx context.Context, in Input) Decision {
	d := e.Evaluate(ctx, in)
	e.Commit(ctx, in, &d)
	return d
}

// Evaluate is the pure half of Decide: it asks the policy and nothing else.
// No rate-limit token is taken and nothing is recorded, so the decision must
// not be acted on until Commit has been called on it. A caller that checks
// more than policy sees (the egress proxy's resolved addresses) evaluates,
// turns the decision into a deny if its own check fails, and commits the
// result: one record per request, saying what was finally decided.
func (e *Engine) Evaluate(ctx context.Context, in Input) Decision {
	start := time.Now()
	set := e.cur.Load()
	d := Decision{ID: newID(start), Entry: in.Entry(), Revision: set.revision}
	e.evaluate(ctx, set, in, &d)
	d.Latency = time.Since(start)
	return d
}

// Commit makes d take effect: on an allowed decision it takes a token from
// every rate-limit bucket d names (a deny if one is empty), then hands d to
// the Recorder. If recording fails d becomes a deny with reason
// audit-unavailable: nothing is allowed that is not recorded. A deny without
// a reason gets no-reason-given.
func (e *Engine) Commit(ctx context.Context, in Input, d *Decision) {
	e.Spend(d)
	if e.recorder != nil {
		if err := e.recorder.Record(ctx, in, d); err != nil {
			e.log.Error().Err(err).Str("decision_id", d.ID).Msg("decision could not be recorded; refused")
			d.Allow = false
			d.Reasons = append(d.Reasons, ReasonAuditUnavailable)
		}
	}
}

// Spend takes the tokens of the rate limits an allowed decision names; past
// one, the decision becomes a rate-limited deny. It is the first half of
// Commit, for a caller that must know whether a decision is a denial before
// it is recorded (the router's denial budget also bounds the records of an
// admitted sender who floods past their rate limit). Spending twice takes
// nothing more; Commit does not spend again.
func (e *Engine) Spend(d *Decision) {
	if d.spent {
		return
	}
	d.spent = true
	start := time.Now()
	if d.Allow && len(d.limits) > 0 {
		e.enforceLimits(d)
	}
	if !d.Allow && len(d.Reasons) == 0 {
		d.Reasons = []string{ReasonNoReason}
	}
	d.Latency += time.Since(start)
}

// Deny returns a deny of in with the given reasons that policy did not make
// (a check the caller does itself: a rate limit, a connection cap). It
// carries a fresh ID and the revision in force; Commit records it.
func (e *Engine) Deny(in Input, reasons ...string) Decision {
	return Decision{ID: newID(time.Now()), Entry: in.Entry(), Revision: e.cur.Load().revision, Reasons: reasons}
}

// maxPooledKey bounds the key buffers kept for reuse: one huge input
// (thousands of paths) does not pin its buffer in the pool.
const maxPooledKey = 64 << 10

// evaluate decides in against set: from the cache when set has one and
// holds in's document, else by running the prepared query, whose result
// is then cached. Only a result the policy gave is cached, never a
// policy-error (a deadline or a panic says nothing about the input).
func (e *Engine) evaluate(ctx context.Context, set *policySet, in Input, d *Decision) {
	defer func() {
		if r := recover(); r != nil {
			policyError(d, fmt.Errorf("panic during evaluation: %v", r))
		}
	}()
	q, ok := set.queries[d.Entry]
	if !ok {
		policyError(d, fmt.Errorf("unknown entry point %q", d.Entry))
		return
	}
	var key []byte
	di, typed := in.(docInput)
	if set.cache != nil && typed {
		w := keyWriters.Get().(*docWriter)
		defer func() {
			if cap(w.key) <= maxPooledKey {
				keyWriters.Put(w)
			}
		}()
		w.key = append(w.key[:0], d.Entry...)
		key = w.appendKey(di, set.reads[d.Entry])
		if res := set.cache.get(key); res != nil {
			e.hits.Add(1)
			res.apply(d)
			d.Cached = true
			return
		}
		e.misses.Add(1)
	}
	var value ast.Value
	if typed {
		value = buildValue(di)
	} else {
		value = in.Value()
	}
	res, err := e.run(ctx, q, d.Entry, value)
	if errors.Is(err, errDeadline) {
		overloaded(d, err)
		return
	}
	if err != nil {
		policyError(d, err)
		return
	}
	res.apply(d)
	if key != nil {
		set.cache.put(key, res)
	}
}

// asTerm hands OPA's result back as the AST term it is, so the decision is
// read from the AST without a conversion to map[string]any first.
func asTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// run evaluates the prepared query with the engine's deadline and reads the
// decision object. One timer cancels the evaluation at the deadline (OPA
// would otherwise start a goroutine per evaluation to watch the context);
// the caller's context still cancels it. An evaluation the timer cut fails
// with errDeadline (the caller reports it as overloaded); one the caller's
// context cut, or that failed otherwise, with OPA's error.
func (e *Engine) run(ctx context.Context, q *rego.PreparedEvalQuery, entry Entry, input ast.Value) (*result, error) {
	cancel := topdown.NewCancel()
	var late atomic.Bool
	timer := time.AfterFunc(e.timeout, func() {
		late.Store(true)
		cancel.Cancel()
	})
	defer timer.Stop()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, cancel.Cancel)
		defer stop()
	}
	rs, err := q.Eval(ctx, rego.EvalParsedInput(input), rego.EvalExternalCancel(cancel), rego.EvalGenerateJSON(asTerm))
	switch {
	case err != nil && late.Load() && ctx.Err() == nil:
		return nil, fmt.Errorf("%w: the decision deadline of %s passed before the policy answered (%w)", errDeadline, e.timeout, err)
	case err != nil:
		return nil, err
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		return nil, fmt.Errorf("data.parachute.%s.decision is undefined for this input", entry)
	case len(rs) > 1:
		return nil, fmt.Errorf("data.parachute.%s.decision has %d results", entry, len(rs))
	}
	t, _ := rs[0].Expressions[0].Value.(*ast.Term)
	if t == nil {
		return nil, fmt.Errorf("data.parachute.%s.decision: no value", entry)
	}
	return readResult(entry, t.Value)
}

// readResult checks and reads a decision object.
func readResult(entry Entry, v ast.Value) (*result, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("data.parachute.%s.decision is %s, not an object", entry, ast.ValueName(v))
	}
	allow, ok := field(obj, "allow").(ast.Boolean)
	if !ok {
		return nil, fmt.Errorf("data.parachute.%s.decision.allow is missing or not a boolean", entry)
	}
	res := &result{allow: bool(allow)}
	if raw := field(obj, "reasons"); raw != nil {
		list, ok := raw.(*ast.Array)
		if !ok {
			return nil, fmt.Errorf("data.parachute.%s.decision.reasons is not an array", entry)
		}
		res.reasons = make([]string, 0, list.Len())
		for i := range list.Len() {
			s, ok := list.Elem(i).Value.(ast.String)
			if !ok {
				return nil, fmt.Errorf("data.parachute.%s.decision.reasons holds a %s", entry, ast.ValueName(list.Elem(i).Value))
			}
			res.reasons = append(res.reasons, string(s))
		}
	}
	if s, ok := field(obj, "reply").(ast.String); ok {
		res.reply = string(s)
	}
	if raw := field(obj, "rate_limits"); raw != nil {
		list, ok := raw.(*ast.Array)
		if !ok {
			return nil, fmt.Errorf("data.parachute.%s.decision.rate_limits is not an array", entry)
		}
		res.limits = make([]bucket, 0, list.Len())
		for i := range list.Len() {
			b, err := parseBucket(list.Elem(i).Value)
			if err != nil {
				return nil, fmt.Errorf("data.parachute.%s.decision.rate_limits[%d]: %w", entry, i, err)
			}
			res.limits = append(res.limits, b)
		}
	}
	fields, err := ast.JSON(obj)
	if err != nil {
		return nil, fmt.Errorf("data.parachute.%s.decision: %w", entry, err)
	}
	res.fields, _ = fields.(map[string]any)
	res.reasons = slices.Clip(res.reasons)
	res.limits = slices.Clip(res.limits)
	return res, nil
}

// field is obj[name], or nil. The name's term is made once (keyTerm):
// OPA's InternedTerm would make a new one per look-up for "reasons",
// "rate_limits" and every other name outside its own table.
func field(obj ast.Object, name string) ast.Value {
	if t := obj.Get(keyTerm(name)); t != nil {
		return t.Value
	}
	return nil
}

// apply copies res into d. The slices and the map are shared with the cache
// and every other decision made from res: Reasons is clipped so an append
// copies, and Fields is read-only.
func (r *result) apply(d *Decision) {
	d.Allow = r.allow
	d.Reasons = r.reasons
	d.Reply = r.reply
	d.Fields = r.fields
	d.limits = r.limits
}

// overloaded makes d the deny of an evaluation the deadline cut.
func overloaded(d *Decision, err error) {
	policyError(d, err)
	d.Reasons = []string{ReasonOverloaded}
	d.RetryAfter = OverloadRetryAfter
}

func policyError(d *Decision, err error) {
	d.Allow = false
	d.Reasons = []string{ReasonPolicyError}
	d.Err = err
	d.Fields = nil
	d.Reply = ""
	d.limits = nil
}

// bucket is one rate limit named by a decision's rate_limits.
type bucket struct {
	key         string
	rate, burst float64
}

// enforceLimits takes a token from every bucket the decision names; if one is
// empty, the tokens already taken are put back and the decision becomes a
// rate-limited deny with RetryAfter.
func (e *Engine) enforceLimits(d *Decision) {
	for i, b := range d.limits {
		ok, retry := e.limiter.Allow(b.key, b.rate, b.burst)
		if ok {
			continue
		}
		for _, taken := range d.limits[:i] {
			e.limiter.Refund(taken.key, taken.burst)
		}
		d.Allow = false
		d.Reasons = []string{ReasonRateLimited}
		d.RetryAfter = retry
		d.Reply = rateLimitedReply(retry)
		return
	}
}

func parseBucket(v ast.Value) (bucket, error) {
	m, ok := v.(ast.Object)
	if !ok {
		return bucket{}, errors.New("not an object")
	}
	var b bucket
	if s, ok := field(m, "key").(ast.String); ok {
		b.key = string(s)
	}
	if b.key == "" {
		return bucket{}, errors.New("key is missing or empty")
	}
	var err error
	if b.rate, err = astFloat(field(m, "rate")); err != nil {
		return bucket{}, fmt.Errorf("rate: %w", err)
	}
	if b.burst, err = astFloat(field(m, "burst")); err != nil {
		return bucket{}, fmt.Errorf("burst: %w", err)
	}
	if !ratelimit.Valid(b.rate, b.burst) {
		return bucket{}, fmt.Errorf("rate %v and burst %v must be finite and not negative", b.rate, b.burst)
	}
	return b, nil
}

func astFloat(v ast.Value) (float64, error) {
	switch n := v.(type) {
	case ast.Number:
		return json.Number(n).Float64()
	case nil:
		return 0, errors.New("missing")
	}
	return 0, fmt.Errorf("%s is not a number", ast.ValueName(v))
}

// number reads a JSON number as OPA returns it.
func number(v any) (float64, error) {
	switch n := v.(type) {
	case json.Number:
		return n.Float64()
	case float64:
		return n, nil
	case int:
		return float64(n), nil
	case int64:
		return float64(n), nil
	case nil:
		return 0, errors.New("missing")
	}
	return 0, fmt.Errorf("%T is not a number", v)
}

func rateLimitedReply(retry time.Duration) string {
	if retry <= 0 {
		return "You have reached the limit for now. Please try again later."
	}
	secs := int(math.Ceil(retry.Seconds()))
	unit := "seconds"
	if secs == 1 {
		unit = "second"
	}
	return "You are sending requests too quickly. Please try again in " + strconv.Itoa(secs) + " " + unit + "."
}

// newID returns a 128-bit decision ID, hex encoded, whose first 48 bits are
// the time in milliseconds so IDs sort by time.
func newID(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:])
	var out [32]byte
	hex.Encode(out[:], b[:])
	return string(out[:])
}
