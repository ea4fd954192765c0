// Package modelproxy is the only way a sandboxed agent reaches a model.
//
// The session socket serves the provider's API paths (OpenAI-compatible
// /v1/chat/completions, Anthropic /v1/messages). Each request is decoded
// once, strictly, and decided by parachute.model on what was decoded — is
// this model allowed for the role, does the call's worst case fit today's
// budget, may the provider run tools or betas on its side for it — and
// only then re-encoded from exactly what was decided and forwarded
// upstream with the API key that the gateway alone holds. No key, token or
// credential is ever inside the sandbox: any credential the caller sends
// is dropped, and every secret the gateway holds is redacted from what
// comes back.
//
// Budgets are caps: the worst case is reserved in the usage store before
// the call goes out (Usage.Reserve) and settled to what the provider
// reports afterwards. See docs/gateway.md, "Model proxy".
package modelproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// Providers.
const (
	OpenAI    = "openai"
	Anthropic = "anthropic"
)

// ResponsesPath is the OpenAI Responses API, served by an OpenAI proxy
// beside /v1/chat/completions.
const ResponsesPath = "/v1/responses"

// MaxRequestBytes bounds a request body from the sandbox.
const MaxRequestBytes = 8 << 20

// Defaults of the Options that bound a call.
const (
	// DefaultMaxTokens is the cap a request without a positive max_tokens
	// gets (written into the body sent upstream, and reserved).
	DefaultMaxTokens = 4096
	// DefaultReadTimeout bounds reading a request body from the sandbox.
	DefaultReadTimeout = 30 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for the provider's
	// answer to start; a non-streamed answer starts only when it is done,
	// and providers refuse non-streamed calls expected to take longer.
	DefaultResponseHeaderTimeout = 10 * time.Minute
	// DefaultIdleTimeout bounds silence once an answer has started: no
	// byte from the provider for this long, or a sandbox that reads
	// nothing for this long, ends the call (providers send keep-alive
	// events well within it).
	DefaultIdleTimeout = 2 * time.Minute
)

// Reasons the proxy branches on, beyond the engine's.
const (
	reasonBudget = "token-budget-exhausted"
)

// Decider decides policy inputs; *engine.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in engine.Input) engine.Decision
}

// Usage keeps each identity's token count for the current UTC day;
// sessions.Usage persists it. Reserve must be atomic across concurrent
// calls: it adds n to the count and returns the count before it, so that
// no two calls are decided on the same headroom.
type Usage interface {
	Reserve(ctx context.Context, identity string, n int64) (id string, before int64, err error)
	// Settle replaces the reservation's tokens with actual (0 releases it).
	Settle(ctx context.Context, id string, actual int64) error
}

// Options configure a Proxy.
type Options struct {
	Provider string // openai or anthropic
	BaseURL  string // upstream, e.g. https://api.openai.com (no trailing /v1)
	APIKey   string // held by the gateway only; empty for keyless local servers
	// Secrets are further values the gateway holds (bot tokens, …). They
	// and APIKey are replaced by "[redacted]" in everything sent back to
	// the sandbox; values shorter than 8 bytes are ignored.
	Secrets []string
	Decider Decider
	Usage   Usage
	// Session returns the facts of the session a request belongs to. The
	// session socket is the identity: the gateway serves one Proxy per
	// session, or resolves the session from the listener.
	Session func(*http.Request) (engine.SessionFacts, bool)
	// Client sends upstream. Its redirect policy is always replaced: a
	// redirect is answered as an upstream error, never followed.
	Client *http.Client
	// DefaultMaxTokens, ReadTimeout, ResponseHeaderTimeout (used when
	// Client is nil) and IdleTimeout default to the Default* constants.
	DefaultMaxTokens      int64
	ReadTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	IdleTimeout           time.Duration
}

// Proxy is the model egress handler.
type Proxy struct {
	opts     Options
	upstream *url.URL
	path     string
	redact   *strings.Replacer
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
	if p.opts.DefaultMaxTokens <= 0 {
		p.opts.DefaultMaxTokens = DefaultMaxTokens
	}
	if p.opts.ReadTimeout <= 0 {
		p.opts.ReadTimeout = DefaultReadTimeout
	}
	if p.opts.ResponseHeaderTimeout <= 0 {
		p.opts.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if p.opts.IdleTimeout <= 0 {
		p.opts.IdleTimeout = DefaultIdleTimeout
	}
	var c http.Client
	if opts.Client != nil {
		c = *opts.Client
	} else {
		c.Transport = &http.Transport{
			Proxy:                 nil, // the provider is reached directly, never through an environment proxy
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: p.opts.ResponseHeaderTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   16,
			ForceAttemptHTTP2:     true,
		}
	}
	// A redirect would carry the key and the body to another address.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	p.opts.Client = &c
	p.redact = redactor(append([]string{opts.APIKey}, opts.Secrets...))
	return p, nil
}

var anthropicVersion = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	api := p.opts.Provider
	if p.opts.Provider == OpenAI && r.URL.Path == ResponsesPath {
		api = Responses
	}
	if r.Method != http.MethodPost || (r.URL.Path != p.path && api != Responses) {
		paths := p.path
		if p.opts.Provider == OpenAI {
			paths += " and " + ResponsesPath
		}
		p.fail(w, http.StatusNotFound, "not_found", fmt.Sprintf("only POST %s is served here", paths))
		return
	}
	if q := r.URL.RawQuery; q != "" && !(p.opts.Provider == Anthropic && q == "beta=true") {
		// Anthropic's SDK marks its beta client with ?beta=true, which the
		// API ignores; any other parameter is one nothing decided on, so it
		// is refused, and no query is ever forwarded.
		p.fail(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("query %q is not served: only %s (Anthropic: %s?beta=true) is", q, p.path, p.path))
		return
	}
	facts, ok := p.opts.Session(r)
	if !ok {
		p.fail(w, http.StatusForbidden, "permission_denied", "no session for this socket")
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(p.opts.ReadTimeout)) // not supported by every ResponseWriter (tests)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			p.fail(w, http.StatusRequestEntityTooLarge, "invalid_request_error", fmt.Sprintf("request body larger than %d bytes", MaxRequestBytes))
		} else {
			p.fail(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("request body could not be read within %s", p.opts.ReadTimeout))
		}
		return
	}
	_ = rc.SetReadDeadline(time.Time{})
	c, err := parseCall(api, body, p.opts.DefaultMaxTokens)
	if err == nil {
		c.path = r.URL.Path
	}
	if err != nil {
		p.fail(w, http.StatusBadRequest, "invalid_request_error", strings.TrimPrefix(err.Error(), errBadRequest.Error()+": "))
		return
	}
	var betas []string
	version := "2023-06-01"
	if p.opts.Provider == Anthropic {
		betas = headerList(r.Header.Values("anthropic-beta"))
		if v := r.Header.Get("anthropic-version"); v != "" {
			if !anthropicVersion.MatchString(v) {
				p.fail(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("anthropic-version %q is not a YYYY-MM-DD date", v))
				return
			}
			version = v
		}
	}
	resID, used, err := p.opts.Usage.Reserve(r.Context(), facts.Identity, c.reserve)
	if err != nil {
		p.fail(w, http.StatusServiceUnavailable, "api_error", "token usage is unavailable; refusing rather than guessing")
		return
	}
	// From here every path settles the reservation exactly once.
	settle := func(actual int64) {
		// A failed settlement leaves the reservation counted: the budget
		// errs on the side of the cap.
		_ = p.opts.Usage.Settle(context.WithoutCancel(r.Context()), resID, actual)
	}
	d := p.opts.Decider.Decide(r.Context(), engine.ModelInput{
		Session:         facts,
		Provider:        p.opts.Provider,
		Model:           c.model,
		TokensUsedToday: used,
		TokensRequested: c.reserve,
		ProviderTools:   c.providerTools,
		MCPServers:      c.mcpServers,
		Betas:           betas,
	})
	if !d.Allow {
		settle(0)
		p.refuse(w, d)
		return
	}
	settle(p.forward(w, r, c, upstreamHeaders{betas: betas, version: version}))
}

// refuse answers a denial with its reasons.
func (p *Proxy) refuse(w http.ResponseWriter, d engine.Decision) {
	status := http.StatusForbidden
	kind := "permission_denied"
	for _, reason := range d.Reasons {
		if reason == reasonBudget || reason == engine.ReasonRateLimited {
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
}

// headerList splits comma-separated header values, dropping empty items.
func headerList(values []string) []string {
	var out []string
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}

// fail answers in the provider's error format, so agent SDKs show the text.
func (p *Proxy) fail(w http.ResponseWriter, status int, kind, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	msg = p.redact.Replace(msg)
	var v any
	if p.opts.Provider == Anthropic {
		v = map[string]any{"type": "error", "error": map[string]string{"type": kind, "message": msg}}
	} else {
		v = map[string]any{"error": map[string]string{"type": kind, "code": kind, "message": msg}}
	}
	_ = json.NewEncoder(w).Encode(v)
}
