package modelproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/parachute-gateway/parachute/internal/strictjson"
)

// The top-level fields forwarded, per API. Anything else is refused with a
// 400 naming it: a field the gateway does not know is a field it has not
// decided on, and a new provider feature (a server-side tool, say) must be
// added here, and to parachute.model's input if it reaches anything,
// before a sandbox can use it.
var (
	anthropicFields = setOf("model", "messages", "max_tokens", "system", "metadata", "stop_sequences",
		"stream", "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
		"mcp_servers", "container", "context_management",
		// output_config: effort (how much the model thinks), sent by
		// Claude Code; it shapes the answer and reaches nothing.
		"output_config")
	openAIFields = setOf("model", "messages", "max_tokens", "max_completion_tokens", "n", "stream",
		"stream_options", "temperature", "top_p", "frequency_penalty", "presence_penalty", "logit_bias",
		"logprobs", "top_logprobs", "stop", "seed", "user", "tools", "tool_choice", "parallel_tool_calls",
		"response_format", "functions", "function_call", "reasoning_effort", "service_tier", "store",
		"metadata", "modalities", "audio", "prediction", "web_search_options", "safety_identifier",
		"prompt_cache_key", "verbosity")
	// The OpenAI Responses API (Codex). Not forwarded: previous_response_id,
	// conversation and prompt (they pull in state stored with the
	// provider under the gateway's key, which may be another session's),
	// background (a run that outlives the call and its settlement).
	responsesFields = setOf("model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
		"max_output_tokens", "max_tool_calls", "stream", "stream_options", "temperature", "top_p", "top_logprobs",
		"reasoning", "text", "truncation", "store", "include", "metadata", "user", "safety_identifier",
		"prompt_cache_key", "service_tier", "client_metadata")
)

// Responses is the OpenAI Responses API (POST /v1/responses), served by
// an OpenAI proxy beside Chat Completions; decisions name provider openai.
const Responses = "openai-responses"

// Provider-side tool names that are not a tool type of the API itself.
const (
	// ToolURLSource: a message block whose source is a URL (Anthropic
	// image or document source {"type":"url"}, OpenAI image_url with an
	// http(s) URL): the provider fetches it.
	ToolURLSource = "url_source"
	// ToolWebSearchOptions: OpenAI Chat Completions' web_search_options,
	// the search models' built-in web search.
	ToolWebSearchOptions = "web_search_options"
)

// InputBytesPerToken is the bound on a request's input tokens the
// reservation assumes: the encoded body's bytes divided by it, rounded
// up. Three bytes per token is above the density of ordinary text and
// code (about four) and of JSON around it; images count by their encoded
// size, which over-reserves (the settlement gives the difference back).
const InputBytesPerToken = 3

// maxTokensLimit refuses max_tokens values no model answers, before the
// reservation arithmetic could overflow.
const maxTokensLimit = 1 << 32

// errBadRequest marks a request the proxy refuses with 400.
var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// call is one decoded model request: what is decided and what is sent are
// both read from body, which is decoded once and encoded once.
type call struct {
	api           string // OpenAI (Chat Completions), Anthropic or Responses
	path          string // the API path, as forwarded
	body          map[string]any
	encoded       []byte // body after the gateway's defaults, as sent upstream
	model         string
	stream        bool
	maxTokens     int64 // per choice, after the default
	n             int64 // choices (OpenAI n), 1 otherwise
	reserve       int64 // worst case: maxTokens × n + input bound
	providerTools []string
	mcpServers    []string
}

// parseCall decodes raw strictly (internal/strictjson: no duplicate
// names, valid UTF-8, no lone surrogates), refuses fields not on the
// API's list, reads what is decided on, applies the default cap when
// max_tokens is missing or not positive, and encodes the result.
func parseCall(provider string, raw []byte, defaultMax int64) (*call, error) {
	body, err := strictjson.Object(raw)
	if err != nil {
		return nil, badRequest("request body is not one strict JSON object: %v", err)
	}
	allowed, api := openAIFields, "OpenAI Chat Completions"
	switch provider {
	case Anthropic:
		allowed, api = anthropicFields, "Anthropic Messages"
	case Responses:
		allowed, api = responsesFields, "OpenAI Responses"
	}
	for _, k := range slices.Sorted(maps.Keys(body)) {
		if allowed[k] {
			continue
		}
		for name := range allowed {
			if strings.EqualFold(name, k) {
				return nil, badRequest("field %q is a case variant of %q: field names are exact", k, name)
			}
		}
		return nil, badRequest("field %q is not a field of the %s API that this gateway forwards; remove it (allowed: %s)",
			k, api, strings.Join(slices.Sorted(maps.Keys(allowed)), ", "))
	}
	c := &call{api: provider, body: body, n: 1}
	if v, ok := body["model"]; ok {
		if c.model, ok = v.(string); !ok {
			return nil, badRequest("model must be a string")
		}
	}
	if v, ok := body["stream"]; ok {
		if c.stream, ok = v.(bool); !ok {
			return nil, badRequest("stream must be true or false")
		}
	}
	if err := c.readLimits(provider, defaultMax); err != nil {
		return nil, err
	}
	if err := c.readProviderTools(provider); err != nil {
		return nil, err
	}
	if c.stream && provider == OpenAI {
		// Ask for the usage chunk at the end, so the stream is counted.
		opts := map[string]any{}
		if v, ok := body["stream_options"]; ok {
			if opts, ok = v.(map[string]any); !ok {
				return nil, badRequest("stream_options must be an object")
			}
		}
		opts["include_usage"] = true
		body["stream_options"] = opts
	}
	if c.encoded, err = json.Marshal(body); err != nil {
		return nil, badRequest("request body cannot be encoded again: %v", err)
	}
	in := (int64(len(c.encoded)) + InputBytesPerToken - 1) / InputBytesPerToken
	c.reserve = c.maxTokens*c.n + in
	return c, nil
}

// readLimits reads max_tokens (and OpenAI's max_completion_tokens and n)
// and writes the default cap into the body where the caller gave none, so
// the provider stops where the reservation does.
func (c *call) readLimits(provider string, defaultMax int64) error {
	names := []string{"max_tokens"}
	if provider == Responses {
		names = []string{"max_output_tokens"}
	}
	if provider == OpenAI {
		names = append(names, "max_completion_tokens")
		if v, ok := c.body["n"]; ok {
			n, err := integer("n", v)
			if err != nil {
				return err
			}
			if n < 1 || n > 128 {
				return badRequest("n must be between 1 and 128, got %d", n)
			}
			c.n = n
		}
	}
	named := false
	for _, name := range names {
		v, ok := c.body[name]
		if !ok {
			continue
		}
		named = true
		m, err := integer(name, v)
		if err != nil {
			return err
		}
		if m > maxTokensLimit {
			return badRequest("%s %d is larger than any model answers", name, m)
		}
		if m <= 0 {
			m = defaultMax
			c.body[name] = m
		}
		c.maxTokens = max(c.maxTokens, m)
	}
	if !named {
		c.maxTokens = defaultMax
		c.body[names[0]] = defaultMax
	}
	return nil
}

func integer(name string, v any) (int64, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, badRequest("%s must be an integer", name)
	}
	n, err := num.Int64()
	if err != nil {
		return 0, badRequest("%s must be an integer, got %s", name, num)
	}
	return n, nil
}

// readProviderTools lists what the provider would run or fetch on its own
// side for this call. The names read here are matched exactly; a case
// variant of one ("Type", "URL") is refused, since a provider that reads
// names loosely would act on what was not decided.
func (c *call) readProviderTools(provider string) error {
	seen := map[string]bool{}
	add := func(t string) {
		if !seen[t] {
			seen[t] = true
			c.providerTools = append(c.providerTools, t)
		}
	}
	tools, err := list(c.body, "tools")
	if err != nil {
		return err
	}
	for i, t := range tools {
		obj, ok := t.(map[string]any)
		if !ok {
			return badRequest("tools[%d] must be an object", i)
		}
		typ, err := str(obj, "type", fmt.Sprintf("tools[%d]", i))
		if err != nil {
			return err
		}
		if provider == Responses && typ == "namespace" {
			// Codex groups MCP tools in a namespace: the group runs nothing
			// itself, what it holds is decided like top-level tools.
			inner, err := list(obj, "tools")
			if err != nil {
				return err
			}
			for j, in := range inner {
				io, ok := in.(map[string]any)
				if !ok {
					return badRequest("tools[%d].tools[%d] must be an object", i, j)
				}
				ityp, err := str(io, "type", fmt.Sprintf("tools[%d].tools[%d]", i, j))
				if err != nil {
					return err
				}
				if ityp != "function" && ityp != "custom" {
					if ityp == "" {
						return badRequest("tools[%d].tools[%d] has no type", i, j)
					}
					add(ityp)
				}
			}
			continue
		}
		switch {
		case provider == Anthropic && (typ == "" || typ == "custom"):
		case (provider == OpenAI || provider == Responses) && (typ == "function" || typ == "custom"):
		case typ == "":
			return badRequest("tools[%d] has no type", i)
		default:
			add(typ)
		}
	}
	if provider == OpenAI {
		if _, ok := c.body["web_search_options"]; ok {
			add(ToolWebSearchOptions)
		}
	}
	servers, err := list(c.body, "mcp_servers")
	if err != nil {
		return err
	}
	for i, s := range servers {
		obj, ok := s.(map[string]any)
		if !ok {
			return badRequest("mcp_servers[%d] must be an object", i)
		}
		u, err := str(obj, "url", fmt.Sprintf("mcp_servers[%d]", i))
		if err != nil {
			return err
		}
		if u == "" {
			return badRequest("mcp_servers[%d] has no url", i)
		}
		c.mcpServers = append(c.mcpServers, u)
	}
	msgs, err := list(c.body, "messages")
	if err != nil {
		return err
	}
	found := false
	for _, m := range msgs {
		if err := findURLSources(m, &found); err != nil {
			return err
		}
	}
	if provider == Responses {
		// input is a string or a list of items; instructions a string.
		if in, ok := c.body["input"]; ok {
			if err := findURLSources(in, &found); err != nil {
				return err
			}
		}
	}
	if found {
		add(ToolURLSource)
	}
	return nil
}

// findURLSources walks message content for blocks the provider would
// fetch: {"source":{"type":"url",…}} (Anthropic) and {"image_url":
// {"url":"http…"}} or {"image_url":"http…"} (OpenAI).
func findURLSources(v any, found *bool) error {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := findURLSources(e, found); err != nil {
				return err
			}
		}
	case map[string]any:
		for k, sub := range x {
			if k != "source" && k != "image_url" && k != "file_url" && (strings.EqualFold(k, "source") || strings.EqualFold(k, "image_url") || strings.EqualFold(k, "file_url")) {
				return badRequest("field %q is a case variant of a field name: field names are exact", k)
			}
			switch k {
			case "source":
				if src, ok := sub.(map[string]any); ok {
					typ, err := str(src, "type", "source")
					if err != nil {
						return err
					}
					if typ == "url" {
						*found = true
					}
				}
			case "image_url", "file_url": // file_url: Responses input_file
				u, _ := sub.(string)
				if obj, ok := sub.(map[string]any); ok {
					var err error
					if u, err = str(obj, "url", "image_url"); err != nil {
						return err
					}
				}
				if !strings.HasPrefix(strings.ToLower(u), "data:") {
					*found = true
				}
			}
			if err := findURLSources(sub, found); err != nil {
				return err
			}
		}
	}
	return nil
}

// list returns body[name] as a list ([] when absent).
func list(body map[string]any, name string) ([]any, error) {
	v, ok := body[name]
	if !ok || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, badRequest("%s must be a list", name)
	}
	return l, nil
}

// str returns obj[name] as a string ("" when absent), refusing a case
// variant of name beside it or instead of it.
func str(obj map[string]any, name, at string) (string, error) {
	for k := range obj {
		if k != name && strings.EqualFold(k, name) {
			return "", badRequest("%s: field %q is a case variant of %q: field names are exact", at, k, name)
		}
	}
	v, ok := obj[name]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", badRequest("%s.%s must be a string", at, name)
	}
	return s, nil
}

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
