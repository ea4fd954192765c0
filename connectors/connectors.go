// Package connectors brings chat platforms into the gateway. Every platform
// connector (Telegram, Discord, Matrix, local HTTP) turns what it receives
// into a Message, hands it to a Router with a Replier for answering, and the
// Router does the rest: duplicate suppression, per-chat ordering, commands,
// the policy decision, the agent turn and reply chunking.
//
// Identity is always "<connector type>:<platform user id>" (Telegram from.id,
// Discord snowflake, Matrix MXID, local user name). Display names are carried
// for show only and never reach a decision as anything but a label.
package connectors

import (
	"context"
	"errors"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// Chat kinds, as the message policy sees them.
const (
	KindDM      = "dm"
	KindGroup   = "group"
	KindChannel = "channel"
)

// Message is one inbound chat message, normalised by a platform connector.
type Message struct {
	Connector   string    // connector name from the config
	Type        string    // telegram, discord, matrix, local
	UserID      string    // platform user ID (never a name)
	DisplayName string    // for show only; grants nothing
	ChatID      string    // platform chat/channel/room ID
	ChatKind    string    // KindDM, KindGroup or KindChannel
	Mentioned   bool      // the bot was mentioned or replied to
	Unverified  bool      // the platform could not verify the sender (Matrix E2EE)
	Text        string    // the message text, with any bot mention left in
	MessageID   string    // platform message ID, unique per connector
	Time        time.Time // when the platform says it was sent
	// Peer is how the sender reached a local connector ("uid:1000 pid:42"
	// on its unix socket, "tcp:127.0.0.1:50123" on TCP); logged with the
	// message, never decided on. Empty for chat platforms.
	Peer string
	// Edit marks an edit of an earlier message (Telegram edited_message,
	// Discord MESSAGE_UPDATE, Matrix m.replace). Edits never run anything.
	Edit bool
}

// Identity is the sender's identity, "<type>:<platform user id>".
func (m *Message) Identity() string { return m.Type + ":" + m.UserID }

// Replier answers in the chat a message came from. Connectors implement it.
type Replier interface {
	// SendText sends one chunk of text, already within the platform limit.
	SendText(ctx context.Context, chatID, text string) error
	// Typing shows a typing indicator, if the platform has one.
	Typing(ctx context.Context, chatID string) error
}

// Handler receives normalised messages. The Router implements it; platform
// connectors call it.
type Handler interface {
	Handle(ctx context.Context, m *Message, r Replier) error
}

// Decider decides a policy input. *engine.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in engine.Input) engine.Decision
}

// TurnRequest is one allowed message handed to the agent.
type TurnRequest struct {
	// SessionKey names the session this turn belongs to: per user (and per
	// chat in groups) unless policy shares one session per chat.
	SessionKey string
	// TurnID links the message decision to every tool call, model call
	// and egress the turn causes (the message decision's ID).
	TurnID   string
	Identity string
	Message  *Message
	Result   engine.MessageResult
	Binding  *engine.Binding
	// Input is the message input Result was decided on, so a reload can
	// re-evaluate the decision a live session runs under.
	Input engine.MessageInput
	// Progress, when not nil, is called with the reply so far each time
	// the agent reports progress (docs/agent.md), for a connector that
	// streams (Streamer). It must not block; it is never decided on.
	Progress func(text string)
}

// Turns runs agent turns. The gateway's session manager implements it.
type Turns interface {
	// Turn runs one turn and returns the agent's reply.
	Turn(ctx context.Context, req TurnRequest) (string, error)
	// NewSession ends the session named by req.SessionKey so the next turn
	// starts afresh (/new).
	NewSession(ctx context.Context, req TurnRequest) error
}

// EchoTurns is a Turns that replies with the message text: for tests,
// benchmarks and `parachute serve --echo`.
type EchoTurns struct{}

// Turn implements Turns.
func (EchoTurns) Turn(_ context.Context, req TurnRequest) (string, error) {
	return req.Message.Text, nil
}

// NewSession implements Turns.
func (EchoTurns) NewSession(context.Context, TurnRequest) error { return nil }

// Connector is a running platform connector.
type Connector interface {
	// Name is the connector's name from the config.
	Name() string
	// Run receives messages until ctx ends, reconnecting with backoff on
	// network errors. It returns nil when ctx ends, or an error that makes
	// further attempts pointless (a rejected token).
	Run(ctx context.Context, h Handler) error
}

// Errors of the router and connectors; check with errors.Is.
var (
	// ErrMalformed: the platform sent something that cannot be a message.
	ErrMalformed = errors.New("malformed message")
	// ErrUnauthorized: the platform refused the bot's credentials.
	ErrUnauthorized = errors.New("platform refused the bot credentials")
)
