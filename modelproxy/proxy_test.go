package modelproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/parachute-gateway/parachute/engine"
)

const testKey = "sk-gateway-only-0123456789"

// fakeProvider imitates the documented shape of both APIs: usage in the
// response body, an SSE stream whose last OpenAI chunk carries usage when
// stream_options.include_usage is set, Anthropic's message_start and
// message_delta events.
type fakeProvider struct {
	mu       sync.Mutex
	calls    int
	lastAuth http.Header
	lastBody map[string]any
}

func (f *fakeProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls++
	f.lastAuth = r.Header.Clone()
	b, _ := io.ReadAll(r.Body)
	f.lastBody = nil
	json.Unmarshal(b, &f.lastBody)
	body := f.lastBody
	f.mu.Unlock()
	stream, _ := body["stream"].(bool)
	switch {
	case r.URL.Path == "/v1/chat/completions" && !stream:
		fmt.Fprint(w, `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}`)
	case r.URL.Path == "/v1/chat/completions" && stream:
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"h\"}}]}\n\n")
		if so, _ := body["stream_options"].(map[string]any); so["include_usage"] == true {
			fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n")
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	case r.URL.Path == "/v1/messages" && !stream:
		fmt.Fprint(w, `{"id":"m1","type":"message","role":"assistant","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":10,"output_tokens":5}}`)
	case r.URL.Path == "/v1/messages" && stream:
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n")
		fmt.Fprint(w, "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n")
		fmt.Fprint(w, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	default:
		http.NotFound(w, r)
	}
}

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: "../policies", Data: map[string]any{
		"connectors": map[string]any{"tg": map[string]any{"type": "telegram", "allowed_users": []any{"1", "2"}}},
		"roles":      map[string]any{"reviewer": map[string]any{"models": []any{"small-model"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func session(role string) engine.SessionFacts {
	return engine.SessionFacts{ID: "s1", Identity: "telegram:1", Connector: "tg", ConnectorType: "telegram",
		Role: role, TrustLevel: "sandboxed", Workspace: "users/telegram%3A1"}
}

func setup(t *testing.T, provider, role string) (*Proxy, *fakeProvider, *MemoryUsage) {
	t.Helper()
	fake := &fakeProvider{}
	up := httptest.NewServer(fake)
	t.Cleanup(up.Close)
	usage := &MemoryUsage{}
	p, err := New(Options{Provider: provider, BaseURL: up.URL, APIKey: testKey, Decider: newEngine(t), Usage: usage,
		Session: func(*http.Request) (engine.SessionFacts, bool) { return session(role), true }})
	if err != nil {
		t.Fatal(err)
	}
	return p, fake, usage
}

func send(p *Proxy, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	return w
}

func TestOpenAICallIsForwardedWithTheGatewayKeyOnly(t *testing.T) {
	p, fake, usage := setup(t, OpenAI, "member")
	w := send(p, "/v1/chat/completions", `{"model":"gpt-x","messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"Authorization": "Bearer sk-stolen-from-somewhere", "Cookie": "session=1"})
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if got := fake.lastAuth.Get("Authorization"); got != "Bearer "+testKey {
		t.Fatalf("upstream saw Authorization %q", got)
	}
	if fake.lastAuth.Get("Cookie") != "" {
		t.Fatal("caller's cookie reached the provider")
	}
	if strings.Contains(w.Body.String(), testKey) {
		t.Fatal("the API key reached the sandbox")
	}
	if n, _ := usage.TokensToday(context.Background(), "telegram:1"); n != 42 {
		t.Fatalf("counted %d tokens, want 42", n)
	}
}

func TestAnthropicCallUsesItsHeaders(t *testing.T) {
	p, fake, usage := setup(t, Anthropic, "member")
	w := send(p, "/v1/messages", `{"model":"claude-x","max_tokens":100,"messages":[]}`, map[string]string{"x-api-key": "sk-ant-stolen"})
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if fake.lastAuth.Get("x-api-key") != testKey || fake.lastAuth.Get("anthropic-version") != "2023-06-01" {
		t.Fatalf("upstream headers %v", fake.lastAuth)
	}
	if n, _ := usage.TokensToday(context.Background(), "telegram:1"); n != 15 {
		t.Fatalf("counted %d tokens, want 15", n)
	}
}

func TestStreamsAreRelayedAndCounted(t *testing.T) {
	for _, tt := range []struct {
		provider, path, body string
		want                 int64
	}{
		{OpenAI, "/v1/chat/completions", `{"model":"m","stream":true,"messages":[]}`, 7},
		// message_delta's output_tokens is cumulative: 20 in, 9 out.
		{Anthropic, "/v1/messages", `{"model":"m","stream":true,"max_tokens":10,"messages":[]}`, 29},
	} {
		t.Run(tt.provider, func(t *testing.T) {
			p, _, usage := setup(t, tt.provider, "member")
			w := send(p, tt.path, tt.body, nil)
			if w.Code != 200 || !strings.Contains(w.Body.String(), "data:") {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if n, _ := usage.TokensToday(context.Background(), "telegram:1"); n != tt.want {
				t.Fatalf("counted %d tokens, want %d", n, tt.want)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name, role, path, body string
		used                   int64
		wantCode               int
		wantText               string
	}{
		{"model not allowed for role", "reviewer", "/v1/chat/completions", `{"model":"big-model"}`, 0, 403, "model-not-allowed"},
		{"budget used up", "member", "/v1/chat/completions", `{"model":"m"}`, 200000, 429, "budget is used up"},
		{"request over budget", "member", "/v1/chat/completions", `{"model":"m","max_tokens":5000}`, 199000, 429, "token-budget-exhausted"},
		{"no model named", "member", "/v1/chat/completions", `{"messages":[]}`, 0, 403, "invalid-model"},
		{"malformed JSON", "member", "/v1/chat/completions", `{"model":`, 0, 400, "not one strict JSON object"},
		{"wrong path", "member", "/v1/embeddings", `{"model":"m"}`, 0, 404, "only POST /v1/chat/completions"},
		{"oversized body", "member", "/v1/chat/completions", `{"model":"m","x":"` + strings.Repeat("a", MaxRequestBytes) + `"}`, 0, 413, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, fake, usage := setup(t, OpenAI, tt.role)
			usage.AddTokens(context.Background(), "telegram:1", tt.used)
			w := send(p, tt.path, tt.body, nil)
			if w.Code != tt.wantCode || !strings.Contains(w.Body.String(), tt.wantText) {
				t.Fatalf("status %d body %s; want %d containing %q", w.Code, w.Body, tt.wantCode, tt.wantText)
			}
			var e struct {
				Error struct{ Message string } `json:"error"`
			}
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error.Message == "" {
				t.Fatalf("refusal is not in the provider's error format: %s", w.Body)
			}
			if fake.calls != 0 {
				t.Fatal("a refused call reached the provider")
			}
		})
	}
}

func TestNoSessionNoCall(t *testing.T) {
	fake := &fakeProvider{}
	up := httptest.NewServer(fake)
	defer up.Close()
	p, _ := New(Options{Provider: OpenAI, BaseURL: up.URL, Decider: newEngine(t), Usage: &MemoryUsage{},
		Session: func(*http.Request) (engine.SessionFacts, bool) { return engine.SessionFacts{}, false }})
	if w := send(p, "/v1/chat/completions", `{"model":"m"}`, nil); w.Code != 403 || fake.calls != 0 {
		t.Fatalf("status %d, calls %d", w.Code, fake.calls)
	}
}

func TestUnreachableProviderLeaksNothing(t *testing.T) {
	p, err := New(Options{Provider: OpenAI, BaseURL: "http://127.0.0.1:1", APIKey: testKey, Decider: newEngine(t), Usage: &MemoryUsage{},
		Session: func(*http.Request) (engine.SessionFacts, bool) { return session("member"), true }})
	if err != nil {
		t.Fatal(err)
	}
	w := send(p, "/v1/chat/completions", `{"model":"m"}`, nil)
	if w.Code != 502 || strings.Contains(w.Body.String(), "127.0.0.1") || strings.Contains(w.Body.String(), testKey) {
		t.Fatalf("status %d body %s", w.Code, w.Body)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Provider: "skynet", BaseURL: "http://x"},
		{Provider: OpenAI, BaseURL: "file:///etc/passwd"},
		{Provider: OpenAI, BaseURL: "http://x"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
