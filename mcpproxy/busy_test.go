package mcpproxy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/mcpproxy/busy"
)

// overloaded is the real engine on a saturated machine for the named
// tools: each of their evaluations misses the deadline, as engine.Engine
// reports it (reason overloaded, RetryAfter set); Decide records that deny.
type overloaded struct {
	*engine.Engine
	tools map[string]bool
}

func (o overloaded) cut(in engine.Input) (engine.Decision, bool) {
	ti, ok := in.(engine.ToolInput)
	if !ok || !o.tools[ti.Tool.Name] {
		return engine.Decision{}, false
	}
	d := o.Deny(in, engine.ReasonOverloaded)
	d.RetryAfter = engine.OverloadRetryAfter
	return d, true
}

func (o overloaded) Evaluate(ctx context.Context, in engine.Input) engine.Decision {
	if d, ok := o.cut(in); ok {
		return d
	}
	return o.Engine.Evaluate(ctx, in)
}

func (o overloaded) Decide(ctx context.Context, in engine.Input) engine.Decision {
	if d, ok := o.cut(in); ok {
		o.Commit(ctx, in, &d)
		return d
	}
	return o.Engine.Decide(ctx, in)
}

func busySession(t *testing.T, readOnly bool, tools ...string) (*mcp.ClientSession, *recorder, fixture) {
	t.Helper()
	f := newFixture(t)
	rec := &recorder{}
	set := map[string]bool{}
	for _, n := range tools {
		set[n] = true
	}
	p, err := New(context.Background(), Options{Decider: overloaded{newEngine(t, rec), set}, Vault: f.vault, Builtin: true})
	must(t, err)
	t.Cleanup(func() { p.Close() })
	s, err := p.NewSession(context.Background(), SessionOptions{
		Facts: func() engine.SessionFacts { return facts(readOnly) }, ClientRoot: "/workspace",
	})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return connectHTTP(t, s.Handler()), rec, f
}

func wantBusy(t *testing.T, err error) {
	t.Helper()
	wait, ok := busy.From(err)
	if !ok {
		t.Fatalf("error %v; want a busy answer (JSON-RPC code %d)", err, busy.Code)
	}
	if wait != engine.OverloadRetryAfter {
		t.Errorf("retry after %s; want %s", wait, engine.OverloadRetryAfter)
	}
}

// A listing whose decision for a tool was overloaded neither hides the
// tool (the agent would call it "no tool named") nor shows it: it fails as
// busy, and its one record says so. The in-sandbox agent reports busy.
func TestOverloadedListingIsBusy(t *testing.T) {
	cs, rec, _ := busySession(t, false, "read_file")
	before := rec.count()
	_, err := cs.ListTools(context.Background(), nil)
	wantBusy(t, err)
	if n := rec.count() - before; n != 1 {
		t.Fatalf("%d records for one shed listing; want 1", n)
	}
	last, _ := rec.last()
	if last.d.Entry != EntryToolList || last.d.Allow || !slices.Equal(last.d.Reasons, []string{engine.ReasonOverloaded}) || last.d.Detail["shown"] != "0" {
		t.Errorf("listing record %s allow %v reasons %v detail %v; want a %s refusal for overloaded, nothing shown",
			last.d.Entry, last.d.Allow, last.d.Reasons, last.d.Detail, EntryToolList)
	}
	// A listing without overload still hides what policy refuses.
	cs, _, _ = busySession(t, true)
	list, err := cs.ListTools(context.Background(), nil)
	must(t, err)
	for _, tool := range list.Tools {
		if tool.Name == "write_file" {
			t.Errorf("read-only listing shows write_file")
		}
	}
}

// A call decided overloaded is answered busy (not "denied: overloaded" as a
// tool result the agent would pass on), runs nothing, and is recorded once.
// A policy denial stays a plain denial.
func TestOverloadedCallIsBusy(t *testing.T) {
	cs, rec, f := busySession(t, true, "read_file")
	before := rec.count()
	_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": f.ws + "/notes.md"}})
	wantBusy(t, err)
	if n := rec.count() - before; n != 1 {
		t.Fatalf("%d records for one overloaded call; want 1", n)
	}
	if last, _ := rec.last(); last.d.Allow || !slices.Contains(last.d.Reasons, engine.ReasonOverloaded) || last.in.Tool.Name != "read_file" {
		t.Errorf("record allow %v reasons %v tool %q; want the overloaded deny of read_file", last.d.Allow, last.d.Reasons, last.in.Tool.Name)
	}
	text, isErr := callText(t, cs, "write_file", map[string]any{"path": f.ws + "/x.md", "content": "x"})
	if !isErr || !contains(text, ReasonReadOnly) {
		t.Errorf("read-only write answered %q (isError %v); want the plain %s denial", text, isErr, ReasonReadOnly)
	}
	// A call that cannot be read could never run: its cut decision is
	// recorded, and it is answered with Go's reason, not as busy.
	before = rec.count()
	text, isErr = callText(t, cs, "read_file", map[string]any{"Path": f.ws + "/notes.md"})
	if !isErr || !contains(text, "denied: "+ReasonInvalidArguments) || contains(text, engine.ReasonOverloaded) {
		t.Errorf("unreadable call answered %q (isError %v); want the plain %s denial", text, isErr, ReasonInvalidArguments)
	}
	if n := rec.count() - before; n != 1 {
		t.Errorf("%d records for one unreadable call; want 1", n)
	}
}

// The agent's toolbox reports a busy listing and a busy call as
// *agent.BusyError, never as "no tool named" or as a tool result.
func TestAgentToolboxSaysBusy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tools []string
	}{
		{"listing", []string{"read_file"}},
		{"call", []string{"write_file"}}, // listed, then the call is cut
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			rec := &recorder{}
			set := map[string]bool{}
			for _, n := range tc.tools {
				set[n] = true
			}
			p, err := New(context.Background(), Options{Decider: callOnly{overloaded{newEngine(t, rec), set}, tc.name == "call"}, Vault: f.vault, Builtin: true})
			must(t, err)
			t.Cleanup(func() { p.Close() })
			s, err := p.NewSession(context.Background(), SessionOptions{
				Facts: func() engine.SessionFacts { return facts(false) }, ClientRoot: "/workspace",
			})
			must(t, err)
			t.Cleanup(func() { s.Close() })
			tb, err := agent.ConnectTools(context.Background(), serveUnix(t, s.Handler()))
			must(t, err)
			t.Cleanup(func() { tb.Close() })
			_, err = tb.Call(context.Background(), tc.tools[0], []byte(`{"path":"/workspace/notes.md","content":"x"}`))
			var be *agent.BusyError
			if !errors.As(err, &be) || be.RetryAfter != engine.OverloadRetryAfter {
				t.Fatalf("Call error %v; want *agent.BusyError after %s", err, engine.OverloadRetryAfter)
			}
		})
	}
}

// callOnly, when on, overloads only committed decisions (calls), so the
// listing succeeds and the call is cut.
type callOnly struct {
	overloaded
	on bool
}

func (c callOnly) Evaluate(ctx context.Context, in engine.Input) engine.Decision {
	if c.on {
		return c.Engine.Evaluate(ctx, in)
	}
	return c.overloaded.Evaluate(ctx, in)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
