package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/mcpproxy/busy"
)

// BusyError is a listing or call the gateway shed because it is saturated
// (mcpproxy/busy): nothing ran. It ends the turn, whatever the model would
// do next, so the gateway answers the user "busy, try again" instead of a
// reply built on a tool that seemed missing or refused.
type BusyError struct{ RetryAfter time.Duration }

func (e *BusyError) Error() string {
	return fmt.Sprintf("the gateway is busy; try again in %s", e.RetryAfter)
}

// ExitBusy is the agent's exit code when its turn ended on a BusyError
// (EX_TEMPFAIL); the gateway answers it like a message it shed as busy.
const ExitBusy = 75

// asBusy returns a *BusyError if err is the gateway's busy answer.
func asBusy(err error) error {
	if wait, ok := busy.From(err); ok {
		return &BusyError{RetryAfter: wait}
	}
	return nil
}

// MaxToolOutputBytes bounds what one tool result contributes to the
// conversation; the rest is cut with a note.
const MaxToolOutputBytes = 64 << 10

// Tool is a tool the gateway offers this session.
type Tool struct {
	Name        string
	Description string
	Schema      json.RawMessage // JSON Schema of the arguments (an object)
}

// ToolResult is a tool call's outcome as the model will read it.
type ToolResult struct {
	Text    string
	IsError bool // the tool or the gateway's policy refused or failed
}

// Toolbox is the MCP client session to the gateway's /mcp endpoint.
type Toolbox struct {
	session *mcp.ClientSession
	tools   map[string]Tool
	order   []Tool
}

// ConnectTools opens an MCP session on the socket's /mcp endpoint.
func ConnectTools(ctx context.Context, client *http.Client) (*Toolbox, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "parachute-agent", Version: "1"}, nil)
	session, err := c.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   BaseURL + "/mcp",
		HTTPClient: client,
		// One short-lived process per turn: no server-initiated stream.
		DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to the gateway's tools (/mcp): %w", err)
	}
	return &Toolbox{session: session}, nil
}

// Close ends the MCP session.
func (tb *Toolbox) Close() error { return tb.session.Close() }

// List returns the tools the gateway offers, in the gateway's order.
func (tb *Toolbox) List(ctx context.Context) ([]Tool, error) {
	if tb.tools != nil {
		return tb.order, nil
	}
	tb.tools = map[string]Tool{}
	for t, err := range tb.session.Tools(ctx, nil) {
		if err != nil {
			tb.tools, tb.order = nil, nil
			if be := asBusy(err); be != nil {
				return nil, be
			}
			return nil, fmt.Errorf("listing the gateway's tools: %w", err)
		}
		schema, err := json.Marshal(t.InputSchema)
		if err != nil || t.InputSchema == nil || string(schema) == "null" {
			schema = json.RawMessage(`{"type":"object"}`)
		}
		tool := Tool{Name: t.Name, Description: t.Description, Schema: schema}
		tb.tools[t.Name] = tool
		tb.order = append(tb.order, tool)
	}
	return tb.order, nil
}

// Call calls a tool. Whatever goes wrong — an unknown tool, bad arguments,
// a policy denial, a protocol error — comes back as an error result for the
// model to read; only a cancelled ctx and the gateway's busy answer (a
// *BusyError, from the listing or the call) are returned as errors.
//
// A tool the gateway did not list for this session is still sent to the
// gateway, which decides and records every call: a tool hidden from the
// session (write_file in read-only mode) is refused with policy's reason
// (read-only-mode), not taken for a tool that does not exist. The model is
// told which tools it has.
func (tb *Toolbox) Call(ctx context.Context, name string, args json.RawMessage) (ToolResult, error) {
	if _, err := tb.List(ctx); err != nil {
		return ToolResult{}, err
	}
	if _, ok := tb.tools[name]; ok {
		res, _, err := tb.call(ctx, name, args)
		return res, err
	}
	available := "available: " + strings.Join(tb.names(), ", ")
	res, unknown, err := tb.call(ctx, name, args)
	switch {
	case err != nil:
		return ToolResult{}, err
	case unknown:
		// The server has no such tool at all (a gateway that refuses it
		// answers with a result, which the model reads below).
		return ToolResult{Text: fmt.Sprintf("no tool named %q; %s", name, available), IsError: true}, nil
	case res.IsError:
		res.Text += "\n(" + available + ")"
	}
	return res, nil
}

// Command calls a tool a user's command names, listed or not: the gateway
// decides it, so a tool hidden from this session (write_file in read-only
// mode) is refused with policy's reason (read-only-mode), not as unknown.
func (tb *Toolbox) Command(ctx context.Context, name string, args json.RawMessage) (ToolResult, error) {
	res, _, err := tb.call(ctx, name, args)
	return res, err
}

// call sends one tools/call; failed reports a protocol-level failure (the
// server answered no result at all).
func (tb *Toolbox) call(ctx context.Context, name string, args json.RawMessage) (res ToolResult, failed bool, err error) {
	var argv map[string]any
	if len(args) > 0 && string(args) != "null" {
		if err := json.Unmarshal(args, &argv); err != nil {
			return ToolResult{Text: fmt.Sprintf("arguments for %s are not a JSON object: %v", name, err), IsError: true}, false, nil
		}
	}
	if argv == nil {
		argv = map[string]any{}
	}
	r, err := tb.session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: argv})
	if err != nil {
		if be := asBusy(err); be != nil {
			return ToolResult{}, false, be
		}
		if ctx.Err() != nil {
			return ToolResult{}, false, fmt.Errorf("calling tool %s: %w", name, ctx.Err())
		}
		return ToolResult{Text: fmt.Sprintf("tool %s failed: %v", name, err), IsError: true}, true, nil
	}
	return ToolResult{Text: resultText(r), IsError: r.IsError}, false, nil
}

func (tb *Toolbox) names() []string {
	names := make([]string, len(tb.order))
	for i, t := range tb.order {
		names[i] = t.Name
	}
	return names
}

// resultText flattens a tool result to text: text blocks verbatim, other
// content named but not inlined, structured content as JSON when there is
// nothing else.
func resultText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		switch c := c.(type) {
		case *mcp.TextContent:
			parts = append(parts, c.Text)
		case *mcp.ImageContent:
			parts = append(parts, fmt.Sprintf("[image %s, %d bytes, not shown]", c.MIMEType, len(c.Data)))
		case *mcp.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio %s, %d bytes, not shown]", c.MIMEType, len(c.Data)))
		case *mcp.ResourceLink:
			parts = append(parts, fmt.Sprintf("[resource %s]", c.URI))
		case *mcp.EmbeddedResource:
			if c.Resource != nil && c.Resource.Text != "" {
				parts = append(parts, c.Resource.Text)
			} else if c.Resource != nil {
				parts = append(parts, fmt.Sprintf("[resource %s, not shown]", c.Resource.URI))
			}
		default:
			parts = append(parts, "[non-text content, not shown]")
		}
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		if b, err := json.Marshal(res.StructuredContent); err == nil {
			parts = append(parts, string(b))
		}
	}
	if len(parts) == 0 {
		return "(no output)"
	}
	return truncate(strings.Join(parts, "\n"), MaxToolOutputBytes)
}

// truncate cuts s to at most n bytes on a UTF-8 boundary, with a note.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("\n[… %d more bytes cut]", len(s)-cut)
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
