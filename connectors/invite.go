package connectors

import (
	"context"
	"fmt"

	"github.com/parachute-gateway/parachute/engine"
)

// Invite is a request for the bot to join a chat (a Matrix room invite).
type Invite struct {
	Connector   string // connector name from the config
	Type        string // connector type
	InviterID   string // platform user ID of the inviter (never a name)
	DisplayName string // for show only
	ChatID      string // the chat the bot is invited to
	ChatKind    string // KindDM or KindGroup, as the invite says
}

// InviteDecider decides whether the bot accepts an invite. The Router
// implements it; a connector whose Handler does not declines every invite.
type InviteDecider interface {
	DecideInvite(ctx context.Context, inv Invite) (bool, error)
}

// DecideInvite implements InviteDecider. An invite is decided as if the
// inviter had sent the bot a message in that chat addressing it (mentioned,
// no text, no command): the bot joins only chats of people who may talk to
// it, with every rule of parachute.message (blocks, bindings, rate limits)
// applied, and the decision recorded like any other.
func (r *Router) DecideInvite(ctx context.Context, inv Invite) (bool, error) {
	m := &Message{Connector: inv.Connector, Type: inv.Type, UserID: inv.InviterID, DisplayName: inv.DisplayName,
		ChatID: inv.ChatID, ChatKind: inv.ChatKind, MessageID: "invite", Mentioned: true}
	if err := validate(m); err != nil {
		return false, err
	}
	id := m.Identity()
	var bind *engine.Binding
	if r.pairing != nil {
		b, err := r.pairing.Binding(ctx, m.Connector, id)
		if err != nil {
			return false, fmt.Errorf("connectors: binding of %s: %w", id, err) // fail closed
		}
		bind = b
	}
	d := r.decider.Decide(ctx, engine.MessageInput{
		Connector:     m.Connector,
		ConnectorType: m.Type,
		Sender:        engine.Sender{ID: id, PlatformID: m.UserID, DisplayName: m.DisplayName},
		Chat:          engine.Chat{ID: m.ChatID, Kind: m.ChatKind},
		Mentioned:     true,
		Binding:       bind,
	})
	r.log.Info().Str("connector", m.Connector).Str("identity", id).Str("chat_id", m.ChatID).
		Bool("allow", d.Allow).Str("decision_id", d.ID).Strs("reasons", d.Reasons).Msg("invite decided")
	return d.Allow, nil
}
