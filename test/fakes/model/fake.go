// Package model is a scripted fake of the two model APIs the gateway
// proxies: OpenAI-compatible POST /v1/chat/completions and Anthropic
// POST /v1/messages. It is an http.Handler, so a test mounts it wherever the
// real API would be (behind modelproxy as the upstream, or directly on a
// session socket's mux).
//
// A Script is a list of Steps, one per request: answer with text, with one
// or more tool calls, or with an HTTP error in the provider's format. An
// Anthropic request with "stream": true gets the same answer as
// server-sent events (message_start, a content block per text or tool_use
// with its deltas, message_delta with the usage, message_stop), as Claude
// Code asks for it; a Responses request (Codex) gets a response object, or
// with "stream": true its events (response.created, output items with
// their deltas, response.completed with the usage). Every
// request is recorded with its headers and the parts tests care about (tool
// names offered, tool results sent back), so a test can assert that no
// credential reached the model, that tool output came back, and so on.
// Responses carry usage token counts like the real APIs.
package model

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// Paths served.
const (
	OpenAIPath    = "/v1/chat/completions"
	AnthropicPath = "/v1/messages"
	// ResponsesPath is the OpenAI Responses API (Codex); its requests are
	// recorded with Provider "openai-responses".
	ResponsesPath = "/v1/responses"
)

// Step is one scripted answer. Exactly one of Text, ToolCalls or Status is
// meant to be set; ToolCalls wins over Text, Status over both.
type Step struct {
	Text      string
	ToolCalls []ToolCall
	// Status, when not 0, answers with this HTTP status and Error as the
	// provider's error message.
	Status int
	Error  string
}

// ToolCall is a tool the model asks for.
type ToolCall struct {
	Name string
	Args map[string]any
}

// Reply returns a step answering with text.
func Reply(text string) Step { return Step{Text: text} }

// Call returns a step asking for one tool call.
func Call(name string, args map[string]any) Step {
	return Step{ToolCalls: []ToolCall{{Name: name, Args: args}}}
}

// Fail returns a step answering with an HTTP error.
func Fail(status int, message string) Step { return Step{Status: status, Error: message} }

// Script is what the fake answers, in order.
type Script struct {
	Steps []Step
	// RepeatLast answers every request past the end with the last step;
	// otherwise such a request gets HTTP 500 "script exhausted".
	RepeatLast bool
}

// Fake is the scripted model server. Safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	script Script
	reqs   []Request
}

// New returns a fake that answers with script.
func New(script Script) *Fake { return &Fake{script: script} }

// Requests returns a copy of the requests received so far, in order.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.reqs...)
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var provider string
	switch r.URL.Path {
	case OpenAIPath:
		provider = "openai"
	case AnthropicPath:
		provider = "anthropic"
	case ResponsesPath:
		provider = "openai-responses"
	default:
		writeError(w, "openai", http.StatusNotFound, "fake model: no route "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, provider, http.StatusMethodNotAllowed, "fake model: POST only")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err != nil {
		writeError(w, provider, http.StatusBadRequest, "fake model: unreadable body")
		return
	}
	req := Request{Provider: provider, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	if err := req.parse(); err != nil {
		f.record(req)
		writeError(w, provider, http.StatusBadRequest, "fake model: "+err.Error())
		return
	}
	n, step, ok := f.next(req)
	switch {
	case !ok:
		writeError(w, provider, http.StatusInternalServerError, fmt.Sprintf("fake model: script exhausted after %d requests", n-1))
	case step.Status != 0:
		writeError(w, provider, step.Status, step.Error)
	case req.Stream && provider == "anthropic":
		streamAnthropic(w, respond(provider, n, req, step).(map[string]any))
	case req.Stream && provider == "openai-responses":
		streamResponses(w, respond(provider, n, req, step).(map[string]any))
	case req.Stream:
		writeError(w, provider, http.StatusBadRequest, "fake model: OpenAI chat streaming is not scripted")
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(respond(provider, n, req, step))
	}
}

// record appends req and returns its 1-based number.
func (f *Fake) record(req Request) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	return len(f.reqs)
}

// next records req and picks its step.
func (f *Fake) next(req Request) (int, Step, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	n := len(f.reqs)
	steps := f.script.Steps
	var step Step
	switch {
	case n <= len(steps):
		step = steps[n-1]
	case f.script.RepeatLast && len(steps) > 0:
		step = steps[len(steps)-1]
	default:
		return n, Step{}, false
	}
	if step.Status == 0 {
		f.reqs[n-1].answered = true
		f.reqs[n-1].outputTokens = outputTokens(step)
	}
	return n, step, true
}

// writeError answers in the provider's error format.
func writeError(w http.ResponseWriter, provider string, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	var v any
	if provider == "anthropic" {
		v = map[string]any{"type": "error", "error": map[string]string{"type": "api_error", "message": msg}}
	} else {
		v = map[string]any{"error": map[string]string{"type": "api_error", "message": msg}}
	}
	_ = json.NewEncoder(w).Encode(v)
}
