package matrix

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/parachute-gateway/parachute/connectors"
)

// onMember handles invites of the bot: join when policy admits the
// inviter, reject otherwise. The decision is the Handler's (the Router's);
// a Handler that cannot decide invites gets every invite rejected.
func (c *Connector) onMember(ctx context.Context, evt *event.Event) {
	// Only the invite section of a sync: the same invite event shows up
	// again in the room's timeline once the bot has joined.
	if evt.GetStateKey() != c.me.String() || evt.Mautrix.EventSource&event.SourceInvite == 0 {
		return
	}
	mem := evt.Content.AsMember()
	if mem.Membership != event.MembershipInvite {
		return
	}
	cli, h, err := c.current()
	if err != nil {
		return
	}
	log := c.log.With().Str("chat_id", evt.RoomID.String()).Str("inviter", evt.Sender.String()).Logger()
	if cli.StateStore.IsInRoom(ctx, evt.RoomID, c.me) {
		return // an old invite event for a room already joined
	}
	kind := connectors.KindGroup
	if mem.IsDirect {
		kind = connectors.KindDM
	}
	allow := false
	if dec, ok := h.(connectors.InviteDecider); !ok {
		log.Warn().Msg("matrix invite rejected: the handler cannot decide invites")
	} else if _, _, perr := evt.Sender.Parse(); perr != nil {
		log.Warn().Msg("matrix invite rejected: malformed inviter")
	} else {
		allow, err = dec.DecideInvite(ctx, connectors.Invite{Connector: c.opts.Name, Type: Type,
			InviterID: evt.Sender.String(), ChatID: evt.RoomID.String(), ChatKind: kind})
		if err != nil {
			// Fail closed, but leave the invite pending: the store may be back later.
			log.Warn().Str("error", c.red.String(err.Error())).Msg("matrix invite not decided")
			return
		}
	}
	if allow {
		if _, err := cli.JoinRoomByID(ctx, evt.RoomID); err != nil {
			log.Warn().Str("error", c.red.String(err.Error())).Msg("matrix join failed")
			return
		}
		log.Info().Msg("matrix invite accepted")
		return
	}
	if _, err := cli.LeaveRoom(ctx, evt.RoomID); err != nil {
		log.Warn().Str("error", c.red.String(err.Error())).Msg("matrix invite reject failed")
		return
	}
	log.Info().Msg("matrix invite rejected")
}

func (c *Connector) onMessage(ctx context.Context, evt *event.Event) {
	if c.history(evt) || evt.Sender == c.me {
		return
	}
	// In an encrypted room a plain message is one only the homeserver
	// vouches for: anyone who runs it could have written it.
	unverified := c.e2e != nil && c.e2e.isEncrypted(ctx, evt.RoomID)
	c.deliver(ctx, evt, unverified)
}

// deliver normalises a message event (plain, or decrypted by the E2EE
// device) and hands it to the Handler in its chat's order.
func (c *Connector) deliver(ctx context.Context, evt *event.Event, unverified bool) {
	_, h, err := c.current()
	if err != nil {
		return
	}
	m, err := c.Normalize(ctx, evt)
	if err != nil {
		c.log.Warn().Str("event_id", evt.ID.String()).Str("error", c.red.String(err.Error())).Msg("matrix event skipped")
		return
	}
	if m == nil {
		return
	}
	m.Unverified = unverified
	err = c.disp.Dispatch(ctx, m.ChatID, func() {
		if err := h.Handle(ctx, m, c); err != nil {
			c.log.Warn().Str("identity", m.Identity()).Str("chat_id", m.ChatID).Str("error", c.red.String(err.Error())).Msg("matrix message failed")
		}
	})
	if err != nil {
		c.log.Warn().Str("event_id", m.MessageID).Msg("matrix message dropped at shutdown")
	}
}

// Normalize converts an m.room.message event. It returns nil, nil for
// events that are not for the agent (notices, which bots send; media) and
// an error wrapping connectors.ErrMalformed for ones that cannot be trusted.
func (c *Connector) Normalize(ctx context.Context, evt *event.Event) (*connectors.Message, error) {
	if _, _, err := evt.Sender.Parse(); err != nil || evt.ID == "" || evt.RoomID == "" {
		return nil, fmt.Errorf("%w: event without a valid sender, ID or room", connectors.ErrMalformed)
	}
	content, ok := evt.Content.Parsed.(*event.MessageEventContent)
	if !ok || content == nil {
		return nil, fmt.Errorf("%w: m.room.message content", connectors.ErrMalformed)
	}
	m := &connectors.Message{
		Connector: c.opts.Name,
		Type:      Type,
		UserID:    evt.Sender.String(),
		ChatID:    evt.RoomID.String(),
		ChatKind:  c.kind(ctx, evt.RoomID),
		MessageID: evt.ID.String(),
		Time:      time.UnixMilli(evt.Timestamp),
	}
	if content.RelatesTo.GetReplaceID() != "" || content.NewContent != nil {
		m.Edit = true // m.replace: never runs anything
		return m, nil
	}
	switch content.MsgType {
	case event.MsgText, event.MsgEmote:
	default:
		return nil, nil // m.notice (bots), media, locations, …
	}
	text := content.Body
	replyTo := content.RelatesTo.GetReplyTo()
	if replyTo != "" {
		text = stripReplyFallback(text)
	}
	m.Text = text
	m.Mentioned = (content.Mentions != nil && slices.Contains(content.Mentions.UserIDs, c.me)) ||
		strings.Contains(content.Body, c.me.String()) ||
		(replyTo != "" && c.ownEvents.Seen(string(replyTo)))
	return m, nil
}

// kind: a room of at most two joined or invited members is a DM. When the
// members are unknown it is a group, where the bot needs a mention.
func (c *Connector) kind(ctx context.Context, room id.RoomID) string {
	cli, _, err := c.current()
	if err != nil {
		return connectors.KindGroup
	}
	members, err := cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, room)
	if err != nil || len(members) == 0 {
		resp, err := cli.JoinedMembers(ctx, room)
		if err != nil {
			return connectors.KindGroup
		}
		return kindOf(len(resp.Joined))
	}
	return kindOf(len(members))
}

func kindOf(n int) string {
	if n <= 2 {
		return connectors.KindDM
	}
	return connectors.KindGroup
}

// stripReplyFallback removes the "> <@user> quoted text" lines clients put
// before a reply's own text: someone else's words must not become the
// sender's message.
func stripReplyFallback(body string) string {
	if !strings.HasPrefix(body, "> ") {
		return body
	}
	lines := strings.Split(body, "\n")
	i := 0
	for i < len(lines) && strings.HasPrefix(lines[i], ">") {
		i++
	}
	return strings.TrimLeft(strings.Join(lines[i:], "\n"), "\n")
}

// SendText implements connectors.Replier: an m.notice with a plain body
// (no HTML format, so nothing is interpreted) and empty m.mentions, so a
// reply pings nobody.
func (c *Connector) SendText(ctx context.Context, chatID, text string) error {
	_, err := c.SendPlaceholder(ctx, chatID, text)
	return err
}

// SendPlaceholder implements connectors.Streamer: SendText that returns
// the event ID.
func (c *Connector) SendPlaceholder(ctx context.Context, chatID, text string) (string, error) {
	return c.send(ctx, chatID, notice(text))
}

// EditText implements connectors.Streamer: an m.replace edit of the bot's
// own event (m.new_content is the full new notice; the body is the
// "* "-prefixed fallback for clients without edits), encrypted like any
// reply in an encrypted room.
func (c *Connector) EditText(ctx context.Context, chatID, messageID, text string) error {
	content := notice("* " + editFallback(text))
	content.NewContent = notice(text)
	content.RelatesTo = (&event.RelatesTo{}).SetReplace(id.EventID(messageID))
	_, err := c.send(ctx, chatID, content)
	return err
}

// editFallback is the start of an edit's text, for the fallback body:
// the full text is in m.new_content, and the event stays within the
// homeserver's size limit however long the reply.
func editFallback(text string) string {
	const max = 100 // runes
	n := 0
	for i := range text {
		if n == max {
			return text[:i] + "…"
		}
		n++
	}
	return text
}

// EditInterval implements connectors.Streamer.
func (c *Connector) EditInterval() time.Duration { return c.opts.EditInterval }

// EditInterval is the default least time between two edits of a streamed
// reply in one room: a few per second, within homeservers' usual message
// rate limits for a bot.
const EditInterval = 500 * time.Millisecond

func notice(text string) *event.MessageEventContent {
	return &event.MessageEventContent{MsgType: event.MsgNotice, Body: text, Mentions: &event.Mentions{}}
}

// send sends one message event and returns its ID.
func (c *Connector) send(ctx context.Context, chatID string, msg *event.MessageEventContent) (string, error) {
	cli, _, err := c.current()
	if err != nil {
		return "", err
	}
	room := id.RoomID(chatID)
	var content any = msg
	typ := event.EventMessage
	if c.e2e != nil && c.e2e.isEncrypted(ctx, room) {
		// Encrypted or not sent: never a plain reply in an encrypted room.
		enc, err := c.e2e.encrypt(ctx, room, content)
		if err != nil {
			c.log.Warn().Str("chat_id", chatID).Str("reason", ReasonNotEncrypted).Str("error", c.red.String(err.Error())).Msg("matrix reply not sent")
			return "", c.red.Error(fmt.Errorf("matrix %s: %s: %w", c.opts.Name, ReasonNotEncrypted, err))
		}
		content, typ = enc, event.EventEncrypted
	}
	// DontEncrypt: the encryption decision above is the only one.
	resp, err := cli.SendMessageEvent(ctx, room, typ, content, mautrix.ReqSendEvent{DontEncrypt: true})
	if err != nil {
		return "", c.red.Error(fmt.Errorf("matrix %s: send: %w", c.opts.Name, err))
	}
	c.ownEvents.First(resp.EventID.String())
	return resp.EventID.String(), nil
}

// Typing implements connectors.Replier.
func (c *Connector) Typing(ctx context.Context, chatID string) error {
	cli, _, err := c.current()
	if err != nil {
		return err
	}
	_, err = cli.UserTyping(ctx, id.RoomID(chatID), true, 20*time.Second)
	return c.red.Error(err)
}
