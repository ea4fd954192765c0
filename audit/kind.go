package audit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/parachute-gateway/parachute/engine"
)

// Kind says what a record is. Every kind the gateway writes is a constant
// here and has an entry in the registry (Kinds); the Emitter refuses a
// record of any other kind.
type Kind string

// The engine's entry points: a policy decision each, with its input.
const (
	KindMessage Kind = Kind(engine.Message)
	KindSession Kind = Kind(engine.Session)
	KindTool    Kind = Kind(engine.Tool)
	KindModel   Kind = Kind(engine.Model)
	KindEgress  Kind = Kind(engine.Egress)
)

// Records that are not policy decisions.
const (
	// KindToolList accounts for one MCP tools/list (shown, hidden and why).
	KindToolList Kind = "tool-list"
	// KindMessageText holds a message's text (audit.record_text only),
	// just before its message decision.
	KindMessageText Kind = "message-text"
	// KindSessionStart and KindSessionStop: a sandbox started or stopped
	// (detail why).
	KindSessionStart Kind = "session-start"
	KindSessionStop  Kind = "session-stop"
	// KindHook is a workspace hook's outcome.
	KindHook Kind = "hook"
	// KindPairing: a pairing request, approval or denial.
	KindPairing Kind = "pairing"
	// KindInvite: an invite created, redeemed or revoked.
	KindInvite Kind = "invite"
	// KindAdmin: an operator action (a revocation, a session stopped, a
	// console sign-in).
	KindAdmin Kind = "admin"
	// KindCheckpoint signs the chain head: detail "note" is a signed note
	// (see Checkpoint) over the record before it.
	KindCheckpoint Kind = "checkpoint"
	// KindGap is written first when the log can be written again after an
	// outage: detail from, to (times of the first and last refused append)
	// and refused (how many); error is the first failure.
	KindGap Kind = "gap"
)

// Metric names a series a kind's records feed.
type Metric string

// The series records feed (gateway/metrics.go serves them).
const (
	// MetricRecords counts every durable record by kind; MetricAppend
	// times each append and MetricFailures counts the failed ones. Every
	// record the Emitter writes feeds these three.
	MetricRecords  Metric = "parachute_audit_records_total"
	MetricAppend   Metric = "parachute_audit_append_seconds"
	MetricFailures Metric = "parachute_audit_failures_total"
	// Decisions the engine records also feed these.
	MetricDecisions       Metric = "parachute_decisions_total"
	MetricDecisionSeconds Metric = "parachute_decision_seconds"
	MetricRateLimited     Metric = "parachute_rate_limited_total"
	MetricDenials         Metric = "parachute_denials_total"
	// MetricRefused counts appends the log refused (checkpoints and gaps
	// included); the log writes those two kinds itself.
	MetricRefused Metric = "parachute_audit_refused_total"
)

// KindInfo is what the registry knows about one kind.
type KindInfo struct {
	Kind Kind
	// Decision: a policy decision of the engine's entry point of the same
	// name; its record carries the input (`parachute policy replay`).
	Decision bool
	// ByLog: only the log writes it (checkpoints, gaps); the Emitter
	// refuses it.
	ByLog bool
	// Metrics are the series its records feed.
	Metrics []Metric
	// About says what one record of it is, for `parachute logs --kind`
	// and docs/audit.md.
	About string
}

var (
	emitted   = []Metric{MetricRecords, MetricAppend, MetricFailures}
	decisions = append(slices.Clone(emitted), MetricDecisions, MetricDecisionSeconds, MetricRateLimited, MetricDenials)
)

// registry lists every kind, in the order docs list it.
var registry = []KindInfo{
	{Kind: KindMessage, Decision: true, Metrics: decisions, About: "a chat message decided (also what a Matrix connector refuses itself)"},
	{Kind: KindSession, Decision: true, Metrics: decisions, About: "a session (sandbox profile) decided"},
	{Kind: KindTool, Decision: true, Metrics: decisions, About: "an MCP tool call decided"},
	{Kind: KindModel, Decision: true, Metrics: decisions, About: "a model call decided"},
	{Kind: KindEgress, Decision: true, Metrics: decisions, About: "an outbound connection decided"},
	{Kind: KindToolList, Metrics: append(slices.Clone(emitted), MetricDecisions, MetricDecisionSeconds), About: "one MCP tools/list: counts shown and hidden, and why each hidden tool is"},
	{Kind: KindMessageText, Metrics: emitted, About: "a message's text, before its decision (only with audit.record_text)"},
	{Kind: KindSessionStart, Metrics: emitted, About: "a sandbox started for a session"},
	{Kind: KindSessionStop, Metrics: emitted, About: "a sandbox stopped (detail why)"},
	{Kind: KindHook, Metrics: emitted, About: "a workspace hook ran (its outcome)"},
	{Kind: KindPairing, Metrics: emitted, About: "a pairing request, approval or denial"},
	{Kind: KindInvite, Metrics: emitted, About: "an invite created, redeemed or revoked"},
	{Kind: KindAdmin, Metrics: emitted, About: "an operator action (revocation, session stop, console sign-in)"},
	{Kind: KindCheckpoint, ByLog: true, Metrics: []Metric{MetricRefused}, About: "a signed checkpoint of the chain head (written by the log)"},
	{Kind: KindGap, ByLog: true, Metrics: []Metric{MetricRefused}, About: "appends refused during an outage: when and how many (written by the log)"},
}

// Kinds returns the registry: every kind a record can have.
func Kinds() []KindInfo {
	out := slices.Clone(registry)
	for i := range out {
		out[i].Metrics = slices.Clone(out[i].Metrics)
	}
	return out
}

// LookupKind returns the registry's entry for k.
func LookupKind(k Kind) (KindInfo, bool) {
	for _, info := range registry {
		if info.Kind == k {
			return info, true
		}
	}
	return KindInfo{}, false
}

// KindList is every registered kind, comma-separated, for messages.
func KindList() string {
	names := make([]string, len(registry))
	for i, info := range registry {
		names[i] = string(info.Kind)
	}
	return strings.Join(names, ", ")
}

// ErrUnknownKind refuses a record whose kind is not in the registry.
var ErrUnknownKind = fmt.Errorf("%w: unknown record kind", ErrUnavailable)
