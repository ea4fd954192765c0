package agent_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/agent/agenttest"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

var providers = []string{agent.ProviderOpenAI, agent.ProviderAnthropic}

func TestModelToolLoop(t *testing.T) {
	for _, provider := range providers {
		t.Run(provider, func(t *testing.T) {
			gw := agenttest.New(t, map[string]string{"notes.md": "buy milk"}, model.Script{Steps: []model.Step{
				model.Call("read_file", map[string]any{"path": "/workspace/notes.md"}),
				model.Reply("Your notes say: buy milk."),
			}})
			history := []agent.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "hello!"}}
			r := runTurn(t, gw, request(t, "what is in my notes?", provider, history...), nil)
			wantSuccess(t, r)
			if r.stdout != "Your notes say: buy milk." {
				t.Errorf("reply %q; want the model's final answer", r.stdout)
			}

			wantCalls := []agenttest.ToolCall{{Name: "read_file", Args: map[string]any{"path": "/workspace/notes.md"}}}
			if calls := gw.Calls(); !reflect.DeepEqual(calls, wantCalls) {
				t.Errorf("tool calls %v; want %v", calls, wantCalls)
			}

			reqs := gw.Model.Requests()
			if len(reqs) != 2 {
				t.Fatalf("model got %d requests; want 2 (tool call, then final answer)", len(reqs))
			}
			for i, req := range reqs {
				if c := req.Credentials(); len(c) != 0 {
					t.Errorf("request %d carried credential headers %v; the agent must send none", i, c)
				}
				if req.Provider != provider {
					t.Errorf("request %d went to %s (%s); want %s", i, req.Provider, req.Path, provider)
				}
				if req.Model != "test-model" || req.MaxTokens != 512 {
					t.Errorf("request %d model %q max_tokens %d; want test-model 512", i, req.Model, req.MaxTokens)
				}
				if got, want := req.ToolNames(), []string{"list_directory", "read_file", "search_files", "write_file"}; !sameSet(got, want) {
					t.Errorf("request %d offered tools %v; want %v", i, got, want)
				}
				if !strings.Contains(req.System, "/workspace") {
					t.Errorf("request %d system prompt %q does not name the workspace", i, req.System)
				}
				if provider == agent.ProviderAnthropic && req.Header.Get("anthropic-version") != "2023-06-01" {
					t.Errorf("request %d anthropic-version %q; want 2023-06-01", i, req.Header.Get("anthropic-version"))
				}
			}
			first := reqs[0]
			if got := first.LastUserText(); got != "what is in my notes?" {
				t.Errorf("first request's last user text %q; want the turn's text", got)
			}
			if len(first.Messages) < 3 || first.Messages[0].Text != "hi" || first.Messages[1].Text != "hello!" {
				t.Errorf("first request messages %v; want the history first", first.Messages)
			}
			results := reqs[1].ToolResults
			if len(results) != 1 || results[0].Content != "buy milk" || results[0].IsError {
				t.Errorf("second request tool results %+v; want the file's content, not an error", results)
			}
			if results[0].ID == "" {
				t.Error("tool result has no tool call id")
			}
		})
	}
}

func TestDeniedToolResultReachesModel(t *testing.T) {
	for _, provider := range providers {
		t.Run(provider, func(t *testing.T) {
			gw := agenttest.New(t, nil, model.Script{Steps: []model.Step{
				model.Call("write_file", map[string]any{"path": "/etc/passwd", "content": "root::0:0::/:/bin/sh"}),
				model.Reply("I am not allowed to write there."),
			}})
			r := runTurn(t, gw, request(t, "overwrite /etc/passwd", provider), nil)
			wantSuccess(t, r)
			if r.stdout != "I am not allowed to write there." {
				t.Errorf("reply %q; want the model's answer after the denial", r.stdout)
			}
			reqs := gw.Model.Requests()
			if len(reqs) != 2 {
				t.Fatalf("model got %d requests; want 2", len(reqs))
			}
			res := reqs[1].ToolResults
			if len(res) != 1 || !strings.Contains(res[0].Content, "denied:") {
				t.Fatalf("tool results %+v; want the denial text", res)
			}
			if provider == agent.ProviderAnthropic && !res[0].IsError {
				t.Error("anthropic tool_result for a denial has is_error false; want true")
			}
			if provider == agent.ProviderOpenAI && !strings.HasPrefix(res[0].Content, "tool error: denied:") {
				t.Errorf("openai tool message %q; want it marked %q", res[0].Content, "tool error: ")
			}
		})
	}
}

func TestModelAskingForUnlistedToolIsNotCalled(t *testing.T) {
	for _, provider := range providers {
		t.Run(provider, func(t *testing.T) {
			gw := agenttest.New(t, nil, model.Script{Steps: []model.Step{
				model.Call("delete_everything", map[string]any{}),
				model.Reply("ok"),
			}})
			wantSuccess(t, runTurn(t, gw, request(t, "clean up", provider), nil))
			if calls := gw.Calls(); len(calls) != 0 {
				t.Errorf("MCP calls %v; want none for a tool the gateway did not list", calls)
			}
			res := gw.Model.Requests()[1].ToolResults
			if len(res) != 1 || !strings.Contains(res[0].Content, `no tool named "delete_everything"`) {
				t.Errorf("tool results %+v; want an error naming the unknown tool", res)
			}
		})
	}
}

func TestModelErrorsAreClearFailures(t *testing.T) {
	tests := []struct {
		status int
		msg    string
		want   []string
	}{
		{429, "daily token budget used up (token-budget-exhausted)", []string{"HTTP 429", "daily token budget used up (token-budget-exhausted)", "refused"}},
		{403, "model gpt-5 is not allowed for role guest (model-not-allowed)", []string{"HTTP 403", "model-not-allowed"}},
		{502, "the model provider\ncould not be reached", []string{"HTTP 502", "the model provider could not be reached"}},
	}
	for _, provider := range providers {
		for _, tc := range tests {
			t.Run(provider+"/"+tc.msg[:10], func(t *testing.T) {
				gw := agenttest.New(t, nil, model.Script{Steps: []model.Step{model.Fail(tc.status, tc.msg)}})
				r := runTurn(t, gw, request(t, "hello", provider), nil)
				wantFailure(t, r, tc.want...)
			})
		}
	}
}

func TestMaxStepsBoundsTheLoop(t *testing.T) {
	for _, provider := range providers {
		t.Run(provider, func(t *testing.T) {
			gw := agenttest.New(t, nil, model.Script{
				Steps:      []model.Step{model.Call("list_directory", map[string]any{"path": "/workspace"})},
				RepeatLast: true,
			})
			r := runTurn(t, gw, request(t, "loop forever", provider), map[string]string{"PARACHUTE_MAX_STEPS": "3"})
			wantFailure(t, r, "after 3 model calls", "PARACHUTE_MAX_STEPS")
			if n := len(gw.Model.Requests()); n != 3 {
				t.Errorf("model got %d requests; want exactly 3", n)
			}
			// The third answer's tool call is not run: nobody would read it.
			if n := len(gw.Calls()); n != 2 {
				t.Errorf("%d tool calls; want 2", n)
			}
		})
	}
}

func TestModelMultipleToolCallsInOneStep(t *testing.T) {
	for _, provider := range providers {
		t.Run(provider, func(t *testing.T) {
			gw := agenttest.New(t, map[string]string{"a.md": "A", "b.md": "B"}, model.Script{Steps: []model.Step{
				{ToolCalls: []model.ToolCall{
					{Name: "read_file", Args: map[string]any{"path": "/workspace/a.md"}},
					{Name: "read_file", Args: map[string]any{"path": "/workspace/b.md"}},
				}},
				model.Reply("A and B"),
			}})
			wantSuccess(t, runTurn(t, gw, request(t, "read both", provider), nil))
			res := gw.Model.Requests()[1].ToolResults
			if len(res) != 2 || res[0].Content != "A" || res[1].Content != "B" || res[0].ID == res[1].ID {
				t.Errorf("tool results %+v; want A then B with distinct ids", res)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestAnthropicRolesAlternate(t *testing.T) {
	gw := agenttest.New(t, nil, model.Script{Steps: []model.Step{model.Reply("ok")}})
	history := []agent.Message{
		{Role: "assistant", Content: "welcome"},
		{Role: "user", Content: "one"},
		{Role: "user", Content: "two"},
		{Role: "assistant", Content: ""}, // empty: dropped
		{Role: "assistant", Content: "noted"},
		{Role: "user", Content: "three"},
	}
	wantSuccess(t, runTurn(t, gw, request(t, "four", agent.ProviderAnthropic, history...), nil))
	got := gw.Model.Requests()[0].Messages
	want := []model.Message{
		{Role: "assistant", Text: "welcome"},
		{Role: "user", Text: "one\n\ntwo"},
		{Role: "assistant", Text: "noted"},
		{Role: "user", Text: "three\n\nfour"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("messages %v; want %v", got, want)
	}
}
