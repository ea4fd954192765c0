// Package local is the loopback HTTP connector: POST /v1/messages with a
// user and text returns the reply. It is for development, tests and custom
// front ends on the same host. It listens on loopback addresses only, and
// when a bearer token is configured (from the environment) every request
// must carry it.
package local

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
)

// Type is the connector type of local identities ("local:<user>").
const Type = "local"

// MaxBody bounds a request body.
const MaxBody = 1 << 20

// Options configure the local connector.
type Options struct {
	Name   string // connector name from the config
	Listen string // loopback host:port, e.g. 127.0.0.1:8787
	// Token, if set, must be sent as "Authorization: Bearer <token>".
	Token string
}

// Connector is the local HTTP connector.
type Connector struct {
	opts Options
	seq  atomic.Uint64
	addr atomic.Value // net.Addr once listening
}

// New checks opts and returns the connector.
func New(opts Options) (*Connector, error) {
	if opts.Name == "" {
		return nil, errors.New("local: connector name is required")
	}
	host, _, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("local: listen address %q: %w", opts.Listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("local: listen address %q is not loopback; the local connector never listens on a network", opts.Listen)
	}
	return &Connector{opts: opts}, nil
}

// Name implements connectors.Connector.
func (c *Connector) Name() string { return c.opts.Name }

// Addr is the listening address once Run has started listening, else nil.
func (c *Connector) Addr() net.Addr {
	a, _ := c.addr.Load().(net.Addr)
	return a
}

// Request is the body of POST /v1/messages.
type Request struct {
	User        string `json:"user"`                   // becomes identity local:<user>
	Text        string `json:"text"`                   // the message
	DisplayName string `json:"display_name,omitempty"` // for show only
	Chat        string `json:"chat,omitempty"`         // default: a DM with the user
	ChatKind    string `json:"chat_kind,omitempty"`    // dm (default), group, channel
	Mentioned   bool   `json:"mentioned,omitempty"`
	MessageID   string `json:"message_id,omitempty"` // for idempotent retries
}

// Response is the answer of POST /v1/messages.
type Response struct {
	Reply  string   `json:"reply"`  // the chunks joined by blank lines
	Chunks []string `json:"chunks"` // what a chat platform would have received
}

// Run serves until ctx ends.
func (c *Connector) Run(ctx context.Context, h connectors.Handler) error {
	ln, err := net.Listen("tcp", c.opts.Listen)
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	c.addr.Store(ln.Addr())
	srv := &http.Server{Handler: c.Handler(h), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("local: %w", err)
	}
	return nil
}

// Handler is the HTTP API, for mounting in tests.
func (c *Connector) Handler(h connectors.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", func(w http.ResponseWriter, r *http.Request) {
		if c.opts.Token != "" {
			got := r.Header.Get("Authorization")
			if subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+c.opts.Token)) != 1 {
				httpError(w, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		var req Request
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, "body: "+err.Error())
			return
		}
		if req.User == "" || len(req.User) > 128 {
			httpError(w, http.StatusBadRequest, "user is required (1-128 bytes)")
			return
		}
		m := &connectors.Message{
			Connector: c.opts.Name, Type: Type, UserID: req.User, DisplayName: req.DisplayName,
			ChatID: req.Chat, ChatKind: req.ChatKind, Mentioned: req.Mentioned, Text: req.Text,
			MessageID: req.MessageID, Time: time.Now(),
		}
		if m.ChatKind == "" {
			m.ChatKind = connectors.KindDM
		}
		if m.ChatID == "" {
			m.ChatID = "dm:" + req.User
		}
		if m.MessageID == "" {
			m.MessageID = "local-" + strconv.FormatUint(c.seq.Add(1), 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		}
		rep := &collector{}
		if err := h.Handle(r.Context(), m, rep); err != nil {
			if errors.Is(err, connectors.ErrMalformed) {
				httpError(w, http.StatusBadRequest, err.Error())
				return
			}
			if len(rep.chunks) == 0 {
				httpError(w, http.StatusInternalServerError, "the message could not be handled")
				return
			}
		}
		resp := Response{Chunks: rep.chunks}
		if resp.Chunks == nil {
			resp.Chunks = []string{}
		}
		for i, ch := range rep.chunks {
			if i > 0 {
				resp.Reply += "\n\n"
			}
			resp.Reply += ch
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
	return mux
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// collector is the Replier of one HTTP request.
type collector struct {
	mu     sync.Mutex
	chunks []string
}

func (c *collector) SendText(_ context.Context, _ string, text string) error {
	c.mu.Lock()
	c.chunks = append(c.chunks, text)
	c.mu.Unlock()
	return nil
}

func (c *collector) Typing(context.Context, string) error { return nil }
