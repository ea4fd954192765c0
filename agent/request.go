package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// MaxRequestBytes bounds the turn request read from stdin.
const MaxRequestBytes = 8 << 20

// Providers understood in Request.Model.Provider.
const (
	ProviderNone      = ""
	ProviderOpenAI    = "openai"
	ProviderAnthropic = "anthropic"
)

// DefaultWorkspace is where the session's files are mounted in the sandbox.
const DefaultWorkspace = "/workspace"

// DefaultMaxTokens is used when the request names no max_tokens.
const DefaultMaxTokens = 1024

// Request is the one JSON object the gateway writes to the agent's stdin
// for one turn. Text and History come from chat users and are data only:
// nothing in them changes who the user is or what the agent may do (the
// gateway decides that per call on the socket).
type Request struct {
	SessionID string    `json:"session_id"`
	TurnID    string    `json:"turn_id"`
	Identity  string    `json:"identity"`
	Text      string    `json:"text"`
	History   []Message `json:"history"`
	Model     Model     `json:"model"`
	Workspace string    `json:"workspace"`
}

// Message is one earlier message of the conversation.
type Message struct {
	Role    string `json:"role"` // user or assistant
	Content string `json:"content"`
}

// Model says which model the gateway will let this turn use.
type Model struct {
	Provider  string `json:"provider"` // openai, anthropic, or "" for tools-only
	Name      string `json:"name"`
	MaxTokens int64  `json:"max_tokens"`
}

// DecodeRequest reads exactly one JSON object from r, fills defaults and
// checks it. Unknown fields are ignored so the gateway can add fields
// without breaking older agents.
func DecodeRequest(r io.Reader) (*Request, error) {
	lr := &io.LimitedReader{R: r, N: MaxRequestBytes + 1}
	data, err := io.ReadAll(lr)
	if err != nil {
		return nil, fmt.Errorf("reading the request from stdin: %w", err)
	}
	if len(data) > MaxRequestBytes {
		return nil, fmt.Errorf("request on stdin is larger than %d bytes", MaxRequestBytes)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errors.New("no request on stdin: expected one JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("request on stdin is not a valid JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("request on stdin has data after the JSON object")
	}
	if err := req.check(); err != nil {
		return nil, fmt.Errorf("invalid request: %w", err)
	}
	return &req, nil
}

func (r *Request) check() error {
	if strings.TrimSpace(r.Text) == "" {
		return errors.New(`"text" is empty`)
	}
	for i, m := range r.History {
		if m.Role != "user" && m.Role != "assistant" {
			// No "system" or "tool" from history: those would let stored
			// chat text pose as instructions or tool output.
			return fmt.Errorf(`history[%d].role is %q; want "user" or "assistant"`, i, m.Role)
		}
	}
	switch r.Model.Provider {
	case ProviderNone:
	case ProviderOpenAI, ProviderAnthropic:
		if r.Model.Name == "" {
			return fmt.Errorf(`model.name is empty for provider %q`, r.Model.Provider)
		}
	default:
		return fmt.Errorf(`model.provider is %q; want "openai", "anthropic" or ""`, r.Model.Provider)
	}
	if r.Model.MaxTokens < 0 {
		return fmt.Errorf("model.max_tokens is negative (%d)", r.Model.MaxTokens)
	}
	if r.Model.MaxTokens == 0 {
		r.Model.MaxTokens = DefaultMaxTokens
	}
	if r.Workspace == "" {
		r.Workspace = DefaultWorkspace
	}
	if !path.IsAbs(r.Workspace) {
		return fmt.Errorf("workspace %q is not an absolute path", r.Workspace)
	}
	r.Workspace = path.Clean(r.Workspace)
	return nil
}
