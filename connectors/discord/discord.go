// Package discord is the Discord connector: the gateway (WebSocket) for
// inbound messages in DMs and guild channels and the REST API for replies,
// through discordgo.
//
// Identity is "discord:<author snowflake>"; nicknames and global names are
// for show only. Messages from bots and webhooks (the bot itself included)
// are ignored. Edits (MESSAGE_UPDATE) never run anything. Replays after a
// gateway RESUME are handled once: the router drops a message ID it has
// seen. Replies are sent with no allowed mentions (the agent cannot ping
// @everyone, roles or users) and with embeds suppressed (no link previews
// fetched on the agent's behalf).
//
// Reconnecting is ours, not discordgo's: its own loop cannot be cancelled,
// so every disconnect (network error, missed heartbeat ACKs, RECONNECT op 7)
// comes back to Run, which opens the session again with backoff. discordgo
// then RESUMEs (op 6) with the session ID and sequence it kept, or
// IDENTIFYs again after INVALID_SESSION (op 9).
package discord

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/internal/backoff"
	"github.com/parachute-gateway/parachute/internal/dispatch"
)

// Type is the connector type and identity prefix.
const Type = "discord"

// Options configure the connector.
type Options struct {
	Name  string // connector name from the config
	Token string // the bot token (without "Bot "), from the environment
	// APIBase, if set, replaces https://discord.com/api/v9/ (tests). It is
	// process-wide: discordgo keeps its endpoints in package variables.
	APIBase    string
	HTTPClient *http.Client
	Logger     zerolog.Logger
	// Backoff bounds reconnect waits (default 500ms…1m).
	Backoff backoff.Backoff
	// EditInterval is the least time between two edits of a streamed
	// reply in one channel (default EditInterval; tests go lower).
	EditInterval time.Duration
}

// Connector is a Discord bot.
type Connector struct {
	opts  Options
	red   *connectors.Redactor
	log   zerolog.Logger
	disp  *dispatch.Dispatcher
	mu    sync.Mutex
	sess  *discordgo.Session
	botID string
}

// New checks opts. It does not contact Discord; Run does.
func New(opts Options) (*Connector, error) {
	if opts.Name == "" {
		return nil, errors.New("discord: connector name is required")
	}
	if opts.Token == "" {
		return nil, errors.New("discord: no bot token (set the variable named by token_env)")
	}
	if strings.HasPrefix(opts.Token, "Bot ") {
		opts.Token = strings.TrimPrefix(opts.Token, "Bot ")
	}
	if opts.APIBase != "" {
		if err := SetAPIBase(opts.APIBase); err != nil {
			return nil, err
		}
	}
	if opts.EditInterval <= 0 {
		opts.EditInterval = EditInterval
	}
	c := &Connector{
		opts: opts,
		red:  connectors.NewRedactor(opts.Token),
		disp: dispatch.New(0, 0),
	}
	c.log = opts.Logger.With().Str("connector", opts.Name).Str("connector_type", Type).Logger()
	routeLibraryLogs(c.log, opts.Token)
	return c, nil
}

// Name implements connectors.Connector.
func (c *Connector) Name() string { return c.opts.Name }

// session makes the discordgo session: synchronous events (so a channel's
// messages reach the dispatcher in gateway order), no library reconnects.
func (c *Connector) session() *discordgo.Session {
	s, _ := discordgo.New("Bot " + c.opts.Token) // only fails on login arguments
	s.ShouldReconnectOnError = false
	s.ShouldRetryOnRateLimit = true
	s.MaxRestRetries = 3
	s.SyncEvents = true
	s.LogLevel = discordgo.LogWarning
	s.StateEnabled = false
	s.Identify.Intents = discordgo.IntentsGuildMessages | discordgo.IntentsDirectMessages | discordgo.IntentsMessageContent
	if c.opts.HTTPClient != nil {
		s.Client = c.opts.HTTPClient
	} else {
		s.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return s
}

// Run implements connectors.Connector. It checks the token (users/@me),
// opens the gateway and reopens it after every disconnect until ctx ends.
// A refused token ends Run with an error wrapping ErrUnauthorized.
func (c *Connector) Run(ctx context.Context, h connectors.Handler) error {
	defer c.disp.Wait()
	s := c.session()
	for {
		me, err := s.User("@me", discordgo.WithContext(ctx))
		if err == nil {
			c.mu.Lock()
			c.sess, c.botID = s, me.ID
			c.mu.Unlock()
			break
		}
		if unauthorized(err) {
			return fmt.Errorf("discord %s: %w", c.opts.Name, connectors.ErrUnauthorized)
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := c.opts.Backoff.Next()
		c.log.Warn().Str("error", c.red.String(err.Error())).Dur("retry_in", wait).Msg("discord users/@me failed")
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
	disconnected := make(chan struct{}, 1)
	s.AddHandler(func(*discordgo.Session, *discordgo.Disconnect) {
		select {
		case disconnected <- struct{}{}:
		default:
		}
	})
	s.AddHandler(func(_ *discordgo.Session, e *discordgo.MessageCreate) { c.receive(ctx, h, e.Message, false) })
	s.AddHandler(func(_ *discordgo.Session, e *discordgo.MessageUpdate) { c.receive(ctx, h, e.Message, true) })
	s.AddHandler(func(_ *discordgo.Session, e *discordgo.Ready) {
		c.log.Info().Str("bot_id", e.User.ID).Msg("discord gateway ready")
	})
	for {
		err := s.Open()
		if err == nil || errors.Is(err, discordgo.ErrWSAlreadyOpen) {
			c.opts.Backoff.Reset()
			select {
			case <-ctx.Done():
				_ = s.Close()
				return nil
			case <-disconnected:
				// Pause before reopening. discordgo's heartbeat goroutine of
				// the connection just closed may still be starting; when its
				// first write fails it closes the session's *current*
				// connection, and a reopen in that window is killed by it,
				// whose own heartbeat then kills the next one: a reconnect
				// storm seen under load. After the pause that stray close
				// finds no connection, and its Disconnect only makes Open
				// report the live connection (ErrWSAlreadyOpen).
				wait := c.opts.Backoff.Next()
				c.log.Info().Dur("retry_in", wait).Msg("discord gateway disconnected; reconnecting")
				if !backoff.Sleep(ctx, wait) {
					_ = s.Close()
					return nil
				}
				continue
			}
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code == 4004 {
			return fmt.Errorf("discord %s: %w", c.opts.Name, connectors.ErrUnauthorized)
		}
		wait := c.opts.Backoff.Next()
		c.log.Warn().Str("error", c.red.String(err.Error())).Dur("retry_in", wait).Msg("discord gateway connect failed")
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

func unauthorized(err error) bool {
	var re *discordgo.RESTError
	return errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusUnauthorized
}

// receive normalises one message and queues it for its channel.
func (c *Connector) receive(ctx context.Context, h connectors.Handler, dm *discordgo.Message, edit bool) {
	m, err := c.Normalize(dm, edit)
	if err != nil {
		c.log.Warn().Str("error", c.red.String(err.Error())).Msg("discord message skipped")
		return
	}
	if m == nil {
		return
	}
	err = c.disp.Dispatch(ctx, m.ChatID, func() {
		if err := h.Handle(ctx, m, c); err != nil {
			c.log.Warn().Str("identity", m.Identity()).Str("chat_id", m.ChatID).Str("error", c.red.String(err.Error())).Msg("discord message failed")
		}
	})
	if err != nil {
		c.log.Warn().Str("message_id", m.MessageID).Msg("discord message dropped at shutdown")
	}
}

// Normalize converts a gateway message. It returns nil, nil for messages
// that are not for the agent (bots, webhooks, system messages) and an
// error wrapping connectors.ErrMalformed for ones that cannot be trusted.
func (c *Connector) Normalize(dm *discordgo.Message, edit bool) (*connectors.Message, error) {
	if dm == nil {
		return nil, fmt.Errorf("%w: empty message event", connectors.ErrMalformed)
	}
	if edit {
		// MESSAGE_UPDATE: an edit, or Discord filling in embeds (a partial
		// message without an author). Neither runs anything.
		return nil, nil
	}
	if dm.Author == nil || !snowflake(dm.Author.ID) || !snowflake(dm.ID) || !snowflake(dm.ChannelID) ||
		dm.GuildID != "" && !snowflake(dm.GuildID) {
		return nil, fmt.Errorf("%w: message without a valid author, ID or channel", connectors.ErrMalformed)
	}
	c.mu.Lock()
	bot := c.botID
	c.mu.Unlock()
	if dm.Author.Bot || dm.WebhookID != "" || dm.Author.ID == bot {
		return nil, nil
	}
	if dm.Type != discordgo.MessageTypeDefault && dm.Type != discordgo.MessageTypeReply {
		return nil, nil // joins, pins, boosts, …
	}
	kind := connectors.KindDM
	if dm.GuildID != "" {
		kind = connectors.KindGroup
	}
	return &connectors.Message{
		Connector:   c.opts.Name,
		Type:        Type,
		UserID:      dm.Author.ID,
		DisplayName: displayName(dm),
		ChatID:      dm.ChannelID,
		ChatKind:    kind,
		Mentioned:   bot != "" && mentions(dm, bot),
		Text:        dm.Content,
		MessageID:   dm.ID,
		Time:        dm.Timestamp,
	}, nil
}

// mentions: the bot is in the message's user mentions (resolved by
// Discord, not parsed from text), or the message replies to the bot.
// @everyone and role mentions do not count.
func mentions(dm *discordgo.Message, bot string) bool {
	for _, u := range dm.Mentions {
		if u != nil && u.ID == bot {
			return true
		}
	}
	r := dm.ReferencedMessage
	return r != nil && r.Author != nil && r.Author.ID == bot
}

func displayName(dm *discordgo.Message) string {
	if dm.Member != nil && dm.Member.Nick != "" {
		return dm.Member.Nick
	}
	if dm.Author.GlobalName != "" {
		return dm.Author.GlobalName
	}
	return dm.Author.Username
}

// snowflake: 1-20 decimal digits.
func snowflake(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func (c *Connector) current() (*discordgo.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return nil, fmt.Errorf("discord %s: not connected", c.opts.Name)
	}
	return c.sess, nil
}

// SendText implements connectors.Replier: no mentions parsed, no embeds.
// discordgo waits out a 429's retry_after and retries.
func (c *Connector) SendText(ctx context.Context, chatID, text string) error {
	_, err := c.SendPlaceholder(ctx, chatID, text)
	return err
}

// noMentions parses no mentions: a reply never pings anyone.
func noMentions() *discordgo.MessageAllowedMentions {
	return &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}}
}

// SendPlaceholder implements connectors.Streamer: SendText that returns
// the message ID.
func (c *Connector) SendPlaceholder(ctx context.Context, chatID, text string) (string, error) {
	s, err := c.current()
	if err != nil {
		return "", err
	}
	m, err := s.ChannelMessageSendComplex(chatID, &discordgo.MessageSend{
		Content:         text,
		AllowedMentions: noMentions(),
		Flags:           discordgo.MessageFlagsSuppressEmbeds,
	}, discordgo.WithContext(ctx))
	if err != nil {
		return "", c.red.Error(fmt.Errorf("discord %s: send: %w", c.opts.Name, err))
	}
	return m.ID, nil
}

// EditText implements connectors.Streamer: a message edit, again parsing
// no mentions (an edit that adds "@everyone" pings no one either).
func (c *Connector) EditText(ctx context.Context, chatID, messageID, text string) error {
	s, err := c.current()
	if err != nil {
		return err
	}
	_, err = s.ChannelMessageEditComplex(&discordgo.MessageEdit{
		ID: messageID, Channel: chatID, Content: &text, AllowedMentions: noMentions(),
	}, discordgo.WithContext(ctx))
	if err != nil {
		return c.red.Error(fmt.Errorf("discord %s: edit: %w", c.opts.Name, err))
	}
	return nil
}

// EditInterval implements connectors.Streamer: Discord allows 5 message
// edits per 5 s in a channel.
func (c *Connector) EditInterval() time.Duration { return c.opts.EditInterval }

// EditInterval is the default least time between two edits of a
// streamed reply: Discord's 5 per 5 s per channel, evenly spread.
const EditInterval = time.Second

// Typing implements connectors.Replier.
func (c *Connector) Typing(ctx context.Context, chatID string) error {
	s, err := c.current()
	if err != nil {
		return err
	}
	return c.red.Error(s.ChannelTyping(chatID, discordgo.WithContext(ctx)))
}
