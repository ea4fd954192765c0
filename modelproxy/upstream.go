package modelproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
)

// Bounds of what comes back from the provider.
const (
	maxResponseBytes = 64 << 20 // a non-streamed answer
	maxErrorBytes    = 64 << 10 // an error body read for its type and message
	maxErrorMessage  = 512      // runes of the provider's error message relayed
	maxErrorType     = 64
)

type upstreamHeaders struct {
	betas   []string // decided anthropic-beta values
	version string   // anthropic-version
}

// forward sends the decided call upstream with the gateway's credentials
// only, relays the answer and returns the tokens to settle at: the usage
// the provider reported for a complete answer; the reservation (or what
// a stream showed, if more) for an answer cut short or without usage;
// 0 when the provider did no work (unreachable, redirect, error status).
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, c *call, h upstreamHeaders) int64 {
	target := *p.upstream
	target.Path = p.upstream.Path + c.path
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	up, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), bytes.NewReader(c.encoded))
	if err != nil {
		p.fail(w, http.StatusInternalServerError, "api_error", "cannot build the upstream request")
		return 0
	}
	up.Header.Set("Content-Type", "application/json")
	if c.stream {
		up.Header.Set("Accept", "text/event-stream")
	} else {
		up.Header.Set("Accept", "application/json")
	}
	switch p.opts.Provider {
	case OpenAI:
		if p.opts.APIKey != "" {
			up.Header.Set("Authorization", "Bearer "+p.opts.APIKey)
		}
	case Anthropic:
		if p.opts.APIKey != "" {
			up.Header.Set("x-api-key", p.opts.APIKey)
		}
		up.Header.Set("anthropic-version", h.version)
		if len(h.betas) > 0 {
			up.Header.Set("anthropic-beta", strings.Join(h.betas, ","))
		}
	}
	resp, err := p.opts.Client.Do(up)
	if err != nil {
		// Never echo the upstream error: it may carry the URL with a key.
		p.fail(w, http.StatusBadGateway, "api_error", "the model provider could not be reached")
		if isDial(err) {
			return 0 // nothing reached the provider
		}
		return c.reserve // the provider may have started on it
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		p.fail(w, http.StatusBadGateway, "api_error", fmt.Sprintf(
			"the model provider answered with a redirect (%d); redirects are never followed, so the key and the request stay with the configured address: check model.base_url", resp.StatusCode))
		return 0
	}
	idle := newIdleReader(resp.Body, p.opts.IdleTimeout, cancel)
	defer idle.stop()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(idle, maxErrorBytes))
		kind, msg := p.upstreamError(resp.StatusCode, b)
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if _, err := strconv.Atoi(ra); err == nil {
				w.Header().Set("Retry-After", ra)
			}
		}
		p.fail(w, resp.StatusCode, kind, msg)
		return 0
	}
	for _, name := range []string{"X-Request-Id", "Request-Id"} {
		if v := resp.Header.Get(name); v != "" {
			w.Header().Set(name, p.redact.Replace(v))
		}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(resp.StatusCode)
		shown, complete := p.relayStream(w, idle, c.api)
		if complete {
			return shown
		}
		return max(shown, c.reserve)
	}
	b, err := io.ReadAll(io.LimitReader(idle, maxResponseBytes+1))
	if err != nil || len(b) > maxResponseBytes {
		if idle.fired.Load() {
			p.fail(w, http.StatusBadGateway, "api_error", fmt.Sprintf("the model provider sent nothing for %s", p.opts.IdleTimeout))
		} else {
			p.fail(w, http.StatusBadGateway, "api_error", "the model provider's answer was cut off or too large")
		}
		return c.reserve
	}
	b = []byte(p.redact.Replace(string(b)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_ = p.write(w, b)
	var t tally
	if t.add(b, c.api) {
		return t.total()
	}
	return c.reserve
}

func isDial(err error) bool {
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}

// write sends b to the sandbox, which must take it within IdleTimeout.
func (p *Proxy) write(w http.ResponseWriter, b []byte) error {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(p.opts.IdleTimeout))
	_, err := w.Write(b)
	return err
}

// relayStream copies a server-sent-events stream line by line, flushing
// each event, and adds up the usage the events show. complete reports
// that the stream ended as the API ends one, with its usage.
func (p *Proxy) relayStream(w http.ResponseWriter, body io.Reader, api string) (shown int64, complete bool) {
	rc := http.NewResponseController(w)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var t tally
	reported, ended := false, false
	for sc.Scan() {
		line := sc.Bytes()
		if data, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimSpace(data)
			switch {
			case bytes.Equal(data, []byte("[DONE]")):
				ended = true
			default:
				if t.add(data, api) {
					reported = true
				}
				if api == Anthropic && bytes.Contains(data, []byte(`"message_stop"`)) {
					ended = true
				}
				if api == Responses && bytes.Contains(data, []byte(`"response.completed"`)) {
					ended = true // the Responses stream has no [DONE]
				}
			}
		}
		line = []byte(p.redact.Replace(string(line)))
		if err := p.write(w, append(line, '\n')); err != nil {
			// The sandbox went away: the provider goes on generating,
			// unless it had already ended the stream with its usage (a
			// client may close as soon as it reads the last event).
			return t.total(), ended && reported
		}
		if len(line) == 0 {
			_ = rc.Flush()
		}
	}
	_ = rc.Flush()
	return t.total(), sc.Err() == nil && ended && reported
}

// upstreamError reads the provider's error body for its type and message
// only; the body itself is never relayed (an upstream may echo request
// headers, the key among them).
func (p *Proxy) upstreamError(status int, b []byte) (kind, msg string) {
	var e struct {
		Type    string          `json:"type"`
		Message string          `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	generic := fmt.Sprintf("the model provider answered %d %s", status, http.StatusText(status))
	if json.Unmarshal(b, &e) != nil {
		return "api_error", generic
	}
	var inner struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	var s string
	switch {
	case json.Unmarshal(e.Error, &inner) == nil && (inner.Type != "" || inner.Message != ""):
		kind, msg = inner.Type, inner.Message
	case json.Unmarshal(e.Error, &s) == nil && s != "":
		msg = s
	default:
		kind, msg = e.Type, e.Message
	}
	if kind == "error" {
		kind = ""
	}
	kind = cleanKind(kind)
	msg = bounded(p.redact.Replace(msg), maxErrorMessage)
	if msg == "" {
		return kind, generic
	}
	return kind, fmt.Sprintf("%s: %s", generic, msg)
}

// cleanKind keeps an error type an identifier: [a-z0-9_], bounded.
func cleanKind(k string) string {
	k = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return -1
	}, k)
	if k == "" {
		return "api_error"
	}
	return k[:min(len(k), maxErrorType)]
}

// bounded drops control characters and keeps at most n runes.
func bounded(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		if unicode.IsControl(r) {
			r = ' '
		}
		if i == n {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		i++
	}
	return strings.TrimSpace(b.String())
}

// redactor replaces every secret (and its JSON-escaped form) with
// "[redacted]". Secrets shorter than 8 bytes are not secrets worth the
// damage their replacement would do to ordinary text.
func redactor(secrets []string) *strings.Replacer {
	var pairs []string
	for _, s := range secrets {
		if len(s) < 8 {
			continue
		}
		pairs = append(pairs, s, "[redacted]")
		if q, err := json.Marshal(s); err == nil && string(q[1:len(q)-1]) != s {
			pairs = append(pairs, string(q[1:len(q)-1]), "[redacted]")
		}
	}
	return strings.NewReplacer(pairs...)
}

// idleReader cancels the upstream call when no byte arrives for d.
type idleReader struct {
	r     io.Reader
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
}

func newIdleReader(r io.Reader, d time.Duration, cancel context.CancelFunc) *idleReader {
	i := &idleReader{r: r, d: d}
	i.t = time.AfterFunc(d, func() {
		i.fired.Store(true)
		cancel()
	})
	return i
}

func (i *idleReader) Read(b []byte) (int, error) {
	n, err := i.r.Read(b)
	if n > 0 {
		i.t.Reset(i.d)
	}
	return n, err
}

func (i *idleReader) stop() { i.t.Stop() }

// tally adds up the usage one answer shows. Anthropic streams report
// cumulative counts (message_start, then message_delta), so each field
// keeps its largest value; OpenAI reports a total once.
type tally struct {
	openAI                            int64
	input, cacheWrite, cacheRead, out int64
}

func (t *tally) total() int64 {
	return t.openAI + t.input + t.cacheWrite + t.cacheRead + t.out
}

type anthropicUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
}

// add reads one JSON document (a response or a stream event) and reports
// whether it carried usage.
func (t *tally) add(b []byte, provider string) bool {
	if provider == OpenAI || provider == Responses {
		type total struct {
			TotalTokens int64 `json:"total_tokens"`
		}
		var u struct {
			Usage    *total `json:"usage"`
			Response *struct {
				Usage *total `json:"usage"`
			} `json:"response"` // Responses stream: response.completed
		}
		if json.Unmarshal(b, &u) != nil {
			return false
		}
		if u.Usage == nil && u.Response != nil {
			u.Usage = u.Response.Usage
		}
		if u.Usage == nil {
			return false
		}
		t.openAI = max(t.openAI, u.Usage.TotalTokens)
		return true
	}
	var u struct {
		Usage   *anthropicUsage `json:"usage"`
		Message *struct {
			Usage *anthropicUsage `json:"usage"`
		} `json:"message"`
	}
	if json.Unmarshal(b, &u) != nil {
		return false
	}
	found := false
	for _, a := range []*anthropicUsage{u.Usage, messageUsage(u.Message)} {
		if a == nil {
			continue
		}
		found = true
		t.input = max(t.input, a.InputTokens)
		t.cacheWrite = max(t.cacheWrite, a.CacheCreationInputTokens)
		t.cacheRead = max(t.cacheRead, a.CacheReadInputTokens)
		t.out = max(t.out, a.OutputTokens)
	}
	return found
}

func messageUsage(m *struct {
	Usage *anthropicUsage `json:"usage"`
}) *anthropicUsage {
	if m == nil {
		return nil
	}
	return m.Usage
}
