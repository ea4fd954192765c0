package telegram

import (
	"context"
	"fmt"
	"strings"

	"github.com/parachute-gateway/parachute/connectors"
)

var _ connectors.DirectSender = (*Connector)(nil)

// SendDirect implements connectors.DirectSender: a user's private chat
// with the bot has the user's ID. Telegram refuses it (403) until the user
// has started the bot, and after they blocked it; the error then says so.
func (c *Connector) SendDirect(ctx context.Context, userID, text string) error {
	err := c.SendText(ctx, userID, text)
	if err != nil && strings.Contains(err.Error(), "can't initiate conversation") {
		return fmt.Errorf("%w (Telegram lets a bot write only to someone who started it: they must send the bot /start first)", err)
	}
	return err
}
