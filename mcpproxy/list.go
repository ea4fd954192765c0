package mcpproxy

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy/busy"
)

// EntryToolList is the kind of the one record a tools/list writes: it is
// not a decision of policy but the account of one listing (detail listing,
// shown, hidden and hidden_tools, each hidden tool with the reasons policy
// gave), so that the log says what the agent was shown without looking
// like calls.
const EntryToolList engine.Entry = "tool-list"

// reasonHiddenChanged hides a tool whose definition changed since it was
// approved (see ReasonToolChanged for the call's refusal).
const reasonHiddenChanged = "tool-changed-or-unapproved"

// maxHiddenDetail bounds the hidden_tools detail of a listing record.
const maxHiddenDetail = 2048

// ErrListUnrecorded refuses a tools/list whose record could not be written.
var ErrListUnrecorded = errors.New("the tool list is refused: the audit log cannot record it (" + engine.ReasonAuditUnavailable + ")")

// filterList is receiving middleware that removes from a tools/list result
// every tool the session may not call: blocked (changed) tools, and tools
// policy denies with no path arguments (write tools in read-only mode,
// unknown and exec tools for sandboxed sessions, …).
//
// Listing is not the enforcement point: every call is decided again. It
// keeps tools the agent cannot use out of the model's view, and it is pure:
// each tool is evaluated (Decider.Evaluate), never committed, so a listing
// takes no rate-limit token and writes no record that looks like a call.
// One record of kind EntryToolList accounts for the whole listing; if it
// cannot be written the listing is refused.
func (s *Session) filterList(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		res, err := next(ctx, method, req)
		if method != "tools/list" || err != nil {
			return res, err
		}
		list, ok := res.(*mcp.ListToolsResult)
		if !ok {
			return res, err
		}
		kept := list.Tools[:0]
		var hidden []string
		var shed bool
		var retryAfter time.Duration
		for _, t := range list.Tools {
			reasons, wait := s.hiddenBecause(ctx, t.Name)
			if slices.Contains(reasons, engine.ReasonOverloaded) {
				// Not a policy answer: hiding the tool would tell the
				// agent it does not exist, listing it would show what
				// policy may refuse. The listing fails as busy.
				shed, retryAfter = true, max(retryAfter, wait)
				continue
			}
			if reasons != nil {
				hidden = append(hidden, t.Name+"="+strings.Join(reasons, "+"))
				continue
			}
			kept = append(kept, t)
		}
		list.Tools = kept
		if shed {
			if !s.recordListing(ctx, 0, hidden, true) {
				return nil, ErrListUnrecorded
			}
			return nil, busy.Error(retryAfter)
		}
		if !s.recordListing(ctx, len(kept), hidden, false) {
			return nil, ErrListUnrecorded
		}
		return list, nil
	}
}

// hiddenBecause evaluates, without committing, whether the tool name is
// shown to the session: nil if it is, else the reasons it is hidden, and
// the decision's RetryAfter (set when the reason is overloaded).
func (s *Session) hiddenBecause(ctx context.Context, name string) ([]string, time.Duration) {
	e, ok := s.p.catalog.byName[name]
	if !ok {
		return []string{ReasonNoSuchTool}, 0
	}
	approved, unapproved := s.p.approval(e)
	if !approved && !unapproved {
		return []string{reasonHiddenChanged}, 0
	}
	d := s.p.opts.Decider.Evaluate(ctx, engine.ToolInput{
		Session: s.facts(),
		Tool:    withApproval(e.facts(), unapproved),
		Paths:   []engine.PathFacts{},
	})
	if d.Allow {
		return nil, 0
	}
	if len(d.Reasons) == 0 {
		return []string{engine.ReasonNoReason}, 0
	}
	return d.Reasons, d.RetryAfter
}

// recordListing commits the one record of a listing; false if it could not
// be written. A shed listing (some decision overloaded) is recorded as a
// refusal with reason overloaded: nothing was shown.
func (s *Session) recordListing(ctx context.Context, shown int, hidden []string, shed bool) bool {
	sort.Strings(hidden)
	in := engine.ToolInput{Session: s.facts(), Paths: []engine.PathFacts{}}
	d := s.p.opts.Decider.Deny(in)
	d.Entry, d.Allow, d.Reasons = EntryToolList, true, nil
	if shed {
		d.Allow, d.Reasons = false, []string{engine.ReasonOverloaded}
	}
	d.Detail = map[string]string{
		"listing": "tools/list",
		"shown":   strconv.Itoa(shown),
		"hidden":  strconv.Itoa(len(hidden)),
	}
	if len(hidden) > 0 {
		h := strings.Join(hidden, ",")
		if len(h) > maxHiddenDetail {
			h = h[:maxHiddenDetail] + "…"
		}
		d.Detail["hidden_tools"] = h
	}
	s.p.opts.Decider.Commit(ctx, in, &d)
	return !slices.Contains(d.Reasons, engine.ReasonAuditUnavailable)
}

func withApproval(t engine.ToolFacts, unapproved bool) engine.ToolFacts {
	t.Unapproved = unapproved
	return t
}
