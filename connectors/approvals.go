package connectors

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/engine"
)

// Approvals from chat: a new pairing request is sent to each of the
// connector's owners in a direct message, and an owner answers
// "/approve CODE [role]" or "/deny CODE" in a DM with the bot. Who may
// answer is what policy decided for that message (role "owner"), in a DM
// only; the grant is the pairing store's, recorded before it takes effect,
// with the owner's identity as its actor.

// Approvals configure approvals from chat (RouterOptions.Approvals).
type Approvals struct {
	// Owners returns the platform user IDs of connector's owners, from the
	// live config: each gets a direct message for every new request.
	Owners func(connector string) []string
	// RoleDefined reports whether role is built in or defined in the
	// config; an owner naming any other role is refused (an undefined
	// role would quietly get guest's settings).
	RoleDefined func(role string) bool
}

// Approver is the part of the pairing store that answers requests from
// chat; *pairing.Store implements it.
type Approver interface {
	ApproveBy(ctx context.Context, actor, connector, code, role, workspace string) (pairing.Pending, error)
	DenyBy(ctx context.Context, actor, connector, code string) (pairing.Pending, error)
}

// DirectSender is a Replier that can also write to a user in a direct
// message, by platform user ID, whatever chat the message came from. A
// connector whose Replier does not implement it cannot tell owners of
// pairing requests (they use `parachute pair list`).
type DirectSender interface {
	SendDirect(ctx context.Context, userID, text string) error
}

// DefaultApproveRole is the role "/approve CODE" grants without a role.
const DefaultApproveRole = "member"

// Reasons of an owner command the router refuses (the message's decision
// is recorded as a denial with one of them).
const (
	// ReasonApprovalNotOwner: /approve or /deny from a sender policy did
	// not make an owner.
	ReasonApprovalNotOwner = "approval-not-owner"
	// ReasonApprovalNotDM: /approve or /deny outside a direct message (a
	// code and a requester's name are not for a group to read).
	ReasonApprovalNotDM = "approval-not-dm"
)

// Replies of the approval commands.
const (
	NotOwnerReply   = "Only this bot's owners can answer pairing requests."
	NotDMReply      = "Answer pairing requests in a direct message with the bot, not in a group."
	ApproveUsage    = "Usage: /approve CODE [role] (role: " + DefaultApproveRole + " unless you name one), or /deny CODE"
	ChatApprovalOff = "Approvals from chat are off on this gateway. Use: parachute pair list, then parachute pair approve CODE"
)

// maxShownName bounds a requester's display name in an owner's message.
const maxShownName = 64

// approvalRefusal says why an allowed /approve or /deny is refused: a
// reason constant and its reply, or "" if the sender may answer.
func approvalRefusal(m *Message, res engine.MessageResult) (reason, reply string) {
	switch {
	case res.Role != "owner":
		return ReasonApprovalNotOwner, NotOwnerReply
	case m.ChatKind != KindDM:
		return ReasonApprovalNotDM, NotDMReply
	}
	return "", ""
}

// answerPairing runs an owner's /approve or /deny; the message's decision is
// already recorded.
func (r *Router) answerPairing(ctx context.Context, rep Replier, m *Message, cmd, arg string) error {
	ap, ok := r.pairing.(Approver)
	if r.approvals == nil || !ok {
		return r.say(ctx, rep, m, ChatApprovalOff)
	}
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || (cmd == "deny" && len(f) != 1) {
		return r.say(ctx, rep, m, ApproveUsage)
	}
	code := pairing.NormalizeCode(f[0])
	shown := Untrusted(code, 16)
	log := r.log.With().Str("connector", m.Connector).Str("actor", m.Identity()).Str("command", cmd).Logger()
	var p pairing.Pending
	var err error
	role := DefaultApproveRole
	if cmd == "approve" {
		if len(f) == 2 {
			role = strings.ToLower(f[1])
		}
		if r.approvals.RoleDefined == nil || !r.approvals.RoleDefined(role) {
			return r.say(ctx, rep, m, fmt.Sprintf("Role %s is not defined: use owner, member, guest or a role under roles: in the config. Nothing was granted.", Untrusted(role, 64)))
		}
		p, err = ap.ApproveBy(ctx, m.Identity(), m.Connector, code, role, "")
	} else {
		p, err = ap.DenyBy(ctx, m.Identity(), m.Connector, code)
	}
	switch {
	case errors.Is(err, pairing.ErrNoSuchCode):
		log.Info().Msg("pairing answer refused: no such request")
		return r.say(ctx, rep, m, fmt.Sprintf("No pending pairing request on this bot has the code %s: it is mistyped, expired or already answered. Nothing was changed.", shown))
	case errors.Is(err, pairing.ErrInvalid):
		return r.say(ctx, rep, m, fmt.Sprintf("That cannot be granted: %v. Nothing was changed.", err))
	case errors.Is(err, pairing.ErrNotRecorded):
		_ = r.say(ctx, rep, m, NotRecordedReply)
		return fmt.Errorf("connectors: %s of %s by %s: %w", cmd, shown, m.Identity(), err)
	case err != nil:
		_ = r.say(ctx, rep, m, "The pairing request could not be answered right now. Please try again later.")
		return fmt.Errorf("connectors: %s of %s by %s: %w", cmd, shown, m.Identity(), err)
	}
	who := fmt.Sprintf("%s (name given: %s)", p.Identity, Untrusted(p.DisplayName, maxShownName))
	var done, told string
	if cmd == "approve" {
		log.Info().Str("identity", p.Identity).Str("role", role).Msg("pairing request approved from chat")
		done = fmt.Sprintf("Approved %s as %s: they are let in from their next message.", who, role)
		told = fmt.Sprintf("Your pairing request was approved (role %s). Send a message to talk to the agent.", role)
	} else {
		log.Info().Str("identity", p.Identity).Msg("pairing request denied from chat")
		done = fmt.Sprintf("Denied the pairing request of %s.", who)
		told = "Your pairing request was declined by the bot's owner."
	}
	if err := r.direct(ctx, rep, m.Type, p.Identity, told); err != nil {
		log.Warn().Err(err).Str("identity", p.Identity).Msg("the requester could not be told the answer")
		done += " They could not be told: " + err.Error()
	}
	return r.say(ctx, rep, m, done)
}

// notifyOwners sends a new pairing request to each owner of its
// connector. It reports how many were reached; failures are logged with
// what to do instead.
func (r *Router) notifyOwners(ctx context.Context, rep Replier, m *Message, p pairing.Pending) int {
	if r.approvals == nil || r.approvals.Owners == nil {
		return 0
	}
	owners := r.approvals.Owners(m.Connector)
	if len(owners) == 0 {
		return 0
	}
	log := r.log.With().Str("connector", m.Connector).Str("identity", p.Identity).Logger()
	if _, ok := rep.(DirectSender); !ok {
		log.Warn().Msg("this connector cannot send its owners a direct message: answer pairing requests with parachute pair list and parachute pair approve CODE")
		return 0
	}
	text := OwnerNotice(m.Connector, p)
	n := 0
	for _, o := range owners {
		if err := r.direct(ctx, rep, m.Type, m.Type+":"+o, text); err != nil {
			log.Warn().Err(err).Str("owner", m.Type+":"+o).
				Msg("an owner could not be sent the pairing request; on some platforms the bot can only write to someone who wrote to it first (Telegram: the owner sends the bot /start). parachute pair list and parachute pair approve CODE still work")
			continue
		}
		n++
	}
	return n
}

// direct sends text to identity ("<type>:<platform id>") in a DM.
func (r *Router) direct(ctx context.Context, rep Replier, typ, identity, text string) error {
	ds, ok := rep.(DirectSender)
	if !ok {
		return errors.New("this connector cannot send direct messages")
	}
	id, found := strings.CutPrefix(identity, typ+":")
	if !found || id == "" {
		return fmt.Errorf("identity %q is not a %s user", clip(identity, 64), typ)
	}
	limit, unit := PlatformLimit(typ)
	for _, c := range Chunk(text, limit, unit) {
		if err := ds.SendDirect(ctx, id, c); err != nil {
			return fmt.Errorf("direct message to %s: %w", identity, err)
		}
	}
	return nil
}

// OwnerNotice is the direct message an owner gets for a new pairing
// request. The platform ID is the platform's; the name is the requester's
// own choice, shown quoted and cleaned as untrusted text.
func OwnerNotice(connector string, p pairing.Pending) string {
	return fmt.Sprintf("Pairing request on %s\nFrom: %s (the platform's user ID)\nName given: %s (chosen by the requester: it proves nothing)\nCode: %s, valid until %s UTC\nAnswer here with /approve %s [role] (role %s unless you name one) or /deny %s",
		connector, p.Identity, Untrusted(p.DisplayName, maxShownName), p.Code, p.Expires.UTC().Format("15:04"),
		p.Code, DefaultApproveRole, p.Code)
}

// Untrusted renders text someone else chose for an owner's eyes: control,
// format (bidi overrides, zero-width) and separator characters removed,
// runs of spaces collapsed, at most n runes, in double quotes (a double
// quote inside becomes a single one so the quoting cannot be closed early).
func Untrusted(s string, n int) string {
	var out []rune
	space := false
	for _, c := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case unicode.IsSpace(c) || unicode.In(c, unicode.Z):
			space = true // newlines and tabs too: one line, one space
			continue
		case unicode.IsControl(c) || unicode.In(c, unicode.Cf, unicode.Co, unicode.Cs) || c == utf8.RuneError:
			continue
		case c == '"' || c == '\u201c' || c == '\u201d':
			c = '\''
		}
		if space && len(out) > 0 {
			out = append(out, ' ')
		}
		space = false
		out = append(out, c)
	}
	if len(out) > n {
		out = append(out[:n], '\u2026')
	}
	return `"` + string(out) + `"`
}
