package mcpproxy

import (
	"context"
	"encoding/json"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/engine/ratelimit"
)

// filterList is receiving middleware that removes from a tools/list result
// every tool the session may not call: blocked (changed) tools, and tools
// policy denies with no path arguments (write tools in read-only mode,
// unknown and exec tools for sandboxed sessions, …).
//
// Listing is not the enforcement point, every call is decided again; it
// keeps tools the agent cannot use out of the model's view. Each listed tool
// is a recorded decision. The rate-limit token an allowed listing decision
// takes is given back, so that listing does not eat the call budget.
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
		for _, t := range list.Tools {
			if s.visible(ctx, t.Name) {
				kept = append(kept, t)
			}
		}
		list.Tools = kept
		return list, nil
	}
}

// visible decides whether the tool name is shown to the session.
func (s *Session) visible(ctx context.Context, name string) bool {
	e, ok := s.p.catalog.byName[name]
	if !ok {
		return false
	}
	approved, unapproved := s.p.approval(e)
	if !approved && !unapproved {
		return false
	}
	d := s.p.opts.Decider.Decide(ctx, engine.ToolInput{
		Session: s.facts(),
		Tool:    withApproval(e.facts(), unapproved),
		Paths:   []engine.PathFacts{},
	})
	if d.Allow {
		s.p.refund(&d)
	}
	return d.Allow
}

// refund gives back the tokens an allowed decision took from the rate-limit
// buckets it names, when the Decider exposes its limiter.
func (p *Proxy) refund(d *engine.Decision) {
	lim, ok := p.opts.Decider.(interface{ Limiter() *ratelimit.Limiter })
	if !ok {
		return
	}
	list, _ := d.Fields["rate_limits"].([]any)
	for _, item := range list {
		m, _ := item.(map[string]any)
		key, _ := m["key"].(string)
		burst, ok := number(m["burst"])
		if key != "" && ok {
			lim.Limiter().Refund(key, burst)
		}
	}
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func withApproval(t engine.ToolFacts, unapproved bool) engine.ToolFacts {
	t.Unapproved = unapproved
	return t
}
