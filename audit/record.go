// Package audit keeps the gateway's audit log: one JSON line per decision,
// appended, made durable before the decision takes effect, and chained by
// SHA-256 so that an edited, inserted or deleted line is detected by Verify,
// with ed25519-signed checkpoints so that a rewritten or cut chain is too.
//
// A line is the JSON encoding of a Record followed by its hash:
//
//	{"seq":7,"time":"…","kind":"tool",…,"prev":"<hash of line 6>","hash":"<sha256 of this line up to ,"hash">"}
//
// hash = hex(sha256(body)), where body is the line with the final
// `,"hash":"…"` removed and the closing brace kept. prev is the hash of the
// line before; the first line of a log has 64 zeros. Rotation starts a new
// file whose first line's prev is the last hash of the old one, so the chain
// runs across files.
package audit

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// ReasonAuditUnavailable is the reason of a gap record: the engine's reason
// for the decisions refused in its window.
const ReasonAuditUnavailable = engine.ReasonAuditUnavailable

// Record is one audit line. Empty fields are left out of the JSON.
type Record struct {
	Seq            uint64            `json:"seq"`
	Time           time.Time         `json:"time"`
	Kind           Kind              `json:"kind"`
	Decision       string            `json:"decision,omitempty"` // allow or deny
	DecisionID     string            `json:"decision_id,omitempty"`
	Connector      string            `json:"connector,omitempty"`
	User           string            `json:"user,omitempty"`
	SessionID      string            `json:"session_id,omitempty"`
	TurnID         string            `json:"turn_id,omitempty"`
	TrustLevel     string            `json:"trust_level,omitempty"`
	Workspace      string            `json:"workspace,omitempty"`
	Tool           string            `json:"tool,omitempty"`
	Path           string            `json:"path,omitempty"`
	Model          string            `json:"model,omitempty"`
	Host           string            `json:"host,omitempty"`
	Reasons        []string          `json:"reasons,omitempty"`
	PolicyRevision string            `json:"policy_revision,omitempty"`
	LatencyUS      int64             `json:"latency_us,omitempty"`
	RetryAfterMS   int64             `json:"retry_after_ms,omitempty"`
	Error          string            `json:"error,omitempty"`
	Detail         map[string]string `json:"detail,omitempty"`
	// Input is the decision's input document, compact JSON with sorted
	// keys, as the policy saw it: `parachute policy replay` decides it
	// again against the current policy. Message text is never in it.
	Input json.RawMessage `json:"input,omitempty"`
	Prev  string          `json:"prev"`
}

// FromDecision builds the record of one engine decision. Message text is
// never part of an input, so it cannot reach the log from here.
func FromDecision(in engine.Input, d *engine.Decision) Record {
	r := Record{
		Kind:           Kind(d.Entry),
		Decision:       "deny",
		DecisionID:     d.ID,
		Reasons:        d.Reasons,
		PolicyRevision: d.Revision,
		LatencyUS:      d.Latency.Microseconds(),
		RetryAfterMS:   d.RetryAfter.Milliseconds(),
		Detail:         d.Detail,
	}
	if d.Allow {
		r.Decision = "allow"
	}
	if d.Err != nil {
		r.Error = d.Err.Error()
	}
	r.Input = canonicalInput(in)
	session := func(s engine.SessionFacts) {
		r.Connector, r.User, r.SessionID, r.TurnID = s.Connector, s.Identity, s.ID, s.TurnID
		r.TrustLevel, r.Workspace = s.TrustLevel, s.Workspace
	}
	switch in := in.(type) {
	case engine.MessageInput:
		r.Connector, r.User = in.Connector, in.Sender.ID
		if d.Allow {
			res := d.MessageResult()
			r.TrustLevel, r.Workspace = res.TrustLevel, res.Workspace
		}
	case engine.SessionInput:
		session(in.Session)
	case engine.ToolInput:
		session(in.Session)
		r.Tool = in.Tool.Name
		paths := make([]string, 0, len(in.Paths))
		for _, p := range in.Paths {
			if p.Resolved != "" {
				paths = append(paths, p.Resolved)
			} else {
				paths = append(paths, strconv.Quote(p.Raw))
			}
		}
		r.Path = strings.Join(paths, ",")
		if in.Invalid != nil {
			// A call that could not be read: what was wrong, and how many
			// like it went unrecorded before this one (mcpproxy bounds them).
			r.Detail = map[string]string{"invalid": in.Invalid.Reason, "why": in.Invalid.Detail}
			if in.Invalid.Suppressed > 0 {
				r.Detail["suppressed"] = strconv.FormatInt(in.Invalid.Suppressed, 10)
			}
		}
	case engine.ModelInput:
		session(in.Session)
		r.Model = in.Model
		// What the call reserved and what the provider would run for it.
		r.Detail = map[string]string{"tokens_requested": strconv.FormatInt(in.TokensRequested, 10)}
		for k, v := range map[string][]string{"provider_tools": in.ProviderTools, "mcp_servers": in.MCPServers, "betas": in.Betas} {
			if len(v) > 0 {
				r.Detail[k] = strings.Join(v, ",")
			}
		}
	case engine.EgressInput:
		session(in.Session)
		r.Host = net.JoinHostPort(in.Host, strconv.Itoa(in.Port))
	case engine.RawInput:
		if m, ok := in.Doc.(map[string]any); ok {
			if s, ok := m["session"].(map[string]any); ok {
				r.SessionID, _ = s["id"].(string)
				r.User, _ = s["identity"].(string)
				r.Connector, _ = s["connector"].(string)
				r.TrustLevel, _ = s["trust_level"].(string)
				r.Workspace, _ = s["workspace"].(string)
				r.TurnID, _ = s["turn_id"].(string)
			}
			if h, ok := m["host"].(string); ok {
				r.Host = h
			}
		}
	}
	if d.Cached {
		// The policy's answer came from the engine's decision cache; the
		// rest of the record is as for any decision.
		detail := make(map[string]string, len(r.Detail)+1)
		for k, v := range r.Detail {
			detail[k] = v
		}
		detail["cached"] = "true"
		r.Detail = detail
	}
	return r
}

// Recorder adapts a Log to engine.Recorder without metrics: every decision
// is appended through an Emitter with no Observer and made durable before
// Decide returns it. The gateway uses its Emitter, which counts them.
type Recorder struct{ Log *Log }

// Record implements engine.Recorder.
func (r Recorder) Record(ctx context.Context, in engine.Input, d *engine.Decision) error {
	return NewEmitter(r.Log, nil).Record(ctx, in, d)
}
