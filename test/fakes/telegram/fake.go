// Package telegram is a fake of the Telegram Bot API for tests, faithful to
// the documented behaviour the gateway relies on
// (https://core.telegram.org/bots/api):
//
//   - every method is POST /bot<token>/<method>; a wrong token is 401
//     {"ok":false,"error_code":401,"description":"Unauthorized"};
//   - getUpdates: an offset confirms (forgets) every update with a smaller
//     update_id; a negative offset -N returns the last N updates and forgets
//     the earlier ones; timeout > 0 long-polls until an update arrives;
//     limit caps the batch (1-100, default 100);
//   - sendMessage: text must be 1-4096 characters after entity parsing
//     (counted in UTF-16 code units) else 400 "Bad Request: message is too
//     long" / "message text is empty";
//   - flood control: 429 with parameters.retry_after in seconds;
//   - setWebhook stores url and secret_token (1-256 characters of A-Z, a-z,
//     0-9, _ and -, else 400); while a webhook is set getUpdates is 409
//     "Conflict: can't use getUpdates method while webhook is active";
//     deleteWebhook removes it;
//   - sendChatAction needs chat_id and action;
//   - with RequireStart, sendMessage to a user who never wrote to the bot
//     is 403 "Forbidden: bot can't initiate conversation with a user"
//     (started.go);
//   - editMessageText needs chat_id and the message_id of a message the bot
//     sent in that chat (else 400 "message to edit not found"), text as
//     sendMessage, and a text that differs from the current one (else 400
//     "message is not modified").
//
// Tests push updates (as JSON, so malformed ones too), inject failures and
// read what the bot sent.
package telegram

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// BotID and BotUsername are the fake bot's own identity.
const (
	BotID       = 999000
	BotUsername = "parachute_test_bot"
)

// Sent is one message the bot sent.
type Sent struct {
	ChatID    string
	Text      string
	ParseMode string
}

// Edit is one editMessageText the bot made.
type Edit struct {
	ChatID    string
	MessageID int
	Text      string
	At        time.Time // by the clock of the caller (fake time in a synctest bubble)
}

// Server is the fake Bot API.
type Server struct {
	*httptest.Server
	Token string

	mu         sync.Mutex
	updates    []update // unconfirmed, in push order
	wake       chan struct{}
	sent       []Sent
	changed    chan struct{} // closed (and dropped) at the next send, edit or getUpdates: Changed
	current    []string      // text of sent[i] after edits
	edits      []Edit
	actions    int
	nextID     int64
	failNext   int // getUpdates answered with 502 this many times
	floodNext  int // sendMessage answered with 429 this many times
	retryAfter int
	calls      map[string]int
	webhookURL string
	webhookSec string
	noTimeout  bool // getUpdates answers at once, whatever timeout says

	dm dmGate // who may be written to privately: started.go
}

type update struct {
	id  int64
	raw json.RawMessage
}

// New starts a fake for token.
func New(token string) *Server {
	s := &Server{Token: token, wake: make(chan struct{}), nextID: 100, calls: map[string]int{}, retryAfter: 1}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// NewInMemory is a fake with no listener: reach it through Transport (an
// http.RoundTripper calling the handler directly), so it runs inside a
// testing/synctest bubble, where real sockets would keep fake time still.
func NewInMemory(token string) *Server {
	return &Server{Token: token, wake: make(chan struct{}), nextID: 100, calls: map[string]int{}, retryAfter: 1}
}

// Transport serves requests with the fake's handler, in process.
func (s *Server) Transport() http.RoundTripper { return inMemory{s} }

type inMemory struct{ s *Server }

func (m inMemory) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	m.s.serve(rec, r)
	return rec.Result(), nil
}

// IgnoreTimeout makes getUpdates answer at once, empty if there is
// nothing, as a server that ignores the long-poll timeout does.
func (s *Server) IgnoreTimeout(v bool) { s.mu.Lock(); s.noTimeout = v; s.mu.Unlock() }

// Endpoint is the tgbotapi endpoint format for this fake.
func (s *Server) Endpoint() string { return s.URL + "/bot%s/%s" }

// PushRaw queues an update given as raw JSON; its update_id is read from it
// (0 when absent or malformed).
func (s *Server) PushRaw(raw string) {
	s.noteStarted(raw)
	var head struct {
		UpdateID int64 `json:"update_id"`
	}
	_ = json.Unmarshal([]byte(raw), &head)
	s.mu.Lock()
	s.nextID = max(s.nextID, head.UpdateID)
	s.updates = append(s.updates, update{head.UpdateID, json.RawMessage(raw)})
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

// Message describes a text message to push.
type Message struct {
	UpdateID   int64 // 0: the next free ID
	MessageID  int64 // 0: same as the update ID
	FromID     int64
	FirstName  string
	Username   string
	ChatID     int64
	ChatType   string // private, group, supergroup, channel
	Text       string
	ReplyToBot bool
	Edited     bool
	Date       time.Time // when it was sent; zero: now
}

func date(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// Push queues a text message update and returns its update_id.
func (s *Server) Push(m Message) int64 {
	s.mu.Lock()
	if m.UpdateID == 0 {
		s.nextID++
		m.UpdateID = s.nextID
	} else if m.UpdateID > s.nextID {
		s.nextID = m.UpdateID
	}
	s.mu.Unlock()
	if m.MessageID == 0 {
		m.MessageID = m.UpdateID
	}
	if m.ChatType == "" {
		m.ChatType = "private"
	}
	if m.ChatID == 0 {
		m.ChatID = m.FromID
	}
	msg := map[string]any{
		"message_id": m.MessageID,
		"from":       map[string]any{"id": m.FromID, "is_bot": false, "first_name": m.FirstName, "username": m.Username},
		"chat":       map[string]any{"id": m.ChatID, "type": m.ChatType},
		"date":       date(m.Date).Unix(),
		"text":       m.Text,
	}
	if m.ReplyToBot {
		msg["reply_to_message"] = map[string]any{
			"message_id": 1, "date": time.Now().Unix(), "text": "earlier bot text",
			"from": map[string]any{"id": BotID, "is_bot": true, "first_name": "Parachute", "username": BotUsername},
			"chat": map[string]any{"id": m.ChatID, "type": m.ChatType},
		}
	}
	key := "message"
	if m.Edited {
		key = "edited_message"
		msg["edit_date"] = time.Now().Unix()
	}
	raw, _ := json.Marshal(map[string]any{"update_id": m.UpdateID, key: msg})
	s.PushRaw(string(raw))
	return m.UpdateID
}

// FailGetUpdates makes the next n getUpdates calls fail with 502.
func (s *Server) FailGetUpdates(n int) { s.mu.Lock(); s.failNext = n; s.mu.Unlock() }

// Flood makes the next n sendMessage calls fail with 429, retry_after secs.
func (s *Server) Flood(n, secs int) {
	s.mu.Lock()
	s.floodNext, s.retryAfter = n, secs
	s.mu.Unlock()
}

// Sent returns the messages sent so far.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// Calls is how often method was called.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Pending is the number of unconfirmed updates.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.updates)
}

// Changed returns a channel closed at the next message sent or edited or
// the next getUpdates (which confirms updates), so a test waits on the
// event instead of polling: take Changed, check the condition (Sent,
// Current, Pending), then wait on the channel.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// notifyLocked wakes Changed's waiters; s.mu is held.
func (s *Server) notifyLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// WaitSent waits until at least n messages were sent or d passes, and
// returns what was sent by then (fewer than n after a timeout: the caller
// checks).
func (s *Server) WaitSent(n int, d time.Duration) []Sent {
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		ch := s.Changed()
		if got := s.Sent(); len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-timeout.C:
			return s.Sent()
		}
	}
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, desc string, params map[string]any) {
	body := map[string]any{"ok": false, "error_code": code, "description": desc}
	if params != nil {
		body["parameters"] = params
	}
	reply(w, code, body)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	tokPart, method, ok := strings.Cut(path, "/")
	if !ok || !strings.HasPrefix(tokPart, "bot") {
		fail(w, 404, "Not Found", nil)
		return
	}
	if tokPart[3:] != s.Token {
		fail(w, 401, "Unauthorized", nil)
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(w, 400, "Bad Request: "+err.Error(), nil)
		return
	}
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
	switch method {
	case "getMe":
		reply(w, 200, map[string]any{"ok": true, "result": map[string]any{"id": BotID, "is_bot": true, "first_name": "Parachute", "username": BotUsername}})
	case "getUpdates":
		s.getUpdates(w, r)
	case "sendMessage":
		s.sendMessage(w, r)
	case "editMessageText":
		s.editMessageText(w, r)
	case "sendChatAction":
		if r.FormValue("chat_id") == "" || r.FormValue("action") == "" {
			fail(w, 400, "Bad Request: chat_id and action are required", nil)
			return
		}
		s.mu.Lock()
		s.actions++
		s.mu.Unlock()
		reply(w, 200, map[string]any{"ok": true, "result": true})
	case "setWebhook":
		s.setWebhook(w, r)
	case "deleteWebhook":
		s.mu.Lock()
		s.webhookURL, s.webhookSec = "", ""
		s.mu.Unlock()
		reply(w, 200, map[string]any{"ok": true, "result": true, "description": "Webhook was deleted"})
	default:
		fail(w, 404, "Not Found: method not found", nil)
	}
}

func (s *Server) setWebhook(w http.ResponseWriter, r *http.Request) {
	u, sec := r.FormValue("url"), r.FormValue("secret_token")
	if len(sec) > 256 || strings.TrimFunc(sec, func(c rune) bool {
		return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}) != "" {
		fail(w, 400, "Bad Request: secret token contains unallowed characters", nil)
		return
	}
	s.mu.Lock()
	s.webhookURL, s.webhookSec = u, sec
	s.mu.Unlock()
	reply(w, 200, map[string]any{"ok": true, "result": true, "description": "Webhook was set"})
}

// Webhook is the webhook URL and secret token set with setWebhook.
func (s *Server) Webhook() (url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.webhookURL, s.webhookSec
}

// ChatActions is how many chat actions (typing) were sent.
func (s *Server) ChatActions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.actions
}

func (s *Server) getUpdates(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	hooked := s.webhookURL != ""
	noTimeout := s.noTimeout
	s.mu.Unlock()
	if hooked {
		fail(w, 409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first", nil)
		return
	}
	offset, _ := strconv.ParseInt(r.FormValue("offset"), 10, 64)
	timeout, _ := strconv.Atoi(r.FormValue("timeout"))
	if noTimeout {
		timeout = 0
	}
	limit, _ := strconv.Atoi(r.FormValue("limit"))
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	deadline := time.Now().Add(time.Duration(timeout) * time.Second)
	for {
		s.mu.Lock()
		if s.failNext > 0 {
			s.failNext--
			s.mu.Unlock()
			fail(w, 502, "Bad Gateway", nil)
			return
		}
		// Confirm: forget what the offset acknowledges.
		if offset < 0 {
			n := int(-offset)
			if n < len(s.updates) {
				s.updates = append([]update(nil), s.updates[len(s.updates)-n:]...)
			}
		} else if offset > 0 {
			kept := s.updates[:0]
			for _, u := range s.updates {
				if u.id >= offset {
					kept = append(kept, u)
				}
			}
			s.updates = kept
		}
		s.notifyLocked() // Pending may have changed
		batch := s.updates
		if len(batch) > limit {
			batch = batch[:limit]
		}
		out := make([]json.RawMessage, len(batch))
		for i, u := range batch {
			out[i] = u.raw
		}
		wake := s.wake
		s.mu.Unlock()
		if len(out) > 0 || timeout <= 0 || !time.Now().Before(deadline) {
			reply(w, 200, map[string]any{"ok": true, "result": out})
			return
		}
		select {
		case <-wake:
		case <-time.After(time.Until(deadline)):
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request) {
	text := r.FormValue("text")
	chat := r.FormValue("chat_id")
	s.mu.Lock()
	if s.floodNext > 0 {
		s.floodNext--
		ra := s.retryAfter
		s.mu.Unlock()
		fail(w, 429, fmt.Sprintf("Too Many Requests: retry after %d", ra), map[string]any{"retry_after": ra})
		return
	}
	s.mu.Unlock()
	switch n := len(utf16.Encode([]rune(text))); {
	case chat == "":
		fail(w, 400, "Bad Request: chat_id is empty", nil)
		return
	case strings.TrimSpace(text) == "":
		fail(w, 400, "Bad Request: message text is empty", nil)
		return
	case n > 4096:
		fail(w, 400, "Bad Request: message is too long", nil)
		return
	case s.dmRefusal(chat) != "":
		fail(w, 403, s.dmRefusal(chat), nil)
		return
	}
	s.mu.Lock()
	s.sent = append(s.sent, Sent{ChatID: chat, Text: text, ParseMode: r.FormValue("parse_mode")})
	s.current = append(s.current, text)
	id := len(s.sent)
	s.notifyLocked()
	s.mu.Unlock()
	cid, _ := strconv.ParseInt(chat, 10, 64)
	reply(w, 200, map[string]any{"ok": true, "result": map[string]any{
		"message_id": id, "date": time.Now().Unix(), "text": text,
		"chat": map[string]any{"id": cid, "type": "private"},
	}})
}

func (s *Server) editMessageText(w http.ResponseWriter, r *http.Request) {
	text, chat := r.FormValue("text"), r.FormValue("chat_id")
	id, _ := strconv.Atoi(r.FormValue("message_id"))
	switch n := len(utf16.Encode([]rune(text))); {
	case strings.TrimSpace(text) == "":
		fail(w, 400, "Bad Request: message text is empty", nil)
		return
	case n > 4096:
		fail(w, 400, "Bad Request: MESSAGE_TOO_LONG", nil)
		return
	}
	s.mu.Lock()
	if id < 1 || id > len(s.sent) || s.sent[id-1].ChatID != chat {
		s.mu.Unlock()
		fail(w, 400, "Bad Request: message to edit not found", nil)
		return
	}
	if s.current[id-1] == text {
		s.mu.Unlock()
		fail(w, 400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message", nil)
		return
	}
	s.current[id-1] = text
	s.edits = append(s.edits, Edit{ChatID: chat, MessageID: id, Text: text, At: time.Now()})
	s.notifyLocked()
	s.mu.Unlock()
	cid, _ := strconv.ParseInt(chat, 10, 64)
	reply(w, 200, map[string]any{"ok": true, "result": map[string]any{
		"message_id": id, "date": time.Now().Unix(), "edit_date": time.Now().Unix(), "text": text,
		"chat": map[string]any{"id": cid, "type": "private"},
	}})
}

// Edits returns the edits made so far, in order.
func (s *Server) Edits() []Edit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Edit(nil), s.edits...)
}

// Current is the text of the message with id (1 is the first sent) after
// its edits; "" if there is no such message.
func (s *Server) Current(id int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > len(s.current) {
		return ""
	}
	return s.current[id-1]
}
