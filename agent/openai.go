package agent

import (
	"context"
	"encoding/json"
	"net/http"
)

// OpenAIPath is the OpenAI-compatible route on the session socket.
const OpenAIPath = "/v1/chat/completions"

type oaMessage struct {
	Role       string       `json:"role"`
	Content    *string      `json:"content"`
	ToolCalls  []oaToolCall `json:"tool_calls,omitempty"`
	ToolCallID string       `json:"tool_call_id,omitempty"`
}

type oaToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaTool struct {
	Type     string     `json:"type"`
	Function oaFunction `json:"function"`
}

type oaFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

type oaRequest struct {
	Model     string      `json:"model"`
	Messages  []oaMessage `json:"messages"`
	Tools     []oaTool    `json:"tools,omitempty"`
	MaxTokens int64       `json:"max_tokens,omitempty"`
}

type oaResponse struct {
	Choices []struct {
		Message      oaMessage `json:"message"`
		FinishReason string    `json:"finish_reason"`
	} `json:"choices"`
}

// openAIConversation speaks the chat completions API, non-streaming.
type openAIConversation struct {
	client *http.Client
	req    oaRequest
}

func newOpenAI(client *http.Client, r *Request, tools []Tool) *openAIConversation {
	c := &openAIConversation{client: client}
	c.req.Model = r.Model.Name
	c.req.MaxTokens = r.Model.MaxTokens
	for _, t := range tools {
		c.req.Tools = append(c.req.Tools, oaTool{Type: "function", Function: oaFunction{Name: t.Name, Description: t.Description, Parameters: t.Schema}})
	}
	c.add("system", systemPrompt(r))
	for _, m := range r.History {
		if m.Content != "" {
			c.add(m.Role, m.Content)
		}
	}
	c.add("user", r.Text)
	return c
}

func (c *openAIConversation) add(role, text string) {
	c.req.Messages = append(c.req.Messages, oaMessage{Role: role, Content: &text})
}

func (c *openAIConversation) ask(ctx context.Context) (string, []toolCall, error) {
	var resp oaResponse
	if err := postJSON(ctx, c.client, OpenAIPath, nil, c.req, &resp); err != nil {
		return "", nil, err
	}
	if len(resp.Choices) == 0 {
		return "", nil, errModelNoAnswer
	}
	msg := resp.Choices[0].Message
	msg.Role = "assistant"
	c.req.Messages = append(c.req.Messages, msg)
	var calls []toolCall
	for _, tc := range msg.ToolCalls {
		calls = append(calls, toolCall{ID: tc.ID, Name: tc.Function.Name, Args: json.RawMessage(tc.Function.Arguments)})
	}
	text := ""
	if msg.Content != nil {
		text = *msg.Content
	}
	return text, calls, nil
}

// answer adds one role "tool" message per call. The chat completions API
// has no error flag, so an error result is marked in its text.
func (c *openAIConversation) answer(calls []toolCall, results []ToolResult) {
	for i, call := range calls {
		text := results[i].Text
		if results[i].IsError {
			text = "tool error: " + text
		}
		c.req.Messages = append(c.req.Messages, oaMessage{Role: "tool", Content: &text, ToolCallID: call.ID})
	}
}
