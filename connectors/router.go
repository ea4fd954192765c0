package connectors

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/engine/ratelimit"
	"github.com/parachute-gateway/parachute/internal/keylock"
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
	// Denials bounds what denied messages cost in replies and records
	// (defaults: see DenialBudget).
	Denials DenialBudget
	// RecordText, if set, records a message's text (audit.record_text)
	// with the ID of its decision, just before that decision is recorded:
	// only messages whose decision is recorded have their text recorded,
	// so a flood past the denial budget writes neither. An error refuses
	// the message (the sender is told the audit log is unavailable).
	RecordText func(ctx context.Context, m *Message, decisionID string) error
	// Approvals, if set, sends new pairing requests to the connector's
	// owners and lets them answer /approve and /deny in a DM (approvals.go);
	// Pairing must then be an Approver too. Nil: only the CLI answers.
	Approvals *Approvals
}

// splitDecider is the two halves of Decide the router needs so that a
// denial past its budget is not recorded; *engine.Engine implements it.
type splitDecider interface {
	Decider
	Evaluate(ctx context.Context, in engine.Input) engine.Decision
	Spend(d *engine.Decision)
	Commit(ctx context.Context, in engine.Input, d *engine.Decision)
	Deny(in engine.Input, reasons ...string) engine.Decision
}

// Router handles every connector's messages: it is the Handler platform
// connectors call. Safe for concurrent use; messages of one chat are
// handled one at a time, in arrival order.
type Router struct {
	decider splitDecider
	denials *denialThrottle
	text    func(ctx context.Context, m *Message, decisionID string) error
	turns   Turns
	pairing Pairing
	log     zerolog.Logger
	maxText int
	dedup   *Dedup
	seen    *SeenStore
	locks   *keylock.Locks

	// approvals is nil when owners cannot answer from chat.
	approvals *Approvals
}

// NewRouter returns a Router.
func NewRouter(opts RouterOptions) (*Router, error) {
	if opts.Decider == nil || opts.Turns == nil {
		return nil, errors.New("connectors: router needs a Decider and Turns")
	}
	split, ok := opts.Decider.(splitDecider)
	if !ok {
		return nil, fmt.Errorf("connectors: the router's Decider (%T) must also Evaluate, Spend, Commit and Deny: a denial past its budget is decided but not recorded", opts.Decider)
	}
	if opts.Approvals != nil {
		if _, ok := opts.Pairing.(Approver); !ok {
			return nil, fmt.Errorf("connectors: approvals from chat need a pairing store that can ApproveBy and DenyBy; %T cannot", opts.Pairing)
		}
	}
	r := &Router{
		decider: split,
		denials: newDenialThrottle(opts.Denials),
		text:    opts.RecordText,
		turns:   opts.Turns,
		pairing: opts.Pairing,
		log:     opts.Logger,
		maxText: opts.MaxText,
		dedup:   NewDedup(opts.DedupMax, opts.DedupWindow),
		seen:    opts.Seen,
		locks:   keylock.New(),
	}
	if r.maxText <= 0 {
		r.maxText = 16000
	}
	r.approvals = opts.Approvals
	return r, nil
}

// Commands the router knows. Any other "/word" is ordinary text.
var commands = map[string]bool{"start": true, "new": true, "whoami": true, "pair": true, "help": true, "approve": true, "deny": true}

// HelpText answers /help.
const HelpText = `Commands:
/start [invite] - start, or join with an invite token
/new - start a fresh session
/whoami - your identity, role, trust level and workspace
/pair - ask the owner for access with a pairing code
/approve CODE [role], /deny CODE - (owners, in a DM) answer a pairing request
/help - this list
Anything else goes to the agent. Without a model it runs file commands:
/ls [PATH], /cat PATH, /write PATH TEXT, /find PATTERN`

// NotRecordedReply answers a grant that was refused because its audit
// record could not be written.
const NotRecordedReply = "The bot cannot write its audit log right now, so nothing was granted. Please try again later."

// AuditUnavailableReply answers a message whose decision could not be
// recorded (it was then refused, whatever policy said).
const AuditUnavailableReply = "The bot cannot write its audit log right now, so your message was not handled. Please try again later."

// BusyReply answers a message whose decision missed the engine's deadline
// (reason overloaded): the gateway is saturated, the message was refused
// and recorded, and the sender may try again after retryAfter.
func BusyReply(retryAfter time.Duration) string {
	return fmt.Sprintf("The gateway is busy; try again in %s.", roundUp(retryAfter))
}

// BusyTurnError is a turn the gateway shed partway: a tool listing or call
// of the turn was decided overloaded (recorded as such by the MCP proxy),
// and the agent ended the turn on it (agent.ExitBusy). The router answers
// it like an overloaded message decision: BusyReply, and Busy on a
// BusyReplier. An agent that claims busy falsely gets its user told
// "busy"; nothing is allowed by it.
type BusyTurnError struct{ RetryAfter time.Duration }

func (e *BusyTurnError) Error() string {
	return fmt.Sprintf("the turn was shed as busy (a tool decision was overloaded); retry after %s", e.RetryAfter)
}

// sayBusy answers a message the gateway shed, at any stage.
func (r *Router) sayBusy(ctx context.Context, rep Replier, m *Message, retryAfter time.Duration) error {
	if b, ok := rep.(BusyReplier); ok {
		b.Busy(retryAfter)
	}
	return r.say(ctx, rep, m, BusyReply(retryAfter))
}

// BusyReplier is a Replier that can mark its reply as a busy one. The
// router calls Busy before it sends BusyReply; the local connector answers
// such a request with HTTP 503 and Retry-After instead of 200.
type BusyReplier interface {
	Busy(retryAfter time.Duration)
}

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
			// An unbound sender's invite attempt costs a record and a
			// reply like a denial, and draws on the same budget: a flood
			// of guesses is counted, not recorded one by one.
			if bind == nil && !r.denials.spend(m.Connector+"\x00"+id, engine.MessageInput{Connector: m.Connector, ConnectorType: m.Type,
				Sender: engine.Sender{ID: id, PlatformID: m.UserID}, Chat: engine.Chat{ID: m.ChatID, Kind: m.ChatKind}, Command: cmd}) {
				log.Debug().Msg("invite attempt over the denial budget; not checked, no reply, no record of its own")
				return nil
			}
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
	d := r.decider.Evaluate(ctx, in)
	// Rate limits first, so that an admitted sender flooding past theirs
	// meets the denial budget too, not one record and reply per message.
	r.decider.Spend(&d)
	if (cmd == "approve" || cmd == "deny") && d.Allow {
		// Owner-only, in a DM: anyone else's answer is a recorded denial.
		if why, reply := approvalRefusal(m, d.MessageResult()); why != "" {
			d = r.decider.Deny(in, why)
			d.Reply = reply
		}
	}
	var carried int64
	if !d.Allow {
		// A denial costs a record and maybe a reply; past the sender's or
		// the global budget it gets neither, and is counted instead.
		var ok bool
		if ok, carried = r.denials.admit(m.Connector+"\x00"+id, in); !ok {
			log.Debug().Strs("reasons", d.Reasons).Msg("message denied; over the denial budget, no reply and no record of its own")
			return nil
		}
		if carried > 0 {
			d.Detail = setDetail(d.Detail, DetailSuppressed, strconv.FormatInt(carried, 10))
		}
	}
	if m.Peer != "" {
		d.Detail = setDetail(d.Detail, DetailPeer, m.Peer)
	}
	if r.text != nil {
		if err := r.text(ctx, m, d.ID); err != nil {
			if carried > 0 {
				r.denials.putBack(m.Connector+"\x00"+id, in, carried)
			}
			_ = r.say(ctx, rep, m, AuditUnavailableReply)
			return fmt.Errorf("connectors: recording the text of %s: %w", m.MessageID, err)
		}
	}
	r.decider.Commit(ctx, in, &d)
	if carried > 0 && slices.Contains(d.Reasons, engine.ReasonAuditUnavailable) {
		r.denials.putBack(m.Connector+"\x00"+id, in, carried) // the count is not in the log yet
	}
	if !d.Allow {
		log.Info().Str("decision_id", d.ID).Strs("reasons", d.Reasons).Msg("message denied")
		if slices.Contains(d.Reasons, engine.ReasonAuditUnavailable) {
			// Nothing happens without its record, and the user is told.
			return r.say(ctx, rep, m, AuditUnavailableReply)
		}
		if slices.Contains(d.Reasons, engine.ReasonOverloaded) {
			// Load shed, said: not the policy's reply, not silence.
			return r.sayBusy(ctx, rep, m, d.RetryAfter)
		}
		if cmd == "pair" && d.Bool("may_pair") && r.pairing != nil {
			return r.pair(ctx, rep, m)
		}
		if d.Reply != "" {
			return r.say(ctx, rep, m, d.Reply)
		}
		return nil
	}
	res := d.MessageResult()
	req := TurnRequest{SessionKey: SessionKey(m, res), TurnID: d.ID, Identity: id, Message: m, Result: res, Binding: bind, Input: in}
	switch cmd {
	case "help":
		return r.say(ctx, rep, m, HelpText)
	case "whoami":
		return r.say(ctx, rep, m, Whoami(id, res))
	case "pair":
		return r.say(ctx, rep, m, "You already have access to this bot.")
	case "approve", "deny":
		return r.answerPairing(ctx, rep, m, cmd, arg)
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
	return r.runTurn(ctx, rep, m, req)
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
	if p.New && r.notifyOwners(ctx, rep, m, p) > 0 {
		return r.say(ctx, rep, m, fmt.Sprintf("Your pairing code is %s (valid until %s UTC). The bot's owner was sent your request and will answer here; they can also approve it with: parachute pair approve %s",
			p.Code, p.Expires.UTC().Format("15:04"), p.Code))
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

// Detail keys the router adds to a message decision's record.
const (
	// DetailPeer: how the sender reached a local connector (Message.Peer).
	DetailPeer = "peer"
	// DetailSuppressed: how many denials of this sender (or, on a summary
	// with DetailScope global, of senders past the pending bound) went
	// without a reply or a record of their own before this record.
	DetailSuppressed = "suppressed"
	// DetailScope is "global" on the summary of denials counted together.
	DetailScope = "scope"
	// DetailFirst and DetailLast date the first and last suppressed denial.
	DetailFirst = "first"
	DetailLast  = "last"
)

// ReasonDenialsSuppressed is the reason of a summary record: it stands for
// DetailSuppressed denials that were not recorded one by one.
const ReasonDenialsSuppressed = "denials-suppressed"

// DenialBudget bounds the replies and records denied messages cost, so
// that a stranger (or a crowd of them) cannot fill the audit disk or make
// the bot spam. A denial within both budgets is answered and recorded as
// usual, with the count of those suppressed before it; past either it is
// neither answered nor recorded, only counted, and the count is recorded
// with the sender's next recorded denial or in a summary record once
// Window has passed since the first one (FlushDenials). Budgets are token
// buckets in Limiter, so they survive a restart with the gateway's.
type DenialBudget struct {
	// SenderBurst denials per sender at once, then SenderRate per second
	// (defaults 3 and 1 per 20 s).
	SenderRate, SenderBurst float64
	// GlobalBurst denials across all senders at once, then GlobalRate per
	// second (defaults 20 and 1 per second). Summaries draw on it too.
	GlobalRate, GlobalBurst float64
	// Window is how long after a sender's first suppressed denial its
	// summary is written (default 1 minute).
	Window time.Duration
	// MaxPending bounds the senders with a count waiting (default
	// 10,000); past it, counts go to one summary per connector.
	MaxPending int
	// Limiter holds the buckets (the gateway passes its persisted one);
	// nil: a new one, in memory.
	Limiter *ratelimit.Limiter
	// Now is the clock (default time.Now); tests set it, with the
	// Limiter's.
	Now func() time.Time
}

// Default denial budgets.
const (
	DefaultDenialSenderRate  = 1.0 / 20
	DefaultDenialSenderBurst = 3
	DefaultDenialGlobalRate  = 1
	DefaultDenialGlobalBurst = 20
	DefaultDenialWindow      = time.Minute
	DefaultDenialMaxPending  = 10000
)

const globalDenialKey = "denials\x00global"

// denialThrottle applies a DenialBudget and keeps the counts of what it
// suppressed until they are recorded.
type denialThrottle struct {
	b DenialBudget

	mu       sync.Mutex
	pending  map[string]*suppressed // sender key -> count not yet recorded
	overflow map[string]*suppressed // connector -> counts past MaxPending
}

type suppressed struct {
	n           int64
	first, last time.Time
	due         time.Time           // when its summary is written
	in          engine.MessageInput // the first suppressed message's input
}

func newDenialThrottle(b DenialBudget) *denialThrottle {
	if b.SenderRate == 0 && b.SenderBurst == 0 {
		b.SenderRate, b.SenderBurst = DefaultDenialSenderRate, DefaultDenialSenderBurst
	}
	if b.GlobalRate == 0 && b.GlobalBurst == 0 {
		b.GlobalRate, b.GlobalBurst = DefaultDenialGlobalRate, DefaultDenialGlobalBurst
	}
	if b.Window <= 0 {
		b.Window = DefaultDenialWindow
	}
	if b.MaxPending <= 0 {
		b.MaxPending = DefaultDenialMaxPending
	}
	if b.Now == nil {
		b.Now = time.Now
	}
	if b.Limiter == nil {
		b.Limiter = ratelimit.New(ratelimit.Options{Now: b.Now})
	}
	return &denialThrottle{b: b, pending: map[string]*suppressed{}, overflow: map[string]*suppressed{}}
}

// admit spends a sender token and a global one for a denial of sender. It
// reports whether the denial may be answered and recorded and, if so, the
// count suppressed before it (now to be recorded with it); if not, the
// denial is counted.
func (t *denialThrottle) admit(sender string, in engine.MessageInput) (bool, int64) {
	key := "denials\x00sender\x00" + sender
	if ok, _ := t.b.Limiter.Allow(key, t.b.SenderRate, t.b.SenderBurst); !ok {
		t.count(sender, in, 1)
		return false, 0
	}
	if ok, _ := t.b.Limiter.Allow(globalDenialKey, t.b.GlobalRate, t.b.GlobalBurst); !ok {
		// The sender's token was not used: the crowd, not they, spent it.
		t.b.Limiter.Refund(key, t.b.SenderBurst)
		t.count(sender, in, 1)
		return false, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pending[sender]
	if p == nil {
		return true, 0
	}
	delete(t.pending, sender)
	return true, p.n
}

// spend takes the tokens of one recorded attempt (an invite redemption)
// without carrying a count: the attempt's record is the pairing store's.
// Past the budget the attempt is counted like a suppressed denial.
func (t *denialThrottle) spend(sender string, in engine.MessageInput) bool {
	key := "denials\x00sender\x00" + sender
	if ok, _ := t.b.Limiter.Allow(key, t.b.SenderRate, t.b.SenderBurst); !ok {
		t.count(sender, in, 1)
		return false
	}
	if ok, _ := t.b.Limiter.Allow(globalDenialKey, t.b.GlobalRate, t.b.GlobalBurst); !ok {
		t.b.Limiter.Refund(key, t.b.SenderBurst)
		t.count(sender, in, 1)
		return false
	}
	return true
}

// putBack returns a count whose record could not be written.
func (t *denialThrottle) putBack(sender string, in engine.MessageInput, n int64) {
	t.count(sender, in, n)
}

func (t *denialThrottle) count(sender string, in engine.MessageInput, n int64) {
	now := t.b.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pending[sender]
	if p == nil {
		if len(t.pending) >= t.b.MaxPending {
			p = t.overflowLocked(in, now)
		} else {
			p = &suppressed{first: now, due: now.Add(t.b.Window), in: in}
			t.pending[sender] = p
		}
	}
	p.n += n
	p.last = now
}

// FlushDenials records the counts of suppressed denials whose window has
// ended (all of them when all is set: at shutdown). A sender's summary
// draws on the global budget; one that finds it empty joins its
// connector's global summary, of which at most one per connector is
// written per call. A summary that cannot be recorded is kept for the
// next call. The gateway calls it every few seconds and at shutdown.
func (r *Router) FlushDenials(ctx context.Context, all bool) {
	t := r.denials
	now := t.b.Now()
	due := func(p *suppressed) bool { return all || !now.Before(p.due) }
	t.mu.Lock()
	var senders []string
	var batch []*suppressed
	for k, p := range t.pending {
		if due(p) {
			senders = append(senders, k)
			batch = append(batch, p)
			delete(t.pending, k)
		}
	}
	t.mu.Unlock()
	for i, p := range batch {
		if ok, _ := t.b.Limiter.Allow(globalDenialKey, t.b.GlobalRate, t.b.GlobalBurst); !ok && !all {
			t.toOverflow(p)
			continue
		}
		if !r.summarise(ctx, p, false) {
			t.requeue(senders[i], p) // kept for the next window
		}
	}
	t.mu.Lock()
	var over []*suppressed
	for c, p := range t.overflow {
		if due(p) {
			over = append(over, p)
			delete(t.overflow, c)
		}
	}
	t.mu.Unlock()
	for _, p := range over {
		if !r.summarise(ctx, p, true) {
			t.toOverflow(p)
		}
	}
}

func (t *denialThrottle) toOverflow(p *suppressed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.overflowLocked(p.in, t.b.Now())
	o.n += p.n
	o.first = minTime(o.first, p.first)
	o.last = maxTime(o.last, p.last)
}

// requeue puts back a sender's count whose summary could not be written,
// due a window from now (with whatever was counted meanwhile).
func (t *denialThrottle) requeue(sender string, p *suppressed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if q := t.pending[sender]; q != nil {
		q.n += p.n
		q.first = minTime(q.first, p.first)
		return
	}
	if len(t.pending) >= t.b.MaxPending {
		o := t.overflowLocked(p.in, t.b.Now())
		o.n += p.n
		o.first = minTime(o.first, p.first)
		o.last = maxTime(o.last, p.last)
		return
	}
	p.due = t.b.Now().Add(t.b.Window)
	t.pending[sender] = p
}

// overflowLocked returns the connector's global summary, opening one due
// a window from now: at most one is written per connector per window.
func (t *denialThrottle) overflowLocked(in engine.MessageInput, now time.Time) *suppressed {
	o := t.overflow[in.Connector]
	if o == nil {
		o = &suppressed{first: now, due: now.Add(t.b.Window), in: engine.MessageInput{Connector: in.Connector, ConnectorType: in.ConnectorType}}
		t.overflow[in.Connector] = o
	}
	return o
}

// summarise records one summary of suppressed denials; it reports whether
// the record was written.
func (r *Router) summarise(ctx context.Context, p *suppressed, global bool) bool {
	d := r.decider.Deny(p.in, ReasonDenialsSuppressed)
	d.Detail = map[string]string{
		DetailSuppressed: strconv.FormatInt(p.n, 10),
		DetailFirst:      p.first.UTC().Format(time.RFC3339Nano),
		DetailLast:       p.last.UTC().Format(time.RFC3339Nano),
	}
	if global {
		d.Detail[DetailScope] = "global"
	}
	r.decider.Commit(ctx, p.in, &d)
	if slices.Contains(d.Reasons, engine.ReasonAuditUnavailable) {
		r.log.Error().Str("connector", p.in.Connector).Str("identity", p.in.Sender.ID).Int64("suppressed", p.n).
			Msg("summary of suppressed denials not recorded; kept for the next try")
		return false
	}
	return true
}

// PendingDenials is how many suppressed denials are counted but not yet
// recorded (a kill -9 loses these counts, never the first denial of a
// sender, which is always recorded).
func (r *Router) PendingDenials() int64 {
	t := r.denials
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, p := range t.pending {
		n += p.n
	}
	for _, p := range t.overflow {
		n += p.n
	}
	return n
}

// setDetail returns d with k set, copied first: a decision's maps may be
// shared (the engine's decision cache), so they are never written in place.
func setDetail(d map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(d)+1)
	maps.Copy(out, d)
	out[k] = v
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
