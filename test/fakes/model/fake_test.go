package model

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func post(t *testing.T, h http.Handler, path, body string, header map[string]string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("answer %q is not JSON: %v", rec.Body.String(), err)
	}
	return rec.Code, out
}

const (
	oaBody = `{"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"call_1","content":"out"}],"tools":[{"type":"function","function":{"name":"read_file","parameters":{"type":"object"}}}]}`
	anBody = `{"model":"m","max_tokens":10,"system":"sys","messages":[{"role":"user","content":"hi"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"denied: no","is_error":true}]}],"tools":[{"name":"read_file","input_schema":{"type":"object"}}]}`
)

func TestFakeAnswersInEachProvidersFormat(t *testing.T) {
	tests := []struct {
		name, path, body string
		step             Step
		check            func(t *testing.T, out map[string]any)
	}{
		{"openai text", OpenAIPath, oaBody, Reply("hello"), func(t *testing.T, out map[string]any) {
			msg := out["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
			if msg["content"] != "hello" {
				t.Errorf("content %v", msg["content"])
			}
			if out["usage"].(map[string]any)["total_tokens"].(float64) <= 0 {
				t.Error("no usage.total_tokens")
			}
		}},
		{"openai tool call", OpenAIPath, oaBody, Call("read_file", map[string]any{"path": "/w/a"}), func(t *testing.T, out map[string]any) {
			ch := out["choices"].([]any)[0].(map[string]any)
			tc := ch["message"].(map[string]any)["tool_calls"].([]any)[0].(map[string]any)
			fn := tc["function"].(map[string]any)
			if ch["finish_reason"] != "tool_calls" || fn["name"] != "read_file" || fn["arguments"] != `{"path":"/w/a"}` || tc["id"] == "" {
				t.Errorf("tool call %v finish %v", tc, ch["finish_reason"])
			}
		}},
		{"anthropic tool use", AnthropicPath, anBody, Call("read_file", map[string]any{"path": "/w/a"}), func(t *testing.T, out map[string]any) {
			b := out["content"].([]any)[0].(map[string]any)
			if out["stop_reason"] != "tool_use" || b["type"] != "tool_use" || b["name"] != "read_file" || b["input"].(map[string]any)["path"] != "/w/a" {
				t.Errorf("answer %v", out)
			}
			u := out["usage"].(map[string]any)
			if u["input_tokens"].(float64) <= 0 || u["output_tokens"].(float64) <= 0 {
				t.Errorf("usage %v", u)
			}
		}},
		{"anthropic error", AnthropicPath, anBody, Fail(429, "budget"), func(t *testing.T, out map[string]any) {
			if out["type"] != "error" || out["error"].(map[string]any)["message"] != "budget" {
				t.Errorf("error %v", out)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := New(Script{Steps: []Step{tc.step}})
			code, out := post(t, f, tc.path, tc.body, nil)
			if want := max(tc.step.Status, 200); code != want {
				t.Fatalf("status %d; want %d (%v)", code, want, out)
			}
			tc.check(t, out)
		})
	}
}

func TestFakeRecordsRequests(t *testing.T) {
	f := New(Script{Steps: []Step{Reply("a"), Reply("b")}})
	post(t, f, OpenAIPath, oaBody, map[string]string{"Authorization": "Bearer leaked"})
	post(t, f, AnthropicPath, anBody, map[string]string{"anthropic-version": "2023-06-01"})
	reqs := f.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests recorded; want 2", len(reqs))
	}
	oa, an := reqs[0], reqs[1]
	if got := oa.Credentials(); len(got) != 1 || got[0] != "Authorization" {
		t.Errorf("openai credentials %v; want [Authorization]", got)
	}
	if len(an.Credentials()) != 0 {
		t.Errorf("anthropic credentials %v; want none", an.Credentials())
	}
	if oa.System != "sys" || an.System != "sys" {
		t.Errorf("system %q / %q; want sys", oa.System, an.System)
	}
	if oa.LastUserText() != "hi" || an.LastUserText() != "hi" {
		t.Errorf("last user text %q / %q; want hi", oa.LastUserText(), an.LastUserText())
	}
	if r := oa.ToolResults; len(r) != 1 || r[0] != (ToolResult{ID: "call_1", Content: "out"}) {
		t.Errorf("openai tool results %+v", r)
	}
	if r := an.ToolResults; len(r) != 1 || r[0] != (ToolResult{ID: "toolu_1", Content: "denied: no", IsError: true}) {
		t.Errorf("anthropic tool results %+v", r)
	}
	if oa.ToolNames()[0] != "read_file" || an.ToolNames()[0] != "read_file" {
		t.Errorf("tool names %v / %v", oa.ToolNames(), an.ToolNames())
	}
}

func TestFakeScriptEnds(t *testing.T) {
	tests := []struct {
		name   string
		script Script
		want   []int // statuses of three requests
	}{
		{"exhausted", Script{Steps: []Step{Reply("a")}}, []int{200, 500, 500}},
		{"repeat last", Script{Steps: []Step{Fail(429, "x"), Reply("a")}, RepeatLast: true}, []int{429, 200, 200}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := New(tc.script)
			for i, want := range tc.want {
				if code, out := post(t, f, OpenAIPath, oaBody, nil); code != want {
					t.Errorf("request %d: status %d (%v); want %d", i+1, code, out, want)
				}
			}
		})
	}
}

func TestFakeRejectsMalformedRequests(t *testing.T) {
	tests := []struct{ name, path, body string }{
		{"not json", OpenAIPath, `{`},
		{"no model", OpenAIPath, `{"messages":[]}`},
		{"anthropic without max_tokens", AnthropicPath, `{"model":"m","messages":[]}`},
		{"anthropic tool role", AnthropicPath, `{"model":"m","max_tokens":1,"messages":[{"role":"tool","content":"x"}]}`},
		{"openai tool in anthropic format", OpenAIPath, `{"model":"m","tools":[{"name":"x","input_schema":{}}]}`},
		{"stream", OpenAIPath, `{"model":"m","stream":true}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := New(Script{Steps: []Step{Reply("a")}, RepeatLast: true})
			if code, out := post(t, f, tc.path, tc.body, nil); code != http.StatusBadRequest {
				t.Errorf("status %d (%v); want 400", code, out)
			}
		})
	}
}

// An Anthropic stream carries the same answer as events: the text in
// deltas, the tool_use input as JSON, usage in message_start and
// message_delta, message_stop last.
func TestFakeStreamsAnthropic(t *testing.T) {
	f := New(Script{Steps: []Step{Call("read_file", map[string]any{"path": "/workspace/a"}), Reply("hello there")}})
	body := `{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	for i, want := range []string{`"partial_json":"{\"path\":\"/workspace/a\"}"`, `"text":"hello"`} {
		r := httptest.NewRequest(http.MethodPost, AnthropicPath, strings.NewReader(body))
		w := httptest.NewRecorder()
		f.ServeHTTP(w, r)
		out := w.Body.String()
		if w.Header().Get("Content-Type") != "text/event-stream" || !strings.Contains(out, want) ||
			!strings.Contains(out, "event: message_start") || !strings.HasSuffix(out, "data: {\"type\":\"message_stop\"}\n\n") ||
			!strings.Contains(out, `"usage":{"output_tokens":`) {
			t.Fatalf("stream %d: %s", i+1, out)
		}
	}
}

// A Responses stream (Codex) carries function calls and text as output
// items and ends with response.completed and its usage; the call's output
// comes back as a tool result.
func TestFakeStreamsResponses(t *testing.T) {
	f := New(Script{Steps: []Step{Call("read_file", map[string]any{"path": "/workspace/a"}), Reply("hello there")}})
	bodies := []string{
		`{"model":"m","stream":true,"instructions":"sys","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}],"tools":[{"type":"function","name":"read_file","parameters":{}}]}`,
		`{"model":"m","stream":true,"input":[{"type":"message","role":"user","content":"hi"},{"type":"function_call","call_id":"call_1_0","name":"read_file","arguments":"{}"},{"type":"function_call_output","call_id":"call_1_0","output":"file text"}]}`,
	}
	for i, want := range []string{`"type":"function_call"`, `"delta":"hello"`} {
		r := httptest.NewRequest(http.MethodPost, ResponsesPath, strings.NewReader(bodies[i]))
		w := httptest.NewRecorder()
		f.ServeHTTP(w, r)
		out := w.Body.String()
		if !strings.Contains(out, want) || !strings.Contains(out, "event: response.completed") || !strings.Contains(out, `"total_tokens":`) {
			t.Fatalf("stream %d: %s", i+1, out)
		}
	}
	reqs := f.Requests()
	if reqs[0].System != "sys" || reqs[0].LastUserText() != "hi" || len(reqs[0].Tools) != 1 {
		t.Fatalf("first request parsed as %+v", reqs[0])
	}
	if tr := reqs[1].ToolResults; len(tr) != 1 || tr[0].Content != "file text" || tr[0].ID != "call_1_0" {
		t.Fatalf("tool results %+v", tr)
	}
}
