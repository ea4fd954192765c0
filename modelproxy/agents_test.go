package modelproxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/parachute-gateway/parachute/engine"
)

// claudeCodeBody is the shape of what Claude Code 2.1.332 sends (captured
// from the real CLI against a fake, texts shortened): every top-level
// field it uses, a system message inside messages, a deferred tool.
const claudeCodeBody = `{"model":"m","max_tokens":32000,"stream":true,
 "system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.332"},{"type":"text","text":"You are a Claude agent.","cache_control":{"type":"ephemeral"}}],
 "messages":[{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"system","content":[{"type":"text","text":"# Environment"}]}],
 "tools":[{"name":"mcp__parachute__read_file","description":"d","input_schema":{"type":"object"}},{"name":"DeferredToolPlaceholder","description":"d","input_schema":{"type":"object"},"defer_loading":true}],
 "metadata":{"user_id":"{\"device_id\":\"abc\"}"},
 "thinking":{"type":"adaptive","display":"updates"},
 "context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},
 "output_config":{"effort":"high"}}`

// claudeCodeBetas are the anthropic-beta values Claude Code sends with
// CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1 (the adapter sets it).
const claudeCodeBetas = "claude-code-20250219,interleaved-thinking-2025-05-14,effort-2025-11-24"

// Claude Code's requests are served as it sends them: the ?beta=true
// query, its betas, its fields; each decided (betas named) and counted.
// Any other query string is refused: it would be a parameter nobody
// decided on.
func TestClaudeCodeRequests(t *testing.T) {
	tests := []struct {
		name, path, betas string
		wantCode          int
		wantMsg           string
	}{
		{"as Claude Code sends it", "/v1/messages?beta=true", claudeCodeBetas, 200, ""},
		{"without the query", "/v1/messages", claudeCodeBetas, 200, ""},
		{"another query parameter", "/v1/messages?beta=true&x=1", claudeCodeBetas, 400, `query "beta=true&x=1"`},
		{"a case variant of the query", "/v1/messages?BETA=true", claudeCodeBetas, 400, `query "BETA=true"`},
		{"a network beta beside them", "/v1/messages?beta=true", claudeCodeBetas + ",web-fetch-2025-09-10", 403, "web-fetch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var decided []engine.ModelInput
			rec := engine.RecorderFunc(func(_ context.Context, in engine.Input, _ *engine.Decision) error {
				if m, ok := in.(engine.ModelInput); ok {
					mu.Lock()
					decided = append(decided, m)
					mu.Unlock()
				}
				return nil
			})
			up := &recordingUpstream{answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for _, ev := range []string{
					`{"type":"message_start","message":{"usage":{"input_tokens":40,"output_tokens":1}}}`,
					`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}`,
					`{"type":"message_delta","usage":{"output_tokens":7}}`,
					`{"type":"message_stop"}`,
				} {
					_, _ = w.Write([]byte("data: " + ev + "\n\n"))
				}
			}}
			usage := &MemoryUsage{}
			p := proxyTo(t, Anthropic, up, engineWith(t, nil, rec), usage, session("member"))
			w := send(p, tt.path, claudeCodeBody, map[string]string{"anthropic-beta": tt.betas, "anthropic-version": "2023-06-01",
				"x-api-key": "sk-placeholder", "X-Claude-Code-Session-Id": "abc"})
			if w.Code != tt.wantCode || !strings.Contains(errMessage(w), tt.wantMsg) {
				t.Fatalf("status %d body %s; want %d naming %q", w.Code, w.Body, tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode == 400 {
				if up.count() != 0 || len(decided) != 0 {
					t.Fatal("a refused request was decided or sent")
				}
				return
			}
			if len(decided) != 1 || strings.Join(decided[0].Betas, ",") != tt.betas {
				t.Fatalf("decided %+v; want one decision naming betas %s", decided, tt.betas)
			}
			if tt.wantCode != 200 {
				return
			}
			h := up.heads[0]
			if h.Get("x-api-key") != testKey || h.Get("X-Claude-Code-Session-Id") != "" || h.Get("anthropic-beta") != tt.betas {
				t.Fatalf("upstream headers %v", h)
			}
			if got := up.bodies[0]["output_config"]; got == nil {
				t.Fatal("output_config was not forwarded")
			}
			if n, _ := usage.TokensToday(context.Background(), "telegram:1"); n != 47 {
				t.Fatalf("tokens counted %d; want the stream's 40+7", n)
			}
		})
	}
}

// codexBody is the shape of what Codex 0.169.1 sends to /v1/responses
// (captured from the real CLI against a fake; texts shortened).
const codexBody = `{"model":"m","stream":true,"store":false,"tool_choice":"auto","parallel_tool_calls":true,
 "reasoning":{"summary":"auto"},"include":["reasoning.encrypted_content"],"prompt_cache_key":"01a2",
 "client_metadata":{"thread_id":"01a2"},
 "input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"You are Codex."}]},{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}],
 "tools":[{"type":"function","name":"mcp__parachute__read_file","description":"d","strict":false,"parameters":{"type":"object"}}]}`

// The OpenAI Responses API is served beside Chat Completions: Codex's
// request as it sends it is decided and counted (the stream's
// response.completed usage); server-side state (previous_response_id,
// conversation, stored prompts, background runs) and provider-side tools
// are refused or decided like everywhere else.
func TestResponsesAPI(t *testing.T) {
	tests := []struct {
		name, body string
		wantCode   int
		wantMsg    string
		wantTools  []string
	}{
		{"as Codex sends it", codexBody, 200, "", nil},
		{"previous_response_id", `{"model":"m","input":"hi","previous_response_id":"resp_other_user"}`, 400, `"previous_response_id"`, nil},
		{"conversation", `{"model":"m","input":"hi","conversation":"conv_1"}`, 400, `"conversation"`, nil},
		{"background", `{"model":"m","input":"hi","background":true}`, 400, `"background"`, nil},
		{"chat field on responses", `{"model":"m","input":"hi","messages":[]}`, 400, `"messages"`, nil},
		{"case variant", `{"model":"m","input":"hi","Max_Output_Tokens":5}`, 400, "case variant", nil},
		{"web search, no network", `{"model":"m","input":"hi","tools":[{"type":"web_search"}]}`, 403, "", []string{"web_search"}},
		{"Codex's MCP namespace", `{"model":"m","input":"hi","tools":[{"type":"namespace","name":"mcp__parachute","tools":[{"type":"function","name":"read_file","parameters":{}}]}]}`, 200, "", nil},
		{"a provider tool inside a namespace", `{"model":"m","input":"hi","tools":[{"type":"namespace","name":"x","tools":[{"type":"function","name":"f"},{"type":"web_search"}]}]}`, 403, "", []string{"web_search"}},
		{"case-variant type inside a namespace", `{"model":"m","input":"hi","tools":[{"type":"namespace","name":"x","tools":[{"type":"function","Type":"web_search"}]}]}`, 400, "case variant", nil},
		{"image by URL", `{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"http://169.254.169.254/"}]}]}`, 403, "", []string{ToolURLSource}},
		{"file by URL", `{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_url":"https://x.test/a.pdf"}]}]}`, 403, "", []string{ToolURLSource}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var decided []engine.ModelInput
			rec := engine.RecorderFunc(func(_ context.Context, in engine.Input, _ *engine.Decision) error {
				if m, ok := in.(engine.ModelInput); ok {
					mu.Lock()
					decided = append(decided, m)
					mu.Unlock()
				}
				return nil
			})
			up := &recordingUpstream{answer: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/responses" {
					http.Error(w, "wrong path "+r.URL.Path, 404)
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				for _, ev := range []string{
					`{"type":"response.created","response":{"id":"r1","status":"in_progress","output":[]}}`,
					`{"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":"hi"}`,
					`{"type":"response.completed","response":{"id":"r1","status":"completed","output":[],"usage":{"input_tokens":30,"output_tokens":9,"total_tokens":39}}}`,
				} {
					_, _ = w.Write([]byte("event: x\ndata: " + ev + "\n\n"))
				}
			}}
			usage := &MemoryUsage{}
			p := proxyTo(t, OpenAI, up, engineWith(t, nil, rec), usage, session("member"))
			w := send(p, "/v1/responses", tt.body, map[string]string{"Authorization": "Bearer sk-placeholder"})
			if w.Code != tt.wantCode || !strings.Contains(errMessage(w), tt.wantMsg) {
				t.Fatalf("status %d body %s; want %d naming %q", w.Code, w.Body, tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode == 400 {
				if up.count() != 0 || len(decided) != 0 {
					t.Fatal("a refused request was decided or sent")
				}
				return
			}
			if len(decided) != 1 || strings.Join(decided[0].ProviderTools, ",") != strings.Join(tt.wantTools, ",") {
				t.Fatalf("decided %+v; want one decision with provider tools %v", decided, tt.wantTools)
			}
			if tt.wantCode != 200 {
				return
			}
			if got := up.heads[0].Get("Authorization"); got != "Bearer "+testKey {
				t.Fatalf("upstream Authorization %q", got)
			}
			if got := up.bodies[0]["max_output_tokens"]; got != float64(DefaultMaxTokens) {
				t.Fatalf("max_output_tokens %v; want the default cap", got)
			}
			if _, ok := up.bodies[0]["stream_options"]; ok {
				t.Fatal("stream_options added to a Responses request")
			}
			if n, _ := usage.TokensToday(context.Background(), "telegram:1"); n != 39 {
				t.Fatalf("tokens counted %d; want the stream's 39", n)
			}
		})
	}
}

// closingWriter fails every write after one carrying marker: a client
// that hangs up as soon as it has read the stream's last event.
type closingWriter struct {
	*httptest.ResponseRecorder
	marker string
	closed bool
}

func (c *closingWriter) Write(b []byte) (int, error) {
	if c.closed {
		return 0, io.ErrClosedPipe
	}
	if strings.Contains(string(b), c.marker) {
		c.closed = true
	}
	return c.ResponseRecorder.Write(b)
}

// A client that closes once it has the completed event (Codex does) is
// settled at the usage the provider reported, not at the reservation.
func TestStreamClosedAfterItsEndSettlesAtUsage(t *testing.T) {
	up := &recordingUpstream{answer: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"total_tokens\":39}}}\n\n"))
	}}
	usage := &MemoryUsage{}
	p := proxyTo(t, OpenAI, up, newEngine(t), usage, session("member"))
	r := httptest.NewRequest(http.MethodPost, ResponsesPath, strings.NewReader(`{"model":"m","input":"hi","stream":true}`))
	w := &closingWriter{ResponseRecorder: httptest.NewRecorder(), marker: "response.completed"}
	p.ServeHTTP(w, r)
	if n, _ := usage.TokensToday(context.Background(), "telegram:1"); n != 39 {
		t.Fatalf("settled at %d tokens; want the reported 39", n)
	}
}
