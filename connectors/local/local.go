// Package local is the loopback HTTP connector: POST /v1/messages with a
// user and text returns the reply. It is for development, tests and custom
// front ends on the same host.
//
// It listens on a loopback TCP address, a unix socket, or both. Loopback
// alone authenticates nothing (every process on the host can connect), so:
//
//   - on TCP, when a token is configured every request must carry
//     "Authorization: Bearer <token>" (compared in constant time) or gets
//     401 with a JSON error; config validation refuses a TCP listener
//     without a token on a connector that can grant owner or direct trust;
//   - the unix socket is created mode 0600 (atomically, by a rename from a
//     private folder) and every connection's peer uid is read with
//     SO_PEERCRED: only the gateway's own uid and root are served, and the
//     uid is carried in Message.Peer and logged with the message.
package local

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/internal/unixsock"
)

// Type is the connector type of local identities ("local:<user>").
const Type = "local"

// MaxBody bounds a request body.
const MaxBody = 1 << 20

// MinToken is the shortest bearer token accepted (bytes).
const MinToken = 16

// Options configure the local connector.
type Options struct {
	Name   string // connector name from the config
	Listen string // loopback host:port, e.g. 127.0.0.1:8787; "" = no TCP listener
	// Token, if set, must be sent on TCP as "Authorization: Bearer <token>".
	Token string
	// TokenEnv names the variable Token was read from. If it is set, an
	// empty or short Token is an error (the operator meant to set one).
	TokenEnv string
	// Socket is a unix-socket path to listen on too ("" = none).
	Socket string
}

// Connector is the local HTTP connector.
type Connector struct {
	opts  Options
	seq   atomic.Uint64
	addr  atomic.Value // net.Addr once listening
	ready chan struct{}
	once  sync.Once
}

// New checks opts and returns the connector.
func New(opts Options) (*Connector, error) {
	if opts.Name == "" {
		return nil, errors.New("local: connector name is required")
	}
	if opts.Listen == "" && opts.Socket == "" {
		return nil, errors.New("local: nothing to listen on: set listen (loopback host:port) or socket (a path)")
	}
	if opts.TokenEnv != "" && len(opts.Token) < MinToken {
		return nil, fmt.Errorf("local: token_env: $%s is unset or shorter than %d bytes; set it, e.g. export %s=$(openssl rand -hex 32)", opts.TokenEnv, MinToken, opts.TokenEnv)
	}
	if opts.Token != "" && len(opts.Token) < MinToken {
		return nil, fmt.Errorf("local: the bearer token is shorter than %d bytes", MinToken)
	}
	if opts.Listen != "" {
		host, _, err := net.SplitHostPort(opts.Listen)
		if err != nil {
			return nil, fmt.Errorf("local: listen address %q: %w", opts.Listen, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("local: listen address %q is not loopback; the local connector never listens on a network", opts.Listen)
		}
	}
	if opts.Socket != "" {
		abs, err := filepath.Abs(opts.Socket)
		if err != nil {
			return nil, fmt.Errorf("local: socket %q: %w", opts.Socket, err)
		}
		opts.Socket = abs
	}
	return &Connector{opts: opts, ready: make(chan struct{})}, nil
}

// Name implements connectors.Connector.
func (c *Connector) Name() string { return c.opts.Name }

// Addr is the listening address once Run has started listening, else nil.
func (c *Connector) Addr() net.Addr {
	a, _ := c.addr.Load().(net.Addr)
	return a
}

// SocketPath is the absolute unix-socket path ("" if none).
func (c *Connector) SocketPath() string { return c.opts.Socket }

// Listening is closed once every listener of Run is open.
func (c *Connector) Listening() <-chan struct{} { return c.ready }

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
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	if c.opts.Listen != "" {
		ln, err := net.Listen("tcp", c.opts.Listen)
		if err != nil {
			return fmt.Errorf("local: %w", err)
		}
		lns = append(lns, ln)
		c.addr.Store(ln.Addr())
	}
	if c.opts.Socket != "" {
		ln, err := unixsock.Listen(c.opts.Socket)
		if err != nil {
			return fmt.Errorf("local: socket %s: %w", c.opts.Socket, err)
		}
		defer os.Remove(c.opts.Socket)
		lns = append(lns, ln)
	}
	c.once.Do(func() { close(c.ready) })
	srv := &http.Server{Handler: c.Handler(h), ReadHeaderTimeout: 5 * time.Second, ConnContext: peerContext}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ln) }()
	}
	var first error
	for range lns {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && first == nil {
			first = fmt.Errorf("local: %w", err)
			_ = srv.Close()
		}
	}
	return first
}

type peerKey struct{}

// Peer is who is on the other end of a unix-socket connection.
type Peer struct {
	UID, PID int
	err      error
}

// peerContext reads a unix connection's peer credentials once, when it
// is accepted.
func peerContext(ctx context.Context, conn net.Conn) context.Context {
	if _, ok := conn.(*net.UnixConn); !ok {
		return ctx
	}
	var p Peer
	p.UID, p.PID, p.err = unixsock.PeerCred(conn)
	return context.WithValue(ctx, peerKey{}, p)
}

// Handler is the HTTP API, for mounting in tests.
func (c *Connector) Handler(h connectors.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", func(w http.ResponseWriter, r *http.Request) {
		peer, authErr := c.authenticate(r)
		if authErr != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parachute"`)
			httpError(w, authErr.code, authErr.msg)
			return
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
			MessageID: req.MessageID, Time: time.Now(), Peer: peer,
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
		if wantsEvents(r) {
			c.serveEvents(w, r, h, m)
			return
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
		if rep.busy > 0 {
			// Load shed: the gateway refused the message for want of
			// time, and says so in the status a client can act on.
			w.Header().Set("Retry-After", retryAfter(rep.busy))
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
	return mux
}

type authError struct {
	code int
	msg  string
}

// authenticate checks who sent r: on the unix socket the peer's uid must
// be the gateway's own or root; on TCP the bearer token, if one is
// configured. It returns the peer as logged ("uid:1000 pid:42" or
// "tcp:127.0.0.1:50123").
func (c *Connector) authenticate(r *http.Request) (string, *authError) {
	if p, ok := r.Context().Value(peerKey{}).(Peer); ok {
		if p.err != nil {
			return "", &authError{http.StatusForbidden, "the socket peer's credentials could not be read"}
		}
		if p.UID != os.Getuid() && p.UID != 0 {
			return "", &authError{http.StatusForbidden, fmt.Sprintf("uid %d may not use this socket; only uid %d and root may", p.UID, os.Getuid())}
		}
		return fmt.Sprintf("uid:%d pid:%d", p.UID, p.PID), nil
	}
	if c.opts.Token != "" {
		// Compare digests so the time taken says nothing about the
		// token's length either.
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		want := sha256.Sum256([]byte("Bearer " + c.opts.Token))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return "", &authError{http.StatusUnauthorized, "missing or wrong bearer token: send the header \"Authorization: Bearer <token>\" with the token from the variable the connector's token_env names"}
		}
	}
	return "tcp:" + r.RemoteAddr, nil
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// retryAfter is a Retry-After header value: whole seconds, rounded up,
// at least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Second-1)/time.Second)), 10)
}

// collector is the Replier of one HTTP request.
type collector struct {
	mu     sync.Mutex
	chunks []string
	busy   time.Duration // set by Busy: answer 503 with Retry-After
}

// Busy marks the reply as a busy one (connectors.BusyReplier).
func (c *collector) Busy(retryAfter time.Duration) {
	c.mu.Lock()
	c.busy = max(retryAfter, time.Nanosecond)
	c.mu.Unlock()
}

func (c *collector) SendText(_ context.Context, _ string, text string) error {
	c.mu.Lock()
	c.chunks = append(c.chunks, text)
	c.mu.Unlock()
	return nil
}

func (c *collector) Typing(context.Context, string) error { return nil }
