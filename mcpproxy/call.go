package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/internal/strictjson"
	"github.com/parachute-gateway/parachute/mcpproxy/busy"
	"github.com/parachute-gateway/parachute/mcpproxy/pathguard"
)

// Reasons for calls that cannot be read at all. Such a call is still
// decided (policy refuses it with this reason) so that it is recorded.
const (
	// ReasonInvalidArguments: the arguments are not one strict JSON object
	// (case-variant or duplicate names, invalid UTF-8, …) or name an
	// argument the tool's input schema does not declare.
	ReasonInvalidArguments = "invalid-arguments"
	// ReasonNoSuchTool: the catalog has no tool of that name.
	ReasonNoSuchTool = "no-such-tool"
	// ReasonProtocolError: the intake refused the message itself.
	ReasonProtocolError = "protocol-error"
)

// handler is the tools/call handler of one catalog entry.
func (s *Session) handler(e *entry) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, wait := s.call(ctx, e, req.Params.Arguments)
		if wait > 0 {
			return nil, busy.Error(wait)
		}
		return res, nil
	}
}

// call decides and, if allowed, forwards one tool call. It returns a
// result (a denial or an upstream failure is a result with IsError set),
// or, for a call whose decision missed the engine's deadline (overloaded),
// no result and how long the client should wait: the handler answers it as
// busy (mcpproxy/busy), never as a denial the agent would pass on as policy.
//
// The arguments are read once, strictly (internal/strictjson), and must be
// declared by the tool's input schema, names compared exactly; the tool is
// handed a re-encoding of exactly the values policy decided on.
func (s *Session) call(ctx context.Context, e *entry, raw json.RawMessage) (*mcp.CallToolResult, time.Duration) {
	tool := e.facts()
	args, err := decodeArgs(raw)
	if err == nil {
		err = e.checkDeclared(args)
	}
	if err != nil {
		return s.refuse(ctx, tool, ReasonInvalidArguments, err.Error()), 0
	}
	approved, unapproved := s.p.approval(e)
	tool.Changed, tool.Unapproved = !approved && !unapproved, unapproved
	paths := s.resolveArgs(e, args)
	in := engine.ToolInput{
		Session: s.facts(),
		Tool:    tool,
		Paths:   make([]engine.PathFacts, len(paths)),
	}
	for i, p := range paths {
		in.Paths[i] = p.path.Facts
	}
	// The decision is made (and recorded) for a changed tool too, so the
	// refusal is in the audit log; the pin check below holds whatever the
	// policy says.
	d := s.p.opts.Decider.Decide(ctx, in)
	if tool.Changed {
		return denied([]string{ReasonToolChanged}, fmt.Sprintf(
			"the definition of %s changed since it was approved; an operator must run `parachute mcp approve %s`", e.key, e.key)), 0
	}
	if !d.Allow && slices.Contains(d.Reasons, engine.ReasonOverloaded) {
		return nil, max(d.RetryAfter, time.Second)
	}
	if !d.Allow {
		return denied(d.Reasons, replyFor(&d)), 0
	}
	for _, p := range paths {
		if err := p.rewrite(args, s.hostView(e, p.path)); err != nil {
			return denied([]string{"invalid-path"}, err.Error()), 0
		}
	}
	res, err := s.forward(ctx, e, args)
	if err != nil {
		return errResult("error: " + err.Error()), 0
	}
	return s.clientView(res, s.upstreamRoot(e)), 0
}

// denied is the result of a refused call: one line naming the reasons and,
// if there is one, the reply for the user.
func denied(reasons []string, reply string) *mcp.CallToolResult {
	text := "denied: " + strings.Join(reasons, ", ")
	if reply != "" {
		text += " — " + reply
	}
	return errResult(text)
}

func errResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}

// decodeArgs reads the arguments as one strict JSON object, keeping numbers
// as written. Absent arguments are an empty object.
func decodeArgs(raw json.RawMessage) (map[string]any, error) {
	args, err := strictjson.Object(raw)
	if err != nil {
		return nil, fmt.Errorf("arguments must be one JSON object with each member once, exactly as the tool's schema names it: %w", err)
	}
	return args, nil
}

// checkDeclared refuses an argument the tool's input schema does not
// declare: only declared arguments are classified (paths among them), so an
// undeclared one would reach the tool unchecked.
func (e *entry) checkDeclared(args map[string]any) error {
	var extra []string
	for name := range args {
		if !e.declared[name] {
			extra = append(extra, strconv.Quote(name))
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	return fmt.Errorf("%s does not declare the argument(s) %s", e.def.Name, strings.Join(extra, ", "))
}

// argPath is one resolved path argument and where it sits in the arguments.
type argPath struct {
	name  string // argument name
	index int    // position in an array argument, or -1
	path  pathguard.Path
}

// rewrite replaces the argument's value with v.
func (a argPath) rewrite(args map[string]any, v string) error {
	if a.index < 0 {
		args[a.name] = v
		return nil
	}
	list, ok := args[a.name].([]any)
	if !ok || a.index >= len(list) {
		return fmt.Errorf("argument %s changed while it was being resolved", a.name)
	}
	list[a.index] = v
	return nil
}

// resolveArgs resolves every path argument the call carries, in argument
// name order. A path argument that is not a string (or an array of strings)
// becomes a path fact with an error, which policy refuses.
func (s *Session) resolveArgs(e *entry, args map[string]any) []argPath {
	access := engine.AccessRead
	if e.access != engine.AccessRead {
		// Writes, exec and unknown tools may change what they touch.
		access = engine.AccessWrite
	}
	names := make([]string, 0, len(args))
	for name := range args {
		if e.pathArgs[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out []argPath
	for _, name := range names {
		switch v := args[name].(type) {
		case string:
			out = append(out, argPath{name: name, index: -1, path: s.guard.Resolve(name, v, access)})
		case []any:
			for i, item := range v {
				arg := fmt.Sprintf("%s[%d]", name, i)
				str, ok := item.(string)
				if !ok {
					out = append(out, argPath{name: name, index: i, path: badPath(arg, item, access)})
					continue
				}
				out = append(out, argPath{name: name, index: i, path: s.guard.Resolve(arg, str, access)})
			}
		default:
			out = append(out, argPath{name: name, index: -1, path: badPath(name, v, access)})
		}
	}
	return out
}

func badPath(arg string, v any, access string) pathguard.Path {
	raw, _ := json.Marshal(v)
	return pathguard.Path{Facts: engine.PathFacts{Arg: arg, Raw: string(raw), Access: access,
		Error: "path argument is not a string"}}
}

// hostView is the path an upstream is given: the built-in server works
// relative to the workspace root, a sandboxed upstream sees the workspace
// at SandboxWorkspace, and an on-host or HTTP upstream gets the resolved
// absolute host path.
func (s *Session) hostView(e *entry, p pathguard.Path) string {
	switch {
	case e.remote == nil:
		return p.Rel
	case e.remote.up.sandboxed():
		return path.Join(SandboxWorkspace, p.Rel)
	}
	return p.Host
}

// upstreamRoot is how the upstream of e names the workspace folder in its
// results.
func (s *Session) upstreamRoot(e *entry) string {
	if e.remote != nil && e.remote.up.sandboxed() {
		return SandboxWorkspace
	}
	return s.guard.HostRoot()
}

func (s *Session) forward(ctx context.Context, e *entry, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.p.opts.CallTimeout)
	defer cancel()
	if e.remote != nil {
		r, err := s.remoteFor(ctx, e)
		if err != nil {
			return nil, err
		}
		return r.call(ctx, e.def.Name, args)
	}
	if s.vault == nil {
		return nil, errors.New("the built-in tools are not served")
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	return s.vault.Call(ctx, e.def.Name, raw)
}

// clientView replaces the upstream's name for the workspace folder in text
// results with the client's, so a sandboxed agent sees /workspace paths and
// a direct one host paths.
func (s *Session) clientView(res *mcp.CallToolResult, host string) *mcp.CallToolResult {
	if s.client == "" || s.client == host {
		return res
	}
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			t.Text = strings.ReplaceAll(t.Text, host, s.client)
		}
	}
	return res
}
