package model

import (
	"encoding/json"
	"net/http"
)

// streamAnthropic writes msg (an answer built by respond) as the Messages
// API's event stream: text in two deltas, tool input as one
// input_json_delta, usage split between message_start (input) and
// message_delta (output), as the API reports it.
func streamAnthropic(w http.ResponseWriter, msg map[string]any) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	event := func(name string, data any) {
		b, _ := json.Marshal(data)
		_, _ = w.Write([]byte("event: " + name + "\ndata: " + string(b) + "\n\n"))
		if flusher != nil {
			flusher.Flush()
		}
	}
	usage := msg["usage"].(map[string]int64)
	start := map[string]any{}
	for k, v := range msg {
		start[k] = v
	}
	start["content"] = []any{}
	start["stop_reason"] = nil
	start["usage"] = map[string]int64{"input_tokens": usage["input_tokens"], "output_tokens": 1}
	event("message_start", map[string]any{"type": "message_start", "message": start})
	for i, block := range msg["content"].([]map[string]any) {
		switch block["type"] {
		case "text":
			text, _ := block["text"].(string)
			event("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": map[string]any{"type": "text", "text": ""}})
			half := len(text) / 2
			for _, part := range []string{text[:half], text[half:]} {
				event("content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "text_delta", "text": part}})
			}
		case "tool_use":
			input, _ := json.Marshal(block["input"])
			event("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": map[string]any{
				"type": "tool_use", "id": block["id"], "name": block["name"], "input": map[string]any{}}})
			event("content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "input_json_delta", "partial_json": string(input)}})
		}
		event("content_block_stop", map[string]any{"type": "content_block_stop", "index": i})
	}
	event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": msg["stop_reason"], "stop_sequence": nil},
		"usage": map[string]int64{"output_tokens": usage["output_tokens"]}})
	event("message_stop", map[string]any{"type": "message_stop"})
}

// streamResponses writes resp (a Responses answer built by respond) as
// the Responses API's event stream: each output item added, its text in
// two deltas or its arguments in one, done; then response.completed with
// the usage.
func streamResponses(w http.ResponseWriter, resp map[string]any) {
	w.Header().Set("Content-Type", "text/event-stream")
	flusher, _ := w.(http.Flusher)
	event := func(data map[string]any) {
		b, _ := json.Marshal(data)
		_, _ = w.Write([]byte("event: " + data["type"].(string) + "\ndata: " + string(b) + "\n\n"))
		if flusher != nil {
			flusher.Flush()
		}
	}
	created := map[string]any{"id": resp["id"], "object": "response", "status": "in_progress", "model": resp["model"], "output": []any{}}
	event(map[string]any{"type": "response.created", "response": created})
	for i, item := range resp["output"].([]map[string]any) {
		started := map[string]any{}
		for k, v := range item {
			started[k] = v
		}
		started["status"] = "in_progress"
		if item["type"] == "message" {
			started["content"] = []any{}
		} else {
			started["arguments"] = ""
		}
		event(map[string]any{"type": "response.output_item.added", "output_index": i, "item": started})
		if item["type"] == "message" {
			text := item["content"].([]map[string]any)[0]["text"].(string)
			half := len(text) / 2
			for _, part := range []string{text[:half], text[half:]} {
				event(map[string]any{"type": "response.output_text.delta", "item_id": item["id"], "output_index": i, "content_index": 0, "delta": part})
			}
			event(map[string]any{"type": "response.output_text.done", "item_id": item["id"], "output_index": i, "content_index": 0, "text": text})
		} else {
			event(map[string]any{"type": "response.function_call_arguments.delta", "item_id": item["id"], "output_index": i, "delta": item["arguments"]})
			event(map[string]any{"type": "response.function_call_arguments.done", "item_id": item["id"], "output_index": i, "arguments": item["arguments"]})
		}
		event(map[string]any{"type": "response.output_item.done", "output_index": i, "item": item})
	}
	event(map[string]any{"type": "response.completed", "response": resp})
}
