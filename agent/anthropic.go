package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// AnthropicPath is the Anthropic Messages route on the session socket.
const AnthropicPath = "/v1/messages"

// AnthropicVersion is the API version header sent. There is no x-api-key:
// the gateway adds it.
const AnthropicVersion = "2023-06-01"

type anMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"` // string or []block
}

type anTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anRequest struct {
	Model     string      `json:"model"`
	MaxTokens int64       `json:"max_tokens"`
	System    string      `json:"system,omitempty"`
	Messages  []anMessage `json:"messages"`
	Tools     []anTool    `json:"tools,omitempty"`
}

type anToolResult struct {
	Type      string `json:"type"`
	ToolUseID string `json:"tool_use_id"`
	Content   string `json:"content"`
	IsError   bool   `json:"is_error,omitempty"`
}

type anResponse struct {
	Content    []json.RawMessage `json:"content"`
	StopReason string            `json:"stop_reason"`
}

type anBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// anthropicConversation speaks the Messages API, non-streaming.
type anthropicConversation struct {
	client *http.Client
	req    anRequest
}

func newAnthropic(client *http.Client, r *Request, tools []Tool) *anthropicConversation {
	c := &anthropicConversation{client: client}
	c.req.Model = r.Model.Name
	c.req.MaxTokens = r.Model.MaxTokens
	c.req.System = systemPrompt(r)
	for _, t := range tools {
		c.req.Tools = append(c.req.Tools, anTool{Name: t.Name, Description: t.Description, InputSchema: t.Schema})
	}
	// The Messages API wants user and assistant to alternate: runs of one
	// role are joined into one message.
	msgs := append(append([]Message(nil), r.History...), Message{Role: "user", Content: r.Text})
	for _, m := range msgs {
		if m.Content == "" {
			continue
		}
		if n := len(c.req.Messages); n > 0 && c.req.Messages[n-1].Role == m.Role {
			c.req.Messages[n-1].Content = c.req.Messages[n-1].Content.(string) + "\n\n" + m.Content
			continue
		}
		c.req.Messages = append(c.req.Messages, anMessage{Role: m.Role, Content: m.Content})
	}
	return c
}

func (c *anthropicConversation) ask(ctx context.Context) (string, []toolCall, error) {
	var resp anResponse
	headers := map[string]string{"anthropic-version": AnthropicVersion}
	if err := postJSON(ctx, c.client, AnthropicPath, headers, c.req, &resp); err != nil {
		return "", nil, err
	}
	if len(resp.Content) == 0 && resp.StopReason == "" {
		return "", nil, errModelNoAnswer
	}
	// The assistant's blocks go back verbatim, as the API requires for
	// tool_use to be paired with tool_result.
	c.req.Messages = append(c.req.Messages, anMessage{Role: "assistant", Content: resp.Content})
	var texts []string
	var calls []toolCall
	for _, raw := range resp.Content {
		var b anBlock
		if json.Unmarshal(raw, &b) != nil {
			continue
		}
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "tool_use":
			calls = append(calls, toolCall{ID: b.ID, Name: b.Name, Args: b.Input})
		}
	}
	return strings.Join(texts, "\n"), calls, nil
}

// answer adds one user message holding a tool_result block per call.
func (c *anthropicConversation) answer(calls []toolCall, results []ToolResult) {
	blocks := make([]anToolResult, len(calls))
	for i, call := range calls {
		blocks[i] = anToolResult{Type: "tool_result", ToolUseID: call.ID, Content: results[i].Text, IsError: results[i].IsError}
	}
	c.req.Messages = append(c.req.Messages, anMessage{Role: "user", Content: blocks})
}
