package model

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Request is one request the fake received.
type Request struct {
	Provider string // openai or anthropic
	Path     string
	Header   http.Header
	Body     []byte

	Model     string
	Stream    bool
	MaxTokens int64
	// System is the system prompt (OpenAI: the system messages joined).
	System string
	// Messages are the conversation messages, in order, flattened to text.
	Messages []Message
	// Tools are the tools offered to the model, in order.
	Tools []Tool
	// ToolResults are all tool results in the conversation, in order.
	ToolResults []ToolResult

	outputTokens int64 // reported for the answer; 0 for an error
	answered     bool
}

// Message is a conversation message flattened to its text.
type Message struct {
	Role string
	Text string
}

// Tool is a tool offered to the model.
type Tool struct {
	Name        string
	Description string
	Schema      json.RawMessage // OpenAI parameters / Anthropic input_schema
}

// ToolResult is a tool's output sent back to the model.
type ToolResult struct {
	ID      string // tool_call_id / tool_use_id
	Content string
	IsError bool // Anthropic is_error; always false for OpenAI
}

// ToolNames returns the names of the tools offered.
func (r Request) ToolNames() []string {
	names := make([]string, len(r.Tools))
	for i, t := range r.Tools {
		names[i] = t.Name
	}
	return names
}

// LastUserText returns the text of the last user message.
func (r Request) LastUserText() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" && r.Messages[i].Text != "" {
			return r.Messages[i].Text
		}
	}
	return ""
}

// Credentials returns the credential-bearing headers present, if any.
func (r Request) Credentials() []string {
	var found []string
	for _, h := range []string{"Authorization", "X-Api-Key", "Api-Key", "Proxy-Authorization"} {
		if r.Header.Get(h) != "" {
			found = append(found, h)
		}
	}
	return found
}

type wireRequest struct {
	Model        string            `json:"model"`
	Input        json.RawMessage   `json:"input"`        // Responses
	Instructions string            `json:"instructions"` // Responses
	Stream       bool              `json:"stream"`
	MaxTokens    int64             `json:"max_tokens"`
	System       json.RawMessage   `json:"system"`
	Messages     []json.RawMessage `json:"messages"`
	Tools        []json.RawMessage `json:"tools"`
}

func (r *Request) parse() error {
	var w wireRequest
	if err := json.Unmarshal(r.Body, &w); err != nil {
		return fmt.Errorf("body is not a JSON object: %w", err)
	}
	if w.Model == "" {
		return fmt.Errorf("model is required")
	}
	r.Model, r.Stream, r.MaxTokens = w.Model, w.Stream, w.MaxTokens
	if r.Provider == "anthropic" {
		if w.MaxTokens <= 0 {
			return fmt.Errorf("max_tokens is required")
		}
		r.System = blocksText(w.System)
	}
	if r.Provider == "openai-responses" {
		if err := r.parseInput(w.Instructions, w.Input); err != nil {
			return err
		}
	}
	for _, raw := range w.Messages {
		if err := r.parseMessage(raw); err != nil {
			return err
		}
	}
	for _, raw := range w.Tools {
		var t struct {
			Type     string `json:"type"`
			Function *struct {
				Name        string          `json:"name"`
				Description string          `json:"description"`
				Parameters  json.RawMessage `json:"parameters"`
			} `json:"function"`
			Name        string          `json:"name"`
			Description string          `json:"description"`
			InputSchema json.RawMessage `json:"input_schema"`
			Parameters  json.RawMessage `json:"parameters"` // Responses
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			return fmt.Errorf("tool is not an object: %w", err)
		}
		switch {
		case r.Provider == "openai" && t.Function != nil && t.Type == "function":
			r.Tools = append(r.Tools, Tool{t.Function.Name, t.Function.Description, t.Function.Parameters})
		case r.Provider == "anthropic" && t.Name != "" && len(t.InputSchema) > 0:
			r.Tools = append(r.Tools, Tool{t.Name, t.Description, t.InputSchema})
		case r.Provider == "openai-responses" && t.Type == "function" && t.Name != "":
			r.Tools = append(r.Tools, Tool{t.Name, t.Description, t.Parameters})
		case r.Provider == "openai-responses" && t.Type == "namespace":
			// Codex's MCP tools: a namespace of functions, recorded as
			// "namespace/function" (a call to "namespace__function" is
			// answered in the namespace).
			var ns struct {
				Tools []struct {
					Name        string          `json:"name"`
					Description string          `json:"description"`
					Parameters  json.RawMessage `json:"parameters"`
				} `json:"tools"`
			}
			_ = json.Unmarshal(raw, &ns)
			for _, f := range ns.Tools {
				r.Tools = append(r.Tools, Tool{t.Name + "/" + f.Name, f.Description, f.Parameters})
			}
		case r.Provider == "openai-responses":
			// Codex's other tool kinds (custom, …): offered, not scripted;
			// recorded by type.
			r.Tools = append(r.Tools, Tool{Name: t.Type + ":" + t.Name})
		default:
			return fmt.Errorf("tool %s is not in the %s format", raw, r.Provider)
		}
	}
	return nil
}

func (r *Request) parseMessage(raw json.RawMessage) error {
	var m struct {
		Role       string          `json:"role"`
		Content    json.RawMessage `json:"content"`
		ToolCallID string          `json:"tool_call_id"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("message is not an object: %w", err)
	}
	switch {
	case r.Provider == "openai" && m.Role == "system":
		r.System = strings.TrimPrefix(r.System+"\n"+blocksText(m.Content), "\n")
		return nil
	case r.Provider == "openai" && m.Role == "tool":
		if m.ToolCallID == "" {
			return fmt.Errorf("tool message without tool_call_id")
		}
		r.ToolResults = append(r.ToolResults, ToolResult{ID: m.ToolCallID, Content: blocksText(m.Content)})
	case r.Provider == "anthropic" && m.Role == "system":
		// Claude Code sends system messages inside messages (its
		// environment notes); they join the system prompt.
		r.System = strings.TrimPrefix(r.System+"\n"+blocksText(m.Content), "\n")
		return nil
	case r.Provider == "anthropic":
		if m.Role != "user" && m.Role != "assistant" {
			return fmt.Errorf("anthropic message role %q is not user or assistant", m.Role)
		}
		var blocks []struct {
			Type      string          `json:"type"`
			ToolUseID string          `json:"tool_use_id"`
			Content   json.RawMessage `json:"content"`
			IsError   bool            `json:"is_error"`
		}
		if json.Unmarshal(m.Content, &blocks) == nil {
			for _, b := range blocks {
				if b.Type == "tool_result" {
					r.ToolResults = append(r.ToolResults, ToolResult{ID: b.ToolUseID, Content: blocksText(b.Content), IsError: b.IsError})
				}
			}
		}
	}
	r.Messages = append(r.Messages, Message{Role: m.Role, Text: blocksText(m.Content)})
	return nil
}

// blocksText flattens a string or a list of text blocks to text.
func blocksText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &blocks) != nil {
		return ""
	}
	var parts []string
	for _, b := range blocks {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// parseInput reads a Responses request's instructions and input (a string,
// or a list of message, function_call and function_call_output items).
func (r *Request) parseInput(instructions string, raw json.RawMessage) error {
	r.System = instructions
	var text string
	if json.Unmarshal(raw, &text) == nil {
		r.Messages = append(r.Messages, Message{Role: "user", Text: text})
		return nil
	}
	var items []struct {
		Type    string          `json:"type"`
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
		CallID  string          `json:"call_id"`
		Output  json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		return fmt.Errorf("input is not a string or a list of items: %w", err)
	}
	for _, it := range items {
		switch {
		case it.Type == "function_call_output":
			if it.CallID == "" {
				return fmt.Errorf("function_call_output without call_id")
			}
			r.ToolResults = append(r.ToolResults, ToolResult{ID: it.CallID, Content: inputText(it.Output)})
		case it.Type == "message" || (it.Type == "" && it.Role != ""):
			t := inputText(it.Content)
			if it.Role == "developer" || it.Role == "system" {
				r.System = strings.TrimPrefix(r.System+"\n"+t, "\n")
				continue
			}
			r.Messages = append(r.Messages, Message{Role: it.Role, Text: t})
		}
	}
	return nil
}

// inputText flattens Responses content (a string or input_text /
// output_text parts) to text.
func inputText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	var out []string
	for _, p := range parts {
		if p.Type == "input_text" || p.Type == "output_text" || p.Type == "text" {
			out = append(out, p.Text)
		}
	}
	return strings.Join(out, "\n")
}
