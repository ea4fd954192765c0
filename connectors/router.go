package connectors

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/engine"
)

// Pairing is the part of the pairing store the router uses;
// *pairing.Store implements it.
type Pairing interface {
	Binding(ctx context.Context, connector, identity string) (*engine.Binding, error)
	RedeemInvite(ctx context.Context, connector, identity, token string) (*engine.Binding, error)
	RequestCode(ctx context.Context, connector, identity, displayName string) (pairing.Pending, error)
}

// RouterOptions configure a Router.
type RouterOptions struct {
	Decider Decider // required: the policy engine
	Turns   Turns   // required: the session manager
	Pairing Pairing // nil: no bindings, no invites, no pairing
	Logger  zerolog.Logger
	// MaxText is the longest message text, in runes, handed to the agent
	// (default 16,000). Longer ones are refused with a reply.
	MaxText int
	// DedupWindow and DedupMax bound duplicate suppression (defaults 24h,
	// 100,000 message IDs).
	DedupWindow time.Duration
	DedupMax    int
	// Seen, if set, is the durable duplicate filter (the gateway's, in its
	// state dir); without it duplicates are remembered in memory only.
	Seen *SeenStore
}

// Router handles every connector's messages: it is the Handler platform
// connectors call. Safe for concurrent use; messages of one chat are
// handled one at a time, in arrival order.
type Router struct {
	decider Decider
	turns   Turns
	pairing Pairing
	log     zerolog.Logger
	maxText int
	dedup   *Dedup
	seen    *SeenStore
	locks   *KeyLocks
}

// NewRouter returns a Router.
func NewRouter(opts RouterOptions) (*Router, error) {
	if opts.Decider == nil || opts.Turns == nil {
		return nil, errors.New("connectors: router needs a Decider and Turns")
	}
	r := &Router{
		decider: opts.Decider,
		turns:   opts.Turns,
		pairing: opts.Pairing,
		log:     opts.Logger,
		maxText: opts.MaxText,
		dedup:   NewDedup(opts.DedupMax, opts.DedupWindow),
		seen:    opts.Seen,
		locks:   NewKeyLocks(),
	}
	if r.maxText <= 0 {
		r.maxText = 16000
	}
	return r, nil
}

// Commands the router knows. Any other "/word" is ordinary text.
var commands = map[string]bool{"start": true, "new": true, "whoami": true, "pair": true, "help": true}

// HelpText answers /help.
const HelpText = `Commands:
/start [invite] - start, or join with an invite token
/new - start a fresh session
/whoami - your identity, role, trust level and workspace
/pair - ask the owner for access with a pairing code
/help - this list
Anything else goes to the agent. Without a model it runs file commands:
/ls [PATH], /cat PATH, /write PATH TEXT, /find PATTERN`

// NotRecordedReply answers a grant that was refused because its audit
// record could not be written.
const NotRecordedReply = "The bot cannot write its audit log right now, so nothing was granted. Please try again later."

// ParseCommand splits "/cmd[@bot] args" into a known command and its
// argument. Text that is not a known command returns "", "".
func ParseCommand(text string) (cmd, arg string) {
	t := strings.TrimSpace(text)
	if !strings.HasPrefix(t, "/") {
		return "", ""
	}
	word, rest, _ := strings.Cut(t[1:], " ")
	if i := strings.IndexAny(word, "\n\t"); i >= 0 {
		word, rest = word[:i], word[i+1:]+" "+rest
	}
	word, _, _ = strings.Cut(word, "@")
	word = strings.ToLower(word)
	if !commands[word] {
		return "", ""
	}
	return word, strings.TrimSpace(rest)
}

// validate refuses a message a connector should never have produced.
func validate(m *Message) error {
	switch {
	case m == nil:
		return fmt.Errorf("%w: nil", ErrMalformed)
	case m.Connector == "" || m.Type == "":
		return fmt.Errorf("%w: no connector name or type", ErrMalformed)
	case !validID(m.UserID):
		return fmt.Errorf("%w: user ID %q", ErrMalformed, clip(m.UserID, 64))
	case !validID(m.ChatID):
		return fmt.Errorf("%w: chat ID %q", ErrMalformed, clip(m.ChatID, 64))
	case !validID(m.MessageID):
		return fmt.Errorf("%w: message ID %q", ErrMalformed, clip(m.MessageID, 64))
	case m.ChatKind != KindDM && m.ChatKind != KindGroup && m.ChatKind != KindChannel:
		return fmt.Errorf("%w: chat kind %q", ErrMalformed, clip(m.ChatKind, 16))
	case !utf8.ValidString(m.Text):
		return fmt.Errorf("%w: text is not UTF-8", ErrMalformed)
	}
	return nil
}

// validID: 1-255 bytes of printable, non-space UTF-8.
func validID(s string) bool {
	if s == "" || len(s) > 255 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}

// SessionKey names the session a message belongs to: one per user in a DM,
// one per user per chat in a group, one per chat when policy says the chat
// shares a session.
func SessionKey(m *Message, res engine.MessageResult) string {
	if res.SessionScope == "chat" && m.ChatKind != KindDM {
		return "chat\x00" + m.Connector + "\x00" + m.ChatID
	}
	if m.ChatKind == KindDM {
		return "user\x00" + m.Connector + "\x00" + m.Identity()
	}
	return "user\x00" + m.Connector + "\x00" + m.ChatID + "\x00" + m.Identity()
}

// Handle implements Handler. It returns an error only for a malformed
// message or a failure worth logging by the caller; denials are answered
// (or silently dropped) and return nil. A duplicate or an edit does nothing.
func (r *Router) Handle(ctx context.Context, m *Message, rep Replier) error {
	if err := validate(m); err != nil {
		return err
	}
	if m.Edit {
		return nil
	}
	key := m.Connector + "\x00" + m.MessageID
	first := true
	if r.seen != nil {
		var err error
		if first, err = r.seen.First(key); err != nil {
			// Fail closed: handling it unrecorded could run it twice.
			_ = rep.SendText(ctx, m.ChatID, "The bot cannot take messages right now. Please try again later.")
			return fmt.Errorf("connectors: %s: %w", m.MessageID, err)
		}
	} else {
		first = r.dedup.First(key)
	}
	if !first {
		r.log.Debug().Str("connector", m.Connector).Str("message_id", m.MessageID).Msg("duplicate delivery ignored")
		return nil
	}
	unlock := r.locks.Lock(m.Connector + "\x00" + m.ChatID)
	defer unlock()
	return r.handle(ctx, m, rep)
}

func (r *Router) handle(ctx context.Context, m *Message, rep Replier) error {
	id := m.Identity()
	cmd, arg := ParseCommand(m.Text)
	lc := r.log.With().Str("connector", m.Connector).Str("identity", id).Str("chat_id", m.ChatID)
	if m.Peer != "" {
		lc = lc.Str("peer", m.Peer)
	}
	log := lc.Logger()

	var bind *engine.Binding
	if r.pairing != nil {
		b, err := r.pairing.Binding(ctx, m.Connector, id)
		if err != nil {
			// Fail closed: without the store we cannot know who is bound.
			_ = rep.SendText(ctx, m.ChatID, "The bot cannot check your access right now. Please try again later.")
			return fmt.Errorf("connectors: binding of %s: %w", id, err)
		}
		bind = b
		if cmd == "start" && arg != "" {
			b, err := r.pairing.RedeemInvite(ctx, m.Connector, id, arg)
			var rl *pairing.RateLimitError
			switch {
			case errors.As(err, &rl):
				return r.say(ctx, rep, m, fmt.Sprintf("Too many attempts. Try again in %s.", roundUp(rl.RetryAfter)))
			case errors.Is(err, pairing.ErrInvalidToken):
				log.Info().Msg("invite refused")
				return r.say(ctx, rep, m, "That invite is not valid: it is unknown, used or expired.")
			case errors.Is(err, pairing.ErrNotRecorded):
				_ = r.say(ctx, rep, m, NotRecordedReply)
				return fmt.Errorf("connectors: invite for %s: %w", id, err)
			case err != nil:
				_ = r.say(ctx, rep, m, "The invite could not be checked right now. Please try again later.")
				return fmt.Errorf("connectors: invite for %s: %w", id, err)
			}
			bind = b
			log.Info().Str("role", b.Role).Msg("invite redeemed")
		}
	}

	in := engine.MessageInput{
		Connector:     m.Connector,
		ConnectorType: m.Type,
		Sender:        engine.Sender{ID: id, PlatformID: m.UserID, DisplayName: m.DisplayName},
		Chat:          engine.Chat{ID: m.ChatID, Kind: m.ChatKind},
		Mentioned:     m.Mentioned,
		Unverified:    m.Unverified,
		Command:       cmd,
		TextLength:    utf8.RuneCountInString(m.Text),
		Binding:       bind,
	}
	d := r.decider.Decide(ctx, in)
	if !d.Allow {
		log.Info().Str("decision_id", d.ID).Strs("reasons", d.Reasons).Msg("message denied")
		if cmd == "pair" && d.Bool("may_pair") && r.pairing != nil {
			return r.pair(ctx, rep, m)
		}
		if d.Reply != "" {
			return r.say(ctx, rep, m, d.Reply)
		}
		return nil
	}
	res := d.MessageResult()
	req := TurnRequest{SessionKey: SessionKey(m, res), TurnID: d.ID, Identity: id, Message: m, Result: res, Binding: bind}
	switch cmd {
	case "help":
		return r.say(ctx, rep, m, HelpText)
	case "whoami":
		return r.say(ctx, rep, m, Whoami(id, res))
	case "pair":
		return r.say(ctx, rep, m, "You already have access to this bot.")
	case "start":
		return r.say(ctx, rep, m, "Welcome. Send a message to talk to the agent, or /help for commands.")
	case "new":
		if err := r.turns.NewSession(ctx, req); err != nil {
			_ = r.say(ctx, rep, m, "The session could not be reset. Please try again.")
			return fmt.Errorf("connectors: new session for %s: %w", id, err)
		}
		return r.say(ctx, rep, m, "Started a fresh session.")
	}
	if strings.TrimSpace(m.Text) == "" {
		return nil
	}
	if in.TextLength > r.maxText {
		return r.say(ctx, rep, m, fmt.Sprintf("Your message is too long (%d characters; the limit is %d).", in.TextLength, r.maxText))
	}
	_ = rep.Typing(ctx, m.ChatID) // best effort
	reply, err := r.turns.Turn(ctx, req)
	if err != nil {
		_ = r.say(ctx, rep, m, "Sorry, the agent could not answer. Please try again.")
		return fmt.Errorf("connectors: turn for %s: %w", id, err)
	}
	return r.say(ctx, rep, m, reply)
}

func (r *Router) pair(ctx context.Context, rep Replier, m *Message) error {
	p, err := r.pairing.RequestCode(ctx, m.Connector, m.Identity(), m.DisplayName)
	var rl *pairing.RateLimitError
	switch {
	case errors.As(err, &rl):
		return r.say(ctx, rep, m, fmt.Sprintf("Too many pairing requests. Try again in %s.", roundUp(rl.RetryAfter)))
	case errors.Is(err, pairing.ErrTooManyPending):
		return r.say(ctx, rep, m, "The bot has too many pending requests. Please try again later.")
	case errors.Is(err, pairing.ErrNotRecorded):
		_ = r.say(ctx, rep, m, NotRecordedReply)
		return fmt.Errorf("connectors: pairing code for %s: %w", m.Identity(), err)
	case err != nil:
		_ = r.say(ctx, rep, m, "A pairing code could not be made right now. Please try again later.")
		return fmt.Errorf("connectors: pairing code for %s: %w", m.Identity(), err)
	}
	return r.say(ctx, rep, m, fmt.Sprintf("Your pairing code is %s (valid until %s UTC). Send it to the bot's owner, who approves it with: parachute pair approve %s",
		p.Code, p.Expires.UTC().Format("15:04"), p.Code))
}

// Whoami answers /whoami.
func Whoami(identity string, res engine.MessageResult) string {
	return fmt.Sprintf("Identity: %s\nRole: %s\nTrust level: %s\nWorkspace: %s\nRead-only: %t\nNetwork: %t",
		identity, res.Role, res.TrustLevel, res.Workspace, res.ReadOnly, res.Network)
}

// say sends text in chunks that fit the connector's platform.
func (r *Router) say(ctx context.Context, rep Replier, m *Message, text string) error {
	limit, unit := PlatformLimit(m.Type)
	for _, c := range Chunk(text, limit, unit) {
		if err := rep.SendText(ctx, m.ChatID, c); err != nil {
			return fmt.Errorf("connectors: reply to %s: %w", m.Identity(), err)
		}
	}
	return nil
}

// PlatformLimit is the message limit of a connector type and its unit.
func PlatformLimit(typ string) (int, Unit) {
	switch typ {
	case "telegram":
		return TelegramLimit, UTF16
	case "discord":
		return DiscordLimit, Runes
	case "matrix":
		return MatrixLimit, Bytes
	default:
		return LocalLimit, Runes
	}
}

func roundUp(d time.Duration) time.Duration {
	if d < time.Second {
		return time.Second
	}
	return d.Round(time.Second)
}
