// Package discord is a fake of the Discord REST API and Gateway for tests,
// faithful to the documented behaviour the gateway relies on
// (https://discord.com/developers/docs/topics/gateway and .../reference):
//
// REST (under /api/v9/, "Authorization: Bot <token>", else 401
// {"message": "401: Unauthorized", "code": 0}):
//   - GET users/@me: the bot user;
//   - GET gateway and gateway/bot: {"url": "ws://…"} (gateway/bot also shards
//     and session_start_limit);
//   - POST channels/{id}/messages: JSON {content, allowed_mentions, flags};
//     content must be 1-2000 characters, else 400 code 50035 (too long) or
//     50006 (empty);
//   - PATCH channels/{id}/messages/{message id}: edit a message the bot sent
//     in that channel (else 404 code 10008 "Unknown Message"), content as
//     for POST; answered with the message;
//   - POST channels/{id}/typing: 204;
//   - rate limits: 429 {"message": "You are being rate limited.",
//     "retry_after": <seconds, float>, "global": false} with Retry-After.
//
// Gateway (WebSocket, JSON, no compression): the server sends HELLO (op 10,
// heartbeat_interval); the client sends IDENTIFY (op 2, token; a wrong
// token closes with 4004) and gets READY (op 0, s=1, session_id,
// resume_gateway_url), or RESUME (op 6, session_id, seq) and gets every
// dispatch after seq again, then RESUMED; a session that cannot be resumed
// is INVALID_SESSION (op 9, d=false). HEARTBEAT (op 1) is answered with
// HEARTBEAT_ACK (op 11). The server may send RECONNECT (op 7) or drop the
// connection at any time; tests do that with Reconnect and Drop.
package discord

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// The fake bot's own user.
const (
	BotID       = "900000000000000001"
	BotUsername = "parachute-test"
)

// Sent is one message the bot sent.
type Sent struct {
	ID              string
	ChannelID       string
	Content         string          // as sent; Current has the text after edits
	AllowedMentions json.RawMessage // as sent; nil when absent
	Flags           int
}

// Server is the fake Discord.
type Server struct {
	*httptest.Server
	Token string
	// HeartbeatInterval is sent in HELLO (default 45s, as Discord).
	HeartbeatInterval time.Duration
	// GatewayToken, if set, is the token IDENTIFY must carry instead of
	// Token (to test a token the gateway refuses with close code 4004).
	GatewayToken string
	// ReplayOverlap makes a RESUME replay this many dispatches the client
	// had already seen, as an at-least-once gateway may.
	ReplayOverlap int

	mu         sync.Mutex
	sess       *session
	conn       *wsConn
	sent       []Sent
	current    map[string]string // message ID → content after edits
	edits      []Edit
	typing     int
	limitNext  int
	retryAfter float64
	identifies int
	resumes    int
	heartbeats int
	nextID     atomic.Int64
	changed    chan struct{} // closed (and dropped) at the next change a test can see: Changed
}

type session struct {
	id        string
	events    []event // every dispatch, seq = index+1
	resumable bool
}

type event struct {
	seq int64
	raw []byte
}

type wsConn struct {
	mu sync.Mutex
	c  *websocket.Conn
}

func (w *wsConn) send(v any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c.WriteJSON(v)
}

// New starts a fake for token (without the "Bot " prefix).
func New(token string) *Server {
	s := &Server{Token: token, HeartbeatInterval: 45 * time.Second, retryAfter: 0.05}
	s.nextID.Store(1300000000000000000)
	mux := http.NewServeMux()
	mux.HandleFunc("/gateway-ws", s.gateway)
	mux.HandleFunc("/gateway-ws/", s.gateway) // discordgo adds a slash before ?v=
	mux.HandleFunc("/api/v9/", s.rest)
	s.Server = httptest.NewServer(mux)
	return s
}

// Base is the API base URL to point discordgo at (…/api/v9/).
func (s *Server) Base() string { return s.URL + "/api/v9/" }

// NewID returns a fresh snowflake.
func (s *Server) NewID() string { return strconv.FormatInt(s.nextID.Add(1), 10) }

func apiError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"message": msg, "code": code})
}

func (s *Server) rest(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bot "+s.Token {
		apiError(w, 401, 0, "401: Unauthorized")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/api/v9/")
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/gateway-ws"
	switch {
	case r.Method == http.MethodGet && path == "users/@me":
		writeJSON(w, 200, map[string]any{"id": BotID, "username": BotUsername, "discriminator": "0", "bot": true})
	case r.Method == http.MethodGet && path == "gateway":
		writeJSON(w, 200, map[string]any{"url": wsURL})
	case r.Method == http.MethodGet && path == "gateway/bot":
		writeJSON(w, 200, map[string]any{"url": wsURL, "shards": 1,
			"session_start_limit": map[string]any{"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1}})
	case r.Method == http.MethodPost && strings.HasPrefix(path, "channels/") && strings.HasSuffix(path, "/typing"):
		s.mu.Lock()
		s.typing++
		s.unlockChanged()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPatch && strings.HasPrefix(path, "channels/") && strings.Count(path, "/") == 3 && strings.Split(path, "/")[2] == "messages":
		parts := strings.Split(path, "/")
		s.editMessage(w, r, parts[1], parts[3])
	case r.Method == http.MethodPost && strings.HasPrefix(path, "channels/") && strings.HasSuffix(path, "/messages"):
		s.createMessage(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "channels/"), "/messages"))
	default:
		apiError(w, 404, 0, "404: Not Found")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) createMessage(w http.ResponseWriter, r *http.Request, channel string) {
	s.mu.Lock()
	if s.limitNext > 0 {
		s.limitNext--
		ra := s.retryAfter
		s.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(int(ra+0.999)))
		writeJSON(w, 429, map[string]any{"message": "You are being rate limited.", "retry_after": ra, "global": false})
		return
	}
	s.mu.Unlock()
	var body struct {
		Content         string          `json:"content"`
		AllowedMentions json.RawMessage `json:"allowed_mentions"`
		Flags           int             `json:"flags"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		apiError(w, 400, 50109, "The request body contains invalid JSON.")
		return
	}
	switch n := utf8.RuneCountInString(body.Content); {
	case strings.TrimSpace(body.Content) == "":
		apiError(w, 400, 50006, "Cannot send an empty message")
		return
	case n > 2000:
		writeJSON(w, 400, map[string]any{"code": 50035, "message": "Invalid Form Body", "errors": map[string]any{
			"content": map[string]any{"_errors": []any{map[string]any{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}}}}})
		return
	}
	id := s.NewID()
	s.mu.Lock()
	s.sent = append(s.sent, Sent{ID: id, ChannelID: channel, Content: body.Content, AllowedMentions: body.AllowedMentions, Flags: body.Flags})
	if s.current == nil {
		s.current = map[string]string{}
	}
	s.current[id] = body.Content
	s.unlockChanged()
	writeJSON(w, 200, map[string]any{"id": id, "channel_id": channel, "content": body.Content, "type": 0,
		"author": map[string]any{"id": BotID, "username": BotUsername, "bot": true}, "timestamp": time.Now().UTC().Format(time.RFC3339)})
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// gateway serves one gateway connection; one at a time, as one shard.
func (s *Server) gateway(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	conn := &wsConn{c: c}
	defer c.Close()
	if err := conn.send(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": s.HeartbeatInterval.Milliseconds()}}); err != nil {
		return
	}
	for {
		var p struct {
			Op int             `json:"op"`
			D  json.RawMessage `json:"d"`
		}
		if err := c.ReadJSON(&p); err != nil {
			s.detach(conn)
			return
		}
		switch p.Op {
		case 1:
			s.mu.Lock()
			s.heartbeats++
			s.unlockChanged()
			_ = conn.send(map[string]any{"op": 11})
		case 2:
			var d struct {
				Token string `json:"token"`
			}
			_ = json.Unmarshal(p.D, &d)
			want := s.Token
			if s.GatewayToken != "" {
				want = s.GatewayToken
			}
			if strings.TrimPrefix(d.Token, "Bot ") != want {
				_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4004, "Authentication failed."), time.Now().Add(time.Second))
				return
			}
			s.identify(conn)
		case 6:
			var d struct {
				Token     string `json:"token"`
				SessionID string `json:"session_id"`
				Seq       int64  `json:"seq"`
			}
			_ = json.Unmarshal(p.D, &d)
			s.resume(conn, d.Token, d.SessionID, d.Seq)
		}
	}
}

func (s *Server) identify(conn *wsConn) {
	s.mu.Lock()
	s.identifies++
	s.sess = &session{id: fmt.Sprintf("session-%d", s.identifies), resumable: true}
	s.conn = conn
	ready := map[string]any{"v": 9, "session_id": s.sess.id,
		"resume_gateway_url": "ws" + strings.TrimPrefix(s.URL, "http") + "/gateway-ws",
		"user":               map[string]any{"id": BotID, "username": BotUsername, "bot": true},
		"guilds":             []any{}, "private_channels": []any{}}
	raw := s.record("READY", ready)
	s.unlockChanged()
	_ = conn.sendRaw(raw)
}

func (s *Server) resume(conn *wsConn, token, id string, seq int64) {
	s.mu.Lock()
	s.resumes++
	if s.sess == nil || s.sess.id != id || !s.sess.resumable || strings.TrimPrefix(token, "Bot ") != s.Token {
		s.unlockChanged()
		_ = conn.send(map[string]any{"op": 9, "d": false})
		return
	}
	from := max(seq-int64(s.ReplayOverlap), 0)
	var replay [][]byte
	for _, e := range s.sess.events {
		if e.seq > from {
			replay = append(replay, e.raw)
		}
	}
	s.conn = conn
	resumed := s.record("RESUMED", map[string]any{})
	s.unlockChanged()
	for _, raw := range replay {
		_ = conn.sendRaw(raw)
	}
	_ = conn.sendRaw(resumed)
}

func (w *wsConn) sendRaw(raw []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c.WriteMessage(websocket.TextMessage, raw)
}

// record appends a dispatch to the session's log; s.mu is held.
func (s *Server) record(typ string, d any) []byte {
	seq := int64(len(s.sess.events) + 1)
	raw, _ := json.Marshal(map[string]any{"op": 0, "t": typ, "s": seq, "d": d})
	s.sess.events = append(s.sess.events, event{seq, raw})
	return raw
}

func (s *Server) detach(conn *wsConn) {
	s.mu.Lock()
	if s.conn == conn {
		s.conn = nil
	}
	s.unlockChanged()
}

// Dispatch sends an event (op 0) on the current session: to the live
// connection if there is one, else only to the log a RESUME replays. It
// reports whether a session exists.
func (s *Server) Dispatch(typ string, d any) bool {
	s.mu.Lock()
	if s.sess == nil {
		s.mu.Unlock()
		return false
	}
	raw := s.record(typ, d)
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		_ = conn.sendRaw(raw)
	}
	return true
}

// DispatchRaw sends a dispatch whose d is raw JSON (malformed on purpose).
func (s *Server) DispatchRaw(typ, d string) bool { return s.Dispatch(typ, json.RawMessage(d)) }

// Message describes a MESSAGE_CREATE (or MESSAGE_UPDATE when Edit).
type Message struct {
	ID         string // "": a fresh snowflake
	ChannelID  string
	GuildID    string // "": a DM
	AuthorID   string
	Username   string
	GlobalName string
	Nick       string // guild nickname
	Bot        bool
	Content    string
	MentionBot bool // lists the bot in mentions (content should hold <@BotID>)
	ReplyToBot bool
	Edit       bool
}

// Send dispatches m and returns its ID.
func (s *Server) Send(m Message) string {
	if m.ID == "" {
		m.ID = s.NewID()
	}
	d := map[string]any{
		"id": m.ID, "channel_id": m.ChannelID, "content": m.Content, "type": 0,
		"timestamp": time.Now().UTC().Format(time.RFC3339),
		"author":    map[string]any{"id": m.AuthorID, "username": m.Username, "global_name": m.GlobalName, "bot": m.Bot},
		"mentions":  []any{},
	}
	if m.GuildID != "" {
		d["guild_id"] = m.GuildID
		d["member"] = map[string]any{"nick": m.Nick, "roles": []any{}}
	}
	if m.MentionBot {
		d["mentions"] = []any{map[string]any{"id": BotID, "username": BotUsername, "bot": true}}
	}
	if m.ReplyToBot {
		d["type"] = 19
		d["message_reference"] = map[string]any{"message_id": "1", "channel_id": m.ChannelID}
		d["referenced_message"] = map[string]any{"id": "1", "channel_id": m.ChannelID, "content": "earlier",
			"author": map[string]any{"id": BotID, "username": BotUsername, "bot": true}}
	}
	typ := "MESSAGE_CREATE"
	if m.Edit {
		typ = "MESSAGE_UPDATE"
		d["edited_timestamp"] = time.Now().UTC().Format(time.RFC3339)
	}
	s.Dispatch(typ, d)
	return m.ID
}

// Drop closes the live gateway connection without a close frame, as a
// network failure would. The session stays resumable.
func (s *Server) Drop() {
	s.mu.Lock()
	conn := s.conn
	s.conn = nil
	s.unlockChanged()
	if conn != nil {
		_ = conn.c.UnderlyingConn().Close()
	}
}

// Reconnect sends RECONNECT (op 7): the client must reconnect and resume.
func (s *Server) Reconnect() {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		_ = conn.send(map[string]any{"op": 7, "d": nil})
	}
}

// InvalidateSession makes the current session unresumable: the next
// RESUME gets INVALID_SESSION (op 9) and the client must identify again.
func (s *Server) InvalidateSession() {
	s.mu.Lock()
	if s.sess != nil {
		s.sess.resumable = false
	}
	s.mu.Unlock()
}

// RateLimit makes the next n message creations 429 with retry_after secs.
func (s *Server) RateLimit(n int, secs float64) {
	s.mu.Lock()
	s.limitNext, s.retryAfter = n, secs
	s.mu.Unlock()
}

// Changed returns a channel closed at the next change a test can see
// (a message sent or edited, a typing call, a heartbeat, an IDENTIFY or
// RESUME, a connection gone), so a test waits on the event instead of
// polling: take Changed, check the condition, then wait on the channel.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// unlockChanged wakes Changed's waiters and unlocks s.mu.
func (s *Server) unlockChanged() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	s.mu.Unlock()
}

// Sent returns the messages the bot sent.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// Connected reports whether a gateway connection holds the session.
func (s *Server) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

// Stats are gateway counters.
type Stats struct{ Identifies, Resumes, Heartbeats, Typing int }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{s.identifies, s.resumes, s.heartbeats, s.typing}
}

// Edit is one message edit the bot made.
type Edit struct {
	ChannelID, MessageID, Content string
	AllowedMentions               json.RawMessage
	At                            time.Time // by the caller's clock
}

func (s *Server) editMessage(w http.ResponseWriter, r *http.Request, channel, id string) {
	var body struct {
		Content         string          `json:"content"`
		AllowedMentions json.RawMessage `json:"allowed_mentions"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		apiError(w, 400, 50109, "The request body contains invalid JSON.")
		return
	}
	switch n := utf8.RuneCountInString(body.Content); {
	case strings.TrimSpace(body.Content) == "":
		apiError(w, 400, 50006, "Cannot send an empty message")
		return
	case n > 2000:
		apiError(w, 400, 50035, "Invalid Form Body")
		return
	}
	s.mu.Lock()
	known := false
	for _, m := range s.sent {
		known = known || (m.ID == id && m.ChannelID == channel)
	}
	if !known {
		s.mu.Unlock()
		apiError(w, 404, 10008, "Unknown Message")
		return
	}
	s.current[id] = body.Content
	s.edits = append(s.edits, Edit{ChannelID: channel, MessageID: id, Content: body.Content, AllowedMentions: body.AllowedMentions, At: time.Now()})
	s.unlockChanged()
	writeJSON(w, 200, map[string]any{"id": id, "channel_id": channel, "content": body.Content, "type": 0,
		"author": map[string]any{"id": BotID, "username": BotUsername, "bot": true}, "timestamp": time.Now().UTC().Format(time.RFC3339),
		"edited_timestamp": time.Now().UTC().Format(time.RFC3339)})
}

// Edits returns the edits made so far, in order.
func (s *Server) Edits() []Edit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Edit(nil), s.edits...)
}

// Current is the content of message id after its edits ("" if unknown).
func (s *Server) Current(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current[id]
}
