package mcpproxy

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
)

// Refusals of calls that cannot be read (bad arguments, unknown tools,
// protocol rejects) are recorded like any call, but a session sending
// garbage in a loop must not fill the audit disk: each session may record
// refusalBurst of them at once and one more per refusalEvery; the ones in
// between are counted and the next record carries the count
// (input.invalid.suppressed), as does a last record when the session closes.
const (
	refusalBurst = 20
	refusalEvery = time.Second
)

// refusals is the per-session budget of recorded refusals.
type refusals struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int64
	lastTool   engine.ToolFacts
}

// take reports whether one more refusal may be recorded now and, if so,
// how many were suppressed since the last one recorded.
func (r *refusals) take(now time.Time, tool engine.ToolFacts) (bool, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.IsZero() {
		r.tokens = refusalBurst
	} else {
		r.tokens = min(refusalBurst, r.tokens+now.Sub(r.last).Seconds()/refusalEvery.Seconds())
	}
	r.last = now
	if r.tokens < 1 {
		r.suppressed++
		r.lastTool = tool
		return false, 0
	}
	r.tokens--
	n := r.suppressed
	r.suppressed = 0
	return true, n
}

// drain returns the count of refusals not yet recorded, and resets it.
func (r *refusals) drain() (int64, engine.ToolFacts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.suppressed
	r.suppressed = 0
	return n, r.lastTool
}

// refuse decides (and so records) a call that cannot be read, and returns
// its denial. Past the session's refusal budget it is refused without a
// record of its own; it is counted in the next one.
func (s *Session) refuse(ctx context.Context, tool engine.ToolFacts, reason, detail string) *mcp.CallToolResult {
	ok, suppressed := s.refused.take(time.Now(), tool)
	if !ok {
		return denied([]string{reason}, detail)
	}
	d := s.p.opts.Decider.Decide(ctx, engine.ToolInput{
		Session: s.facts(),
		Tool:    tool,
		Paths:   []engine.PathFacts{},
		Invalid: &engine.CallError{Reason: reason, Detail: detail, Suppressed: suppressed},
	})
	if d.Allow || slices.Contains(d.Reasons, engine.ReasonOverloaded) {
		// Policy must refuse what Go could not read; an allow here is a
		// policy bug, and the call still does not run. An overloaded
		// decision is answered with Go's reason, not as busy: the call
		// could never run, so trying again would not help.
		return denied([]string{reason}, detail)
	}
	return denied(d.Reasons, detail)
}

// rejected records a message the intake refused.
func (s *Session) rejected(e *RPCError) {
	s.refuse(context.Background(), engine.ToolFacts{Access: engine.AccessUnknown}, ReasonProtocolError, e.Message)
}

// flushDetail marks the record that only counts unrecorded refusals.
const flushDetail = "refusals of this session not recorded one by one"

// flushRefusals writes one record counting the refusals not yet recorded.
func (s *Session) flushRefusals(ctx context.Context) {
	n, tool := s.refused.drain()
	if n == 0 {
		return
	}
	s.p.opts.Decider.Decide(ctx, engine.ToolInput{
		Session: s.facts(),
		Tool:    tool,
		Paths:   []engine.PathFacts{},
		Invalid: &engine.CallError{Reason: ReasonInvalidArguments, Detail: flushDetail, Suppressed: n},
	})
}

// checkToolName is receiving middleware that refuses, and records, a
// tools/call naming a tool the catalog does not have (the SDK would answer
// a bare protocol error that no record mentions).
func (s *Session) checkToolName(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if method != "tools/call" {
			return next(ctx, method, req)
		}
		call, ok := req.(*mcp.CallToolRequest)
		if !ok || call.Params == nil {
			return next(ctx, method, req)
		}
		if _, known := s.p.catalog.byName[call.Params.Name]; known {
			return next(ctx, method, req)
		}
		tool := engine.ToolFacts{Name: call.Params.Name, Access: engine.AccessUnknown}
		return s.refuse(ctx, tool, ReasonNoSuchTool, "no tool named "+quoteName(call.Params.Name)), nil
	}
}

func quoteName(n string) string {
	if len(n) > 128 {
		n = n[:128] + "…"
	}
	return strconv.Quote(n)
}
