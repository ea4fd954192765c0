package model

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Tokens are counted the same way for both providers so tests can predict
// them: input = body bytes / 4, output = answer bytes / 4 + 1.
func inputTokens(req Request) int64 { return int64(len(req.Body)) / 4 }

func outputTokens(step Step) int64 {
	n := len(step.Text)
	for _, c := range step.ToolCalls {
		b, _ := json.Marshal(c.Args)
		n += len(c.Name) + len(b)
	}
	return int64(n)/4 + 1
}

// respond builds the n-th (1-based) answer in the provider's format. Tool
// call IDs are "call_<n>_<i>" (OpenAI) or "toolu_<n>_<i>" (Anthropic).
func respond(provider string, n int, req Request, step Step) any {
	in, out := inputTokens(req), outputTokens(step)
	if provider == "anthropic" {
		content := []map[string]any{}
		stop := "end_turn"
		if len(step.ToolCalls) == 0 || step.Text != "" { // words before tool calls too
			content = append(content, map[string]any{"type": "text", "text": step.Text})
		}
		for i, c := range step.ToolCalls {
			stop = "tool_use"
			content = append(content, map[string]any{
				"type": "tool_use", "id": fmt.Sprintf("toolu_%d_%d", n, i),
				"name": c.Name, "input": args(c.Args),
			})
		}
		return map[string]any{
			"id": fmt.Sprintf("msg_%d", n), "type": "message", "role": "assistant",
			"model": req.Model, "content": content, "stop_reason": stop, "stop_sequence": nil,
			"usage": map[string]int64{"input_tokens": in, "output_tokens": out},
		}
	}
	if provider == "openai-responses" {
		var output []map[string]any
		if len(step.ToolCalls) == 0 {
			output = append(output, map[string]any{"type": "message", "id": fmt.Sprintf("msg_%d", n), "role": "assistant", "status": "completed",
				"content": []map[string]any{{"type": "output_text", "text": step.Text, "annotations": []any{}}}})
		}
		for i, c := range step.ToolCalls {
			b, _ := json.Marshal(args(c.Args))
			item := map[string]any{"type": "function_call", "id": fmt.Sprintf("fc_%d_%d", n, i),
				"call_id": fmt.Sprintf("call_%d_%d", n, i), "name": c.Name, "arguments": string(b), "status": "completed"}
			if ns, name, ok := namespaced(req, c.Name); ok {
				// Codex offers MCP tools in a namespace tool: the call
				// names the namespace and the function in it.
				item["namespace"], item["name"] = ns, name
			}
			output = append(output, item)
		}
		return map[string]any{
			"id": fmt.Sprintf("resp_%d", n), "object": "response", "created_at": time.Now().Unix(), "status": "completed",
			"model": req.Model, "output": output,
			"usage": map[string]any{"input_tokens": in, "output_tokens": out, "total_tokens": in + out,
				"input_tokens_details": map[string]int64{"cached_tokens": 0}, "output_tokens_details": map[string]int64{"reasoning_tokens": 0}},
		}
	}
	msg := map[string]any{"role": "assistant", "content": nil}
	finish := "stop"
	if len(step.ToolCalls) == 0 || step.Text != "" { // words before tool calls too
		msg["content"] = step.Text
	}
	if len(step.ToolCalls) > 0 {
		finish = "tool_calls"
		calls := []map[string]any{}
		for i, c := range step.ToolCalls {
			b, _ := json.Marshal(args(c.Args))
			calls = append(calls, map[string]any{
				"id": fmt.Sprintf("call_%d_%d", n, i), "type": "function",
				"function": map[string]string{"name": c.Name, "arguments": string(b)},
			})
		}
		msg["tool_calls"] = calls
	}
	return map[string]any{
		"id": fmt.Sprintf("chatcmpl-%d", n), "object": "chat.completion",
		"created": time.Now().Unix(), "model": req.Model,
		"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": finish}},
		"usage":   map[string]int64{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out},
	}
}

func args(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// ReportedTokens is the usage (input + output) the fake reported for req:
// what a budget that counts the provider's usage must add up.
func ReportedTokens(req Request) int64 {
	if !req.answered {
		return 0
	}
	return inputTokens(req) + req.outputTokens
}

// namespaced splits "NS__name" when the request offered a namespace tool
// NS holding name (Responses).
func namespaced(req Request, full string) (ns, name string, ok bool) {
	for _, t := range req.Tools {
		if n, fn, found := strings.Cut(t.Name, "/"); found && n+"__"+fn == full {
			return n, fn, true
		}
	}
	return "", "", false
}
