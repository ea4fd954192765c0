// Package telegram is the Telegram connector: long polling with getUpdates
// offsets (the default) or a webhook that checks Telegram's secret-token
// header, through go-telegram-bot-api v5 with a configurable endpoint.
//
// Identity is "telegram:<from.id>". Edits (edited_message) never run
// anything, duplicates (the same update_id or message) are handled once,
// and replies are sent as plain text (no parse mode), so nothing the agent
// writes is interpreted as markup. The bot token appears in every request
// URL, so every error and log line passes through a Redactor.
package telegram

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/internal/backoff"
	"github.com/parachute-gateway/parachute/internal/dispatch"
)

// Type is the connector type and identity prefix.
const Type = "telegram"

// SecretHeader carries the webhook secret Telegram sends with each update.
const SecretHeader = "X-Telegram-Bot-Api-Secret-Token"

// Options configure the connector.
type Options struct {
	Name  string // connector name from the config
	Token string // the bot token, read from the environment by the caller
	// Endpoint is the Bot API base URL ("https://api.telegram.org", the
	// default) or a URL format with two %s for token and method
	// ("https://api.telegram.org/bot%s/%s").
	Endpoint string
	// WebhookListen switches to webhook mode: serve updates on this address.
	// WebhookSecret is then required. WebhookURL, if set, is registered with
	// setWebhook (with the secret as secret_token) when Run starts;
	// otherwise the operator registers it.
	WebhookListen string
	WebhookSecret string
	WebhookURL    string
	// DropPending skips updates queued while the bot was down: those whose
	// message is dated before the connector was made (New), to the
	// second. Everything sent from then on is answered, however soon
	// after readiness it arrives and whenever polling starts.
	DropPending bool
	// PollTimeout is the long-poll timeout (default 25s).
	PollTimeout time.Duration
	// MinPollInterval is the least time between two getUpdates calls when
	// the first came back empty (default 1s): a server that ignores the
	// long-poll timeout and answers at once must not make the connector
	// spin.
	MinPollInterval time.Duration
	HTTPClient      *http.Client
	Logger          zerolog.Logger
	// Backoff bounds reconnect waits (default 500ms…1m).
	Backoff backoff.Backoff
	// EditInterval is the least time between two edits of a streamed
	// reply in one chat (default and floor in production: EditInterval,
	// Telegram's about one message per second per chat; tests go lower).
	EditInterval time.Duration
}

// Connector is a Telegram bot.
type Connector struct {
	opts    Options
	started int64 // unix seconds of New: DropPending's line
	red     *connectors.Redactor
	log     zerolog.Logger
	seen    *connectors.Dedup // update IDs
	disp    *dispatch.Dispatcher
	client  *http.Client
	bot     *tgbotapi.BotAPI
}

// New checks opts. It does not contact Telegram; Run does.
func New(opts Options) (*Connector, error) {
	if opts.Name == "" {
		return nil, errors.New("telegram: connector name is required")
	}
	if opts.Token == "" {
		return nil, errors.New("telegram: no bot token (set the variable named by token_env)")
	}
	if opts.WebhookListen != "" && opts.WebhookSecret == "" {
		return nil, errors.New("telegram: webhook mode needs a webhook secret (webhook_secret_env)")
	}
	switch {
	case opts.Endpoint == "":
		opts.Endpoint = tgbotapi.APIEndpoint
	case !strings.Contains(opts.Endpoint, "%"):
		// A base URL (config api_endpoint), e.g. http://127.0.0.1:8081.
		opts.Endpoint = strings.TrimSuffix(opts.Endpoint, "/") + "/bot%s/%s"
	}
	if strings.Count(opts.Endpoint, "%s") != 2 || strings.Count(opts.Endpoint, "%") != 2 {
		return nil, fmt.Errorf("telegram: endpoint must be a base URL or a format with two %%s (token, method)")
	}
	if u, err := url.Parse(strings.ReplaceAll(opts.Endpoint, "%s", "x")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("telegram: endpoint %q is not an http(s) URL", opts.Endpoint)
	}
	if opts.PollTimeout <= 0 {
		opts.PollTimeout = 25 * time.Second
	}
	if opts.MinPollInterval <= 0 {
		opts.MinPollInterval = time.Second
	}
	if opts.EditInterval <= 0 {
		opts.EditInterval = EditInterval
	}
	c := &Connector{
		opts:    opts,
		red:     connectors.NewRedactor(opts.Token, opts.WebhookSecret),
		seen:    connectors.NewDedup(100000, 24*time.Hour),
		disp:    dispatch.New(0, 0),
		started: time.Now().Unix(),
	}
	c.log = opts.Logger.With().Str("connector", opts.Name).Str("connector_type", Type).Logger()
	c.client = opts.HTTPClient
	if c.client == nil {
		c.client = &http.Client{Timeout: opts.PollTimeout + 15*time.Second}
	}
	return c, nil
}

// Name implements connectors.Connector.
func (c *Connector) Name() string { return c.opts.Name }

// ctxClient ties every Bot API request to ctx so cancelling stops a long
// poll at once (tgbotapi builds requests without a context).
type ctxClient struct {
	ctx context.Context
	c   *http.Client
}

func (h ctxClient) Do(r *http.Request) (*http.Response, error) { return h.c.Do(r.WithContext(h.ctx)) }

// connect makes the bot and checks the token with getMe.
func (c *Connector) connect(ctx context.Context) error {
	bot, err := tgbotapi.NewBotAPIWithClient(c.opts.Token, c.opts.Endpoint, ctxClient{ctx, c.client})
	if err != nil {
		var te *tgbotapi.Error
		if errors.As(err, &te) && (te.Code == 401 || te.Code == 404) {
			return fmt.Errorf("telegram %s: %w: %s", c.opts.Name, connectors.ErrUnauthorized, c.red.String(te.Message))
		}
		return c.red.Error(fmt.Errorf("telegram %s: getMe: %w", c.opts.Name, err))
	}
	c.bot = bot
	return nil
}

// Run implements connectors.Connector: long polling, or the webhook server
// in webhook mode. Network errors are retried with backoff; a refused token
// ends Run with an error wrapping connectors.ErrUnauthorized.
func (c *Connector) Run(ctx context.Context, h connectors.Handler) error {
	defer c.disp.Wait()
	for c.bot == nil {
		err := c.connect(ctx)
		if errors.Is(err, connectors.ErrUnauthorized) {
			return err
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait := c.opts.Backoff.Next()
			c.log.Warn().Err(err).Dur("retry_in", wait).Msg("telegram connect failed")
			if !backoff.Sleep(ctx, wait) {
				return nil
			}
		}
	}
	c.opts.Backoff.Reset()
	c.log.Info().Str("bot", c.bot.Self.UserName).Msg("telegram connected")
	if c.opts.WebhookListen != "" {
		if err := c.setWebhook(); err != nil {
			return err
		}
		return c.serveWebhook(ctx, h)
	}
	return c.poll(ctx, h)
}

func (c *Connector) poll(ctx context.Context, h connectors.Handler) error {
	// Updates queued while down are not skipped by jumping the offset
	// (getUpdates offset -1 would also swallow a message sent between
	// readiness and this call): dispatch drops them by date.
	var offset int
	for ctx.Err() == nil {
		began := time.Now()
		ups, err := c.getUpdates(offset)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var te *tgbotapi.Error
			if errors.As(err, &te) && te.Code == 401 {
				return fmt.Errorf("telegram %s: %w", c.opts.Name, connectors.ErrUnauthorized)
			}
			if errors.As(err, &te) && te.Code == 409 {
				// A webhook is registered, so getUpdates is refused. This
				// connector was configured to poll: remove the webhook.
				c.log.Warn().Msg("telegram webhook is set but polling is configured; deleting the webhook")
				if _, derr := c.bot.Request(tgbotapi.DeleteWebhookConfig{}); derr != nil { // pending updates: dropped by date
					c.log.Warn().Str("error", c.red.String(derr.Error())).Msg("telegram deleteWebhook failed")
				}
			}
			wait := c.opts.Backoff.Next()
			if errors.As(err, &te) && te.RetryAfter > 0 {
				wait = time.Duration(te.RetryAfter) * time.Second
			}
			c.log.Warn().Err(err).Dur("retry_in", wait).Msg("telegram getUpdates failed")
			backoff.Sleep(ctx, wait)
			continue
		}
		c.opts.Backoff.Reset()
		if len(ups) == 0 {
			// An empty answer before MinPollInterval: the server did not
			// hold the long poll. Wait out the rest of the interval.
			if rest := c.opts.MinPollInterval - time.Since(began); rest > 0 && !backoff.Sleep(ctx, rest) {
				break
			}
			continue
		}
		for _, raw := range ups {
			id := raw.UpdateID
			if id >= offset {
				offset = id + 1 // confirms every update up to id on the next call
			}
			c.dispatch(ctx, h, raw.Update, raw.err)
		}
	}
	return nil
}

// rawUpdate keeps an update that did not decode, so one malformed update
// is skipped (and confirmed) instead of stalling the whole batch.
type rawUpdate struct {
	UpdateID int
	Update   *tgbotapi.Update
	err      error
}

// getUpdates is tgbotapi's GetUpdates with per-update decoding.
func (c *Connector) getUpdates(offset int) ([]rawUpdate, error) {
	cfg := tgbotapi.UpdateConfig{Offset: offset, Limit: 100, Timeout: int(c.opts.PollTimeout / time.Second)}
	resp, err := c.bot.Request(cfg)
	if err != nil {
		return nil, c.red.Error(err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(resp.Result, &items); err != nil {
		return nil, fmt.Errorf("telegram: getUpdates result: %w", err)
	}
	out := make([]rawUpdate, 0, len(items))
	for _, it := range items {
		var head struct {
			UpdateID *int `json:"update_id"`
		}
		if json.Unmarshal(it, &head) != nil || head.UpdateID == nil {
			// Without an update_id it cannot be confirmed individually; the
			// next good update's offset confirms it.
			c.log.Warn().Msg("telegram update without update_id skipped")
			continue
		}
		var u tgbotapi.Update
		err := json.Unmarshal(it, &u)
		out = append(out, rawUpdate{UpdateID: *head.UpdateID, Update: &u, err: err})
	}
	return out, nil
}

// dispatch turns one update into a message and queues it for its chat.
func (c *Connector) dispatch(ctx context.Context, h connectors.Handler, u *tgbotapi.Update, decodeErr error) {
	if decodeErr != nil {
		c.log.Warn().Int("update_id", u.UpdateID).Str("error", c.red.String(decodeErr.Error())).Msg("malformed telegram update skipped")
		return
	}
	if !c.seen.First(strconv.Itoa(u.UpdateID)) {
		return // a redelivered update
	}
	m, err := c.Normalize(u)
	if err != nil {
		c.log.Warn().Int("update_id", u.UpdateID).Err(err).Msg("telegram update skipped")
		return
	}
	if m == nil {
		return // nothing for the agent (no text, a service message, a channel post)
	}
	if c.opts.DropPending && m.Time.Unix() < c.started {
		c.log.Info().Int("update_id", u.UpdateID).Msg("update queued while down dropped")
		return
	}
	_ = c.disp.Dispatch(ctx, m.ChatID, func() {
		if err := h.Handle(ctx, m, c); err != nil {
			c.log.Warn().Str("identity", m.Identity()).Str("chat_id", m.ChatID).Str("error", c.red.String(err.Error())).Msg("telegram message failed")
		}
	})
}

// Normalize converts an update into a Message. It returns nil, nil for
// updates that carry nothing to answer, and an error wrapping
// connectors.ErrMalformed for ones that cannot be trusted.
func (c *Connector) Normalize(u *tgbotapi.Update) (*connectors.Message, error) {
	msg, edit := u.Message, false
	if msg == nil && u.EditedMessage != nil {
		msg, edit = u.EditedMessage, true
	}
	if msg == nil {
		return nil, nil // channel posts, callbacks, member updates, …
	}
	if msg.From == nil || msg.From.ID <= 0 {
		return nil, fmt.Errorf("%w: message %d has no sender", connectors.ErrMalformed, msg.MessageID)
	}
	if msg.From.IsBot {
		return nil, nil // never converse with bots (including ourselves)
	}
	if msg.Chat == nil {
		return nil, fmt.Errorf("%w: message %d has no chat", connectors.ErrMalformed, msg.MessageID)
	}
	text := msg.Text
	if text == "" {
		text = msg.Caption
	}
	if text == "" && !edit {
		return nil, nil
	}
	kind := connectors.KindGroup
	switch msg.Chat.Type {
	case "private":
		kind = connectors.KindDM
	case "group", "supergroup":
	case "channel":
		kind = connectors.KindChannel
	default:
		return nil, fmt.Errorf("%w: chat type %q", connectors.ErrMalformed, msg.Chat.Type)
	}
	chatID := strconv.FormatInt(msg.Chat.ID, 10)
	return &connectors.Message{
		Connector:   c.opts.Name,
		Type:        Type,
		UserID:      strconv.FormatInt(msg.From.ID, 10),
		DisplayName: strings.TrimSpace(msg.From.FirstName + " " + msg.From.LastName),
		ChatID:      chatID,
		ChatKind:    kind,
		Mentioned:   c.mentioned(msg, text),
		Text:        text,
		MessageID:   chatID + ":" + strconv.Itoa(msg.MessageID),
		Time:        time.Unix(int64(msg.Date), 0),
		Edit:        edit,
	}, nil
}

// mentioned: a reply to one of the bot's messages, or "@botname" as a word
// (commands addressed as /cmd@botname included).
func (c *Connector) mentioned(msg *tgbotapi.Message, text string) bool {
	if c.bot == nil {
		return false
	}
	if r := msg.ReplyToMessage; r != nil && r.From != nil && r.From.ID == c.bot.Self.ID {
		return true
	}
	name := c.bot.Self.UserName
	if name == "" {
		return false
	}
	lower, at := strings.ToLower(text), "@"+strings.ToLower(name)
	for i := 0; ; {
		j := strings.Index(lower[i:], at)
		if j < 0 {
			return false
		}
		end := i + j + len(at)
		if end == len(lower) {
			return true
		}
		r, _ := utf8.DecodeRuneInString(lower[end:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' {
			return true
		}
		i = end
	}
}

// SendText implements connectors.Replier: plain text, honouring 429
// retry_after up to three times.
func (c *Connector) SendText(ctx context.Context, chatID, text string) error {
	_, err := c.SendPlaceholder(ctx, chatID, text)
	return err
}

// SendPlaceholder implements connectors.Streamer: SendText that returns
// the message ID.
func (c *Connector) SendPlaceholder(ctx context.Context, chatID, text string) (string, error) {
	id, err := strconv.ParseInt(chatID, 10, 64)
	if err != nil {
		return "", fmt.Errorf("telegram: chat ID %q: %w", chatID, err)
	}
	msg := tgbotapi.NewMessage(id, text)
	msg.DisableWebPagePreview = true
	sent, err := c.send(ctx, msg)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(sent.MessageID), nil
}

// EditText implements connectors.Streamer with editMessageText.
func (c *Connector) EditText(ctx context.Context, chatID, messageID, text string) error {
	id, err := strconv.ParseInt(chatID, 10, 64)
	if err != nil {
		return fmt.Errorf("telegram: chat ID %q: %w", chatID, err)
	}
	mid, err := strconv.Atoi(messageID)
	if err != nil {
		return fmt.Errorf("telegram: message ID %q: %w", messageID, err)
	}
	edit := tgbotapi.NewEditMessageText(id, mid, text)
	edit.DisableWebPagePreview = true
	_, err = c.send(ctx, edit)
	return err
}

// EditInterval implements connectors.Streamer: Telegram allows about one
// message or edit per second in a chat.
func (c *Connector) EditInterval() time.Duration { return c.opts.EditInterval }

// EditInterval is the least time between two edits of a streamed reply.
const EditInterval = time.Second

// send sends c, honouring 429 retry_after up to three times.
func (c *Connector) send(ctx context.Context, m tgbotapi.Chattable) (tgbotapi.Message, error) {
	if c.bot == nil {
		return tgbotapi.Message{}, fmt.Errorf("telegram %s: not connected", c.opts.Name)
	}
	for attempt := 0; ; attempt++ {
		sent, err := c.bot.Send(m)
		var te *tgbotapi.Error
		if err == nil || !errors.As(err, &te) || te.RetryAfter <= 0 || attempt == 3 {
			return sent, c.red.Error(err)
		}
		if !backoff.Sleep(ctx, time.Duration(te.RetryAfter)*time.Second) {
			return sent, ctx.Err()
		}
	}
}

// Typing implements connectors.Replier.
func (c *Connector) Typing(_ context.Context, chatID string) error {
	id, err := strconv.ParseInt(chatID, 10, 64)
	if err != nil {
		return fmt.Errorf("telegram: chat ID %q: %w", chatID, err)
	}
	if c.bot == nil {
		return fmt.Errorf("telegram %s: not connected", c.opts.Name)
	}
	_, err = c.bot.Request(tgbotapi.NewChatAction(id, tgbotapi.ChatTyping))
	return c.red.Error(err)
}

// WebhookHandler receives updates Telegram POSTs. A request without the
// right secret header is 401 and its body is not read; a malformed update
// is 400 (Telegram then drops it). Handling is asynchronous: the handler
// answers 200 as soon as the update is queued.
func (c *Connector) WebhookHandler(ctx context.Context, h connectors.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		// Compare digests so the time taken says nothing about the
		// secret's length either.
		got := sha256.Sum256([]byte(r.Header.Get(SecretHeader)))
		want := sha256.Sum256([]byte(c.opts.WebhookSecret))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || c.opts.WebhookSecret == "" {
			c.log.Warn().Str("remote", r.RemoteAddr).Msg("telegram webhook: wrong secret token")
			http.Error(w, "wrong secret token", http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		var u tgbotapi.Update
		var head struct {
			UpdateID *int `json:"update_id"`
		}
		if json.Unmarshal(body, &head) != nil || head.UpdateID == nil || json.Unmarshal(body, &u) != nil {
			http.Error(w, "malformed update", http.StatusBadRequest)
			return
		}
		c.dispatch(ctx, h, &u, nil)
		w.WriteHeader(http.StatusOK)
	})
}

// setWebhook registers WebhookURL with the secret, if a URL is configured.
func (c *Connector) setWebhook() error {
	if c.opts.WebhookURL == "" {
		return nil
	}
	p := tgbotapi.Params{"url": c.opts.WebhookURL, "secret_token": c.opts.WebhookSecret}
	// Never drop_pending_updates here: Telegram would drop what arrives up
	// to this call, after readiness. dispatch drops by date instead.
	if _, err := c.bot.MakeRequest("setWebhook", p); err != nil {
		return c.red.Error(fmt.Errorf("telegram %s: setWebhook: %w", c.opts.Name, err))
	}
	return nil
}

func (c *Connector) serveWebhook(ctx context.Context, h connectors.Handler) error {
	ln, err := net.Listen("tcp", c.opts.WebhookListen)
	if err != nil {
		return fmt.Errorf("telegram %s: webhook: %w", c.opts.Name, err)
	}
	srv := &http.Server{Handler: c.WebhookHandler(ctx, h), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("telegram %s: webhook: %w", c.opts.Name, err)
	}
	return nil
}

// Connect contacts Telegram (getMe) without polling: for tests and for the
// webhook handler used inside another server.
func (c *Connector) Connect(ctx context.Context) error { return c.connect(ctx) }
