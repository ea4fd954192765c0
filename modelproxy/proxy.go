// Package modelproxy is the only way a sandboxed agent reaches a model.
//
// The session socket serves the provider's API paths (OpenAI-compatible
// /v1/chat/completions, Anthropic /v1/messages). Each request is decided by
// parachute.model — is this model allowed for the role, is there budget left
// today — and only then forwarded upstream with the API key that the gateway
// alone holds. No key, token or credential is ever inside the sandbox: any
// credential the caller sends is dropped. The tokens the provider reports
// are counted against the identity's daily budget.
package modelproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// Providers.
const (
	OpenAI    = "openai"
	Anthropic = "anthropic"
)

// MaxRequestBytes bounds a request body from the sandbox.
const MaxRequestBytes = 8 << 20

// Decider decides policy inputs; *engine.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in engine.Input) engine.Decision
}

// Usage keeps each identity's token count for the current UTC day.
type Usage interface {
	TokensToday(ctx context.Context, identity string) (int64, error)
	AddTokens(ctx context.Context, identity string, n int64) error
}

// Options configure a Proxy.
type Options struct {
	Provider string // openai or anthropic
	BaseURL  string // upstream, e.g. https://api.openai.com (no trailing /v1)
	APIKey   string // held by the gateway only; empty for keyless local servers
	Decider  Decider
	Usage    Usage
	// Session returns the facts of the session a request belongs to. The
	// session socket is the identity: the gateway serves one Proxy per
	// session, or resolves the session from the listener.
	Session func(*http.Request) (engine.SessionFacts, bool)
	Client  *http.Client
}

// Proxy is the model egress handler.
type Proxy struct {
	opts     Options
	upstream *url.URL
	path     string
}

// New checks the options and returns a Proxy.
func New(opts Options) (*Proxy, error) {
	p := &Proxy{opts: opts}
	switch opts.Provider {
	case OpenAI:
		p.path = "/v1/chat/completions"
	case Anthropic:
		p.path = "/v1/messages"
	default:
		return nil, fmt.Errorf("modelproxy: provider %q is not openai or anthropic", opts.Provider)
	}
	u, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("modelproxy: base URL %q is not an http(s) URL", opts.BaseURL)
	}
	p.upstream = u
	if opts.Decider == nil || opts.Usage == nil || opts.Session == nil {
		return nil, errors.New("modelproxy: Decider, Usage and Session are required")
	}
	if p.opts.Client == nil {
		p.opts.Client = &http.Client{Timeout: 10 * time.Minute}
	}
	return p, nil
}

// request is what the proxy reads of a model request.
type request struct {
	Model               string `json:"model"`
	Stream              bool   `json:"stream"`
	MaxTokens           int64  `json:"max_tokens"`
	MaxCompletionTokens int64  `json:"max_completion_tokens"`
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != p.path {
		p.fail(w, http.StatusNotFound, "not_found", fmt.Sprintf("only POST %s is served here", p.path))
		return
	}
	facts, ok := p.opts.Session(r)
	if !ok {
		p.fail(w, http.StatusForbidden, "permission_denied", "no session for this socket")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		p.fail(w, http.StatusRequestEntityTooLarge, "invalid_request_error", fmt.Sprintf("request body larger than %d bytes or unreadable", MaxRequestBytes))
		return
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		p.fail(w, http.StatusBadRequest, "invalid_request_error", "request body is not a JSON object: "+err.Error())
		return
	}
	used, err := p.opts.Usage.TokensToday(r.Context(), facts.Identity)
	if err != nil {
		p.fail(w, http.StatusServiceUnavailable, "api_error", "token usage is unavailable; refusing rather than guessing")
		return
	}
	d := p.opts.Decider.Decide(r.Context(), engine.ModelInput{
		Session:         facts,
		Provider:        p.opts.Provider,
		Model:           req.Model,
		TokensUsedToday: used,
		TokensRequested: max(req.MaxTokens, req.MaxCompletionTokens),
	})
	if !d.Allow {
		status := http.StatusForbidden
		kind := "permission_denied"
		for _, reason := range d.Reasons {
			if reason == "token-budget-exhausted" || reason == engine.ReasonRateLimited {
				status, kind = http.StatusTooManyRequests, "rate_limit_error"
			}
		}
		msg := d.Reply
		if msg == "" {
			msg = "model call refused by policy"
		}
		if d.RetryAfter > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(int(d.RetryAfter.Seconds()+0.999)))
		}
		p.fail(w, status, kind, fmt.Sprintf("%s (%s)", msg, strings.Join(d.Reasons, ", ")))
		return
	}
	if req.Stream && p.opts.Provider == OpenAI {
		body = withStreamUsage(body)
	}
	p.forward(w, r, body, facts.Identity, req.Stream)
}

// forward sends the request upstream with the gateway's credentials only,
// relays the answer and counts the tokens it reports.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, body []byte, identity string, stream bool) {
	target := *p.upstream
	target.Path = p.upstream.Path + p.path
	up, err := http.NewRequestWithContext(r.Context(), http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		p.fail(w, http.StatusInternalServerError, "api_error", "cannot build the upstream request")
		return
	}
	up.Header.Set("Content-Type", "application/json")
	up.Header.Set("Accept", r.Header.Get("Accept"))
	switch p.opts.Provider {
	case OpenAI:
		if p.opts.APIKey != "" {
			up.Header.Set("Authorization", "Bearer "+p.opts.APIKey)
		}
	case Anthropic:
		if p.opts.APIKey != "" {
			up.Header.Set("x-api-key", p.opts.APIKey)
		}
		v := r.Header.Get("anthropic-version")
		if v == "" {
			v = "2023-06-01"
		}
		up.Header.Set("anthropic-version", v)
		if beta := r.Header.Get("anthropic-beta"); beta != "" {
			up.Header.Set("anthropic-beta", beta)
		}
	}
	resp, err := p.opts.Client.Do(up)
	if err != nil {
		// Never echo the upstream error: it may carry the URL with a key.
		p.fail(w, http.StatusBadGateway, "api_error", "the model provider could not be reached")
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Retry-After", "X-Request-Id", "Request-Id"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	var tokens int64
	if stream {
		tokens = relayStream(w, resp.Body, p.opts.Provider)
	} else {
		var buf bytes.Buffer
		_, _ = io.Copy(w, io.TeeReader(io.LimitReader(resp.Body, 64<<20), &buf))
		tokens = usageOf(buf.Bytes(), p.opts.Provider)
	}
	if tokens > 0 {
		// Counted after the fact: a failure here is logged by the caller's
		// usage store; the next request sees the new total.
		_ = p.opts.Usage.AddTokens(context.WithoutCancel(r.Context()), identity, tokens)
	}
}

// usage is the token report of either provider.
type usage struct {
	Usage *struct {
		TotalTokens  int64 `json:"total_tokens"`  // openai
		InputTokens  int64 `json:"input_tokens"`  // anthropic
		OutputTokens int64 `json:"output_tokens"` // anthropic
	} `json:"usage"`
	// Anthropic's stream puts the input count in message_start.message.usage.
	Message *struct {
		Usage *struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"usage"`
	} `json:"message"`
}

func usageOf(b []byte, provider string) int64 {
	var u usage
	if json.Unmarshal(b, &u) != nil {
		return 0
	}
	var n int64
	if u.Usage != nil {
		if provider == OpenAI {
			n += u.Usage.TotalTokens
		} else {
			n += u.Usage.InputTokens + u.Usage.OutputTokens
		}
	}
	if u.Message != nil && u.Message.Usage != nil {
		n += u.Message.Usage.InputTokens + u.Message.Usage.OutputTokens
	}
	return n
}

// relayStream copies a server-sent-events stream line by line, flushing
// each event, and adds up the usage the events report.
func relayStream(w http.ResponseWriter, body io.Reader, provider string) int64 {
	flusher, _ := w.(http.Flusher)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var tokens int64
	for sc.Scan() {
		line := sc.Bytes()
		if data, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			tokens += usageOf(bytes.TrimSpace(data), provider)
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			break
		}
		if len(line) == 0 && flusher != nil {
			flusher.Flush()
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	return tokens
}

// withStreamUsage asks an OpenAI-compatible server to report usage at the
// end of a stream, so streamed calls are counted too.
func withStreamUsage(body []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	m["stream_options"] = json.RawMessage(`{"include_usage":true}`)
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

// fail answers in the provider's error format, so agent SDKs show the text.
func (p *Proxy) fail(w http.ResponseWriter, status int, kind, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	var v any
	if p.opts.Provider == Anthropic {
		v = map[string]any{"type": "error", "error": map[string]string{"type": kind, "message": msg}}
	} else {
		v = map[string]any{"error": map[string]string{"type": kind, "code": kind, "message": msg}}
	}
	_ = json.NewEncoder(w).Encode(v)
}

// MemoryUsage is a Usage kept in memory, per identity per UTC day. The
// gateway's store persists it; this one is for tests and single runs.
type MemoryUsage struct {
	mu  sync.Mutex
	day string
	m   map[string]int64
	Now func() time.Time
}

func (u *MemoryUsage) today() string {
	now := time.Now
	if u.Now != nil {
		now = u.Now
	}
	d := now().UTC().Format(time.DateOnly)
	if d != u.day {
		u.day, u.m = d, map[string]int64{}
	}
	return d
}

// TokensToday implements Usage.
func (u *MemoryUsage) TokensToday(_ context.Context, identity string) (int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.today()
	return u.m[identity], nil
}

// AddTokens implements Usage.
func (u *MemoryUsage) AddTokens(_ context.Context, identity string, n int64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.today()
	u.m[identity] += n
	return nil
}
