package telegram

import (
	"encoding/json"
	"strconv"
	"sync"
)

// Telegram lets a bot write to a user in a private chat only once the user
// has started the bot (written to it): before that, sendMessage to the
// user's ID is 403 "Forbidden: bot can't initiate conversation with a
// user". A user who blocked the bot gets 403 "Forbidden: bot was blocked by
// the user". The fake enforces this once RequireStart is set; private
// chats have the user's (positive) ID, groups negative ones.

// dmGate tracks who may be written to privately.
type dmGate struct {
	mu      sync.Mutex
	on      bool
	started map[string]bool
	blocked map[string]bool
}

// RequireStart makes sendMessage to a private chat whose user never wrote
// to the bot (pushed a message in a private chat) fail with 403, as
// Telegram does.
func (s *Server) RequireStart(v bool) {
	s.dm.mu.Lock()
	s.dm.on = v
	s.dm.mu.Unlock()
}

// Block makes sendMessage to userID's private chat fail with 403, as after
// the user blocked the bot.
func (s *Server) Block(userID int64) {
	s.dm.mu.Lock()
	defer s.dm.mu.Unlock()
	if s.dm.blocked == nil {
		s.dm.blocked = map[string]bool{}
	}
	s.dm.blocked[strconv.FormatInt(userID, 10)] = true
}

// noteStarted marks the sender of a pushed private message as started.
func (s *Server) noteStarted(raw string) {
	var u struct {
		Message *struct {
			From struct{ ID int64 } `json:"from"`
			Chat struct {
				Type string `json:"type"`
			} `json:"chat"`
		} `json:"message"`
	}
	if json.Unmarshal([]byte(raw), &u) != nil || u.Message == nil || u.Message.Chat.Type != "private" {
		return
	}
	s.dm.mu.Lock()
	defer s.dm.mu.Unlock()
	if s.dm.started == nil {
		s.dm.started = map[string]bool{}
	}
	s.dm.started[strconv.FormatInt(u.Message.From.ID, 10)] = true
}

// dmRefusal is the 403 description for a message to chat, or "".
func (s *Server) dmRefusal(chat string) string {
	s.dm.mu.Lock()
	defer s.dm.mu.Unlock()
	if id, err := strconv.ParseInt(chat, 10, 64); err != nil || id <= 0 {
		return "" // not a private chat
	}
	switch {
	case s.dm.blocked[chat]:
		return "Forbidden: bot was blocked by the user"
	case s.dm.on && !s.dm.started[chat]:
		return "Forbidden: bot can't initiate conversation with a user"
	}
	return ""
}
