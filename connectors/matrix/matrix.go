// Package matrix is the Matrix connector: /sync through mautrix, replies as
// m.notice events with plain bodies, invites accepted only when policy
// admits the inviter.
//
// Identity is "matrix:<MXID>" of the event's sender, as the homeserver
// authenticated it; display names are for show only. Each event ID is
// handled once (the router drops a repeated event_id); edits (m.replace)
// never run anything. History is never replayed: events of the first sync
// after start dated before the connector was made, and events from before
// the bot joined a room, are skipped.
//
// A room with at most two members (the bot and one person) is a DM; any
// other room is a group, where the bot answers only when mentioned
// (m.mentions, its MXID in the body) or replied to.
//
// End-to-end encryption (Options.Encryption, built with -tags goolm; see
// e2ee.go) gives the bot its own device whose keys and olm/megolm sessions
// live in a SQLite file, encrypted with a pickle key from the environment.
// A decrypted message is trusted only as far as its megolm session ties it
// to a device of the event's sender: a device its owner cross-signed (or
// that the bot verified) is trusted; any other device of the sender makes
// the message Unverified (the policy then gives the sender the guest role);
// a session that belongs to no device of the sender, a replayed message
// index or ciphertext moved from another room is refused and recorded. A
// message that cannot be decrypted is recorded, answered once per megolm
// session asking the sender to share keys, and never read as plain text.
// In an encrypted room, a plain m.room.message (which only the homeserver
// vouches for) is Unverified, and every reply is encrypted or not sent.
// Without Options.Encryption, m.room.encrypted events are skipped with a
// warning.
package matrix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/internal/backoff"
	"github.com/parachute-gateway/parachute/internal/dispatch"
)

// Type is the connector type and identity prefix.
const Type = "matrix"

// Options configure the connector.
type Options struct {
	Name        string // connector name from the config
	Homeserver  string // client-server API base URL, e.g. https://matrix.example.org
	UserID      string // the bot's MXID
	AccessToken string // from the environment
	HTTPClient  *http.Client
	Logger      zerolog.Logger
	// Backoff bounds waits after failed syncs (default 500ms…1m).
	Backoff backoff.Backoff
	// Encryption turns on end-to-end encryption; nil: off.
	Encryption *Encryption
	// Recorder writes the connector's own records (messages refused or
	// not decrypted). Required with Encryption.
	Recorder Recorder
	// EditInterval is the least time between two edits of a streamed
	// reply in one room (default EditInterval).
	EditInterval time.Duration
}

// Encryption configures the bot's E2EE device.
type Encryption struct {
	// StorePath is the SQLite file of the device's keys, olm and megolm
	// sessions, the rooms' encryption state and the sync position. Made
	// 0600 in a folder only the gateway's user can write; a symbolic link
	// is refused.
	StorePath string
	// PickleKey encrypts the keys in the store (at least 32 bytes, from
	// pickle_key_env). Losing it loses the device.
	PickleKey []byte
	// RecoveryKey, if set, unlocks the account's cross-signing keys from
	// secret storage so the bot signs its own device (users who verified
	// the bot's account then trust the device).
	RecoveryKey string
	// KeyWait is how long a message whose room key has not arrived waits
	// for it before it is answered as undecryptable (default 10s; a key
	// request to the sender's devices goes out after a fifth of it).
	KeyWait time.Duration
}

// MinPickleKey is the shortest pickle key accepted, in bytes.
const MinPickleKey = 32

// Reasons of the records the connector writes itself.
const (
	// ReasonUndecryptable: an m.room.encrypted event the bot could not
	// decrypt (no room key, corrupt or unsupported ciphertext).
	ReasonUndecryptable = "matrix-undecryptable"
	// ReasonForgedSender: the megolm session of a decrypted event is not
	// a device of the event's sender (or its keys differ from the
	// device's, or the device is blacklisted).
	ReasonForgedSender = "matrix-sender-not-device-owner"
	// ReasonReplayed: a megolm message index already used by another
	// event, or ciphertext made for another room.
	ReasonReplayed = "matrix-replayed-ciphertext"
	// ReasonNotEncrypted: a reply to an encrypted room could not be
	// encrypted, so it was not sent.
	ReasonNotEncrypted = "matrix-reply-not-encrypted"
)

// Record is one connector record for the audit log. It never holds
// message text.
type Record struct {
	Reason   string            // one of the Reason constants
	Identity string            // "matrix:<MXID>" as the homeserver gave it
	ChatID   string            // room ID
	EventID  string            // the event refused
	Detail   map[string]string // device_id, session_id, trust, error
}

// Recorder writes Records; the gateway's implementation appends to the
// audit log and returns an error when the record is not durable.
type Recorder interface {
	RecordMatrix(ctx context.Context, r Record) error
}

// UndecryptableReply answers the first undecryptable message of a megolm
// session. %s is the bot's device ID.
const UndecryptableReply = "I could not decrypt your message: the room key for it never reached my device (%s). " +
	"Please check that your client shares keys with this device (in Element: verify the bot, or allow sending to unverified sessions), then send it again."

// NotRecordedReply answers a message the connector refused or could not
// decrypt when its record could not be written.
const NotRecordedReply = "The bot cannot write its audit log right now, so your message was not handled. Please try again later."

// Connector is a Matrix bot account.
type Connector struct {
	opts Options
	me   id.UserID
	red  *connectors.Redactor
	log  zerolog.Logger
	disp *dispatch.Dispatcher
	// ownEvents remembers the bot's own event IDs, so a reply to one of
	// them counts as addressing the bot.
	ownEvents *connectors.Dedup

	mu  sync.Mutex
	cli *mautrix.Client
	h   connectors.Handler
	// skip holds the message events of the current sync batch that
	// predate the bot's join in their room; only the sync goroutine uses it.
	skip map[id.EventID]bool
	// started is when New ran (unix ms): events of the first sync dated
	// before it are history; those after it were sent once the gateway
	// was starting or ready, and are answered.
	started int64
	// batches counts the sync batches of this connector; only the sync
	// goroutine uses it. The first batch is the one that may carry
	// history (with E2EE the sync position is kept across restarts, so
	// the first batch after one may carry messages sent while down).
	batches int
	// e2e is the encryption machinery, nil without Options.Encryption.
	e2e encryption
	// bg tracks messages waiting for their room keys.
	bg sync.WaitGroup
}

// encryption is what the connector needs from its E2EE device; e2ee.go
// implements it in builds with -tags goolm.
type encryption interface {
	// handleEncrypted decrypts an m.room.encrypted event and hands what
	// may be handled to c.deliver, in the background when its key is
	// still on its way.
	handleEncrypted(ctx context.Context, evt *event.Event)
	// isEncrypted reports whether room is encrypted; an error counts as
	// encrypted (a reply is then encrypted or not sent).
	isEncrypted(ctx context.Context, room id.RoomID) bool
	// encrypt encrypts content for room, sharing the room key with the
	// room's devices first when needed.
	encrypt(ctx context.Context, room id.RoomID, content any) (*event.EncryptedEventContent, error)
	deviceID() id.DeviceID
	close() error
}

// New checks opts. It does not contact the homeserver; Run does.
func New(opts Options) (*Connector, error) {
	if opts.Name == "" {
		return nil, errors.New("matrix: connector name is required")
	}
	u, err := url.Parse(opts.Homeserver)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("matrix: homeserver_url %q is not an http(s) URL", opts.Homeserver)
	}
	if _, _, err := id.UserID(opts.UserID).Parse(); err != nil {
		return nil, fmt.Errorf("matrix: user_id %q: %w", opts.UserID, err)
	}
	if opts.EditInterval <= 0 {
		opts.EditInterval = EditInterval
	}
	if opts.AccessToken == "" {
		return nil, errors.New("matrix: no access token (set the variable named by access_token_env)")
	}
	if e := opts.Encryption; e != nil {
		if !EncryptionBuilt {
			return nil, errors.New("matrix: encryption is on but this build has no end-to-end encryption (build with -tags goolm, as the Makefile does)")
		}
		if e.StorePath == "" {
			return nil, errors.New("matrix: encryption needs a crypto store path (crypto_store)")
		}
		if len(e.PickleKey) < MinPickleKey {
			return nil, fmt.Errorf("matrix: the pickle key has %d bytes, at least %d are needed (set the variable named by pickle_key_env, e.g. to $(openssl rand -hex 32))", len(e.PickleKey), MinPickleKey)
		}
		if opts.Recorder == nil {
			return nil, errors.New("matrix: encryption needs a Recorder for refused and undecryptable messages")
		}
	}
	c := &Connector{
		opts:      opts,
		me:        id.UserID(opts.UserID),
		red:       connectors.NewRedactor(opts.AccessToken),
		disp:      dispatch.New(0, 0),
		ownEvents: connectors.NewDedup(10000, 7*24*time.Hour),
		started:   time.Now().UnixMilli(),
	}
	c.log = opts.Logger.With().Str("connector", opts.Name).Str("connector_type", Type).Logger()
	return c, nil
}

// Name implements connectors.Connector.
func (c *Connector) Name() string { return c.opts.Name }

// syncer is mautrix's DefaultSyncer with our backoff after failed syncs.
type syncer struct {
	*mautrix.DefaultSyncer
	c *Connector
}

// OnFailedSync: a rejected token ends the sync; anything else waits.
func (s *syncer) OnFailedSync(_ *mautrix.RespSync, err error) (time.Duration, error) {
	if errors.Is(err, mautrix.MUnknownToken) || errors.Is(err, mautrix.MMissingToken) {
		return 0, err
	}
	wait := s.c.opts.Backoff.Next()
	s.c.log.Warn().Str("error", s.c.red.String(err.Error())).Dur("retry_in", wait).Msg("matrix sync failed")
	return wait, nil
}

func (c *Connector) client() (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(c.opts.Homeserver, c.me, c.opts.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("matrix %s: %w", c.opts.Name, err)
	}
	cli.Client = c.opts.HTTPClient
	if cli.Client == nil {
		cli.Client = &http.Client{Timeout: 90 * time.Second} // above the 30 s long poll
	}
	cli.Log = c.log.Level(zerolog.WarnLevel)
	cli.DefaultHTTPRetries = 2
	cli.DefaultHTTPBackoff = 500 * time.Millisecond
	cli.MaxHTTPBackoff = 30 * time.Second
	// With E2EE, startEncryption replaces both with the durable store.
	cli.StateStore = mautrix.NewMemoryStateStore()
	cli.Store = mautrix.NewMemorySyncStore()
	s := &syncer{DefaultSyncer: mautrix.NewDefaultSyncer(), c: c}
	cli.Syncer = s
	s.OnSync(c.beforeBatch)
	s.OnEvent(cli.StateStoreSyncHandler)
	s.OnEventType(event.StateMember, c.onMember)
	s.OnEventType(event.EventMessage, c.onMessage)
	s.OnEventType(event.EventEncrypted, c.onEncrypted)
	return cli, nil
}

// Run implements connectors.Connector: it checks the token (whoami must
// name the configured user) and syncs until ctx ends. A rejected token or
// a token of another user ends Run with an error wrapping ErrUnauthorized.
func (c *Connector) Run(ctx context.Context, h connectors.Handler) error {
	defer c.disp.Wait()
	defer c.bg.Wait()
	cli, err := c.client()
	if err != nil {
		return err
	}
	var who *mautrix.RespWhoami
	for {
		who, err = cli.Whoami(ctx)
		if err == nil && who.UserID != c.me {
			return fmt.Errorf("matrix %s: %w: the access token belongs to %s, not %s", c.opts.Name, connectors.ErrUnauthorized, who.UserID, c.me)
		}
		if err == nil {
			break
		}
		if errors.Is(err, mautrix.MUnknownToken) || errors.Is(err, mautrix.MMissingToken) {
			return fmt.Errorf("matrix %s: %w", c.opts.Name, connectors.ErrUnauthorized)
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := c.opts.Backoff.Next()
		c.log.Warn().Str("error", c.red.String(err.Error())).Dur("retry_in", wait).Msg("matrix whoami failed")
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
	if c.opts.Encryption != nil {
		if who.DeviceID == "" {
			return fmt.Errorf("matrix %s: encryption needs a device, and the homeserver names none for this access token (use a token from a password login, which makes a device)", c.opts.Name)
		}
		cli.DeviceID = who.DeviceID
		e2e, err := startEncryption(ctx, c, cli)
		if err != nil {
			return fmt.Errorf("matrix %s: %w", c.opts.Name, err)
		}
		defer func() {
			// Before the store closes: messages waiting for keys (which
			// may dispatch more), then the handlers (which reply).
			c.bg.Wait()
			c.disp.Wait()
			if err := e2e.close(); err != nil {
				c.log.Warn().Str("error", err.Error()).Msg("matrix crypto store close failed")
			}
		}()
		c.e2e = e2e
	}
	c.mu.Lock()
	c.cli, c.h = cli, h
	c.mu.Unlock()
	c.log.Info().Str("user_id", c.me.String()).Str("device_id", cli.DeviceID.String()).Bool("encryption", c.e2e != nil).Msg("matrix connected")
	for {
		err := cli.SyncWithContext(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, mautrix.MUnknownToken) || errors.Is(err, mautrix.MMissingToken) {
			return fmt.Errorf("matrix %s: %w", c.opts.Name, connectors.ErrUnauthorized)
		}
		wait := c.opts.Backoff.Next()
		c.log.Warn().Str("error", c.red.String(fmt.Sprint(err))).Dur("retry_in", wait).Msg("matrix sync stopped; restarting")
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

// beforeBatch runs before a sync batch's events: it resets the backoff and
// marks message events that precede the bot's own join in their room (the
// history a homeserver sends on join), so they are not answered.
func (c *Connector) beforeBatch(_ context.Context, resp *mautrix.RespSync, _ string) bool {
	c.opts.Backoff.Reset()
	c.batches++
	c.skip = map[id.EventID]bool{}
	for _, room := range resp.Rooms.Join {
		evs := room.Timeline.Events
		join := -1
		for i, e := range evs {
			if e.Type == event.StateMember && e.GetStateKey() == c.me.String() {
				if ms, _ := e.Content.Raw["membership"].(string); ms == string(event.MembershipJoin) {
					join = i
				}
			}
		}
		for _, e := range evs[:join+1] {
			c.skip[e.ID] = true
		}
	}
	return true
}

// history: an event of the connector's first sync batch dated before New
// ran, or one before the bot's join in its room. Only the sync goroutine
// calls it.
func (c *Connector) history(evt *event.Event) bool {
	return (c.batches <= 1 && evt.Timestamp < c.started) || c.skip[evt.ID]
}

func (c *Connector) current() (*mautrix.Client, connectors.Handler, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cli == nil {
		return nil, nil, fmt.Errorf("matrix %s: not connected", c.opts.Name)
	}
	return c.cli, c.h, nil
}

func (c *Connector) onEncrypted(ctx context.Context, evt *event.Event) {
	if c.history(evt) || evt.Sender == c.me {
		return
	}
	if c.e2e == nil {
		c.log.Warn().Str("chat_id", evt.RoomID.String()).Str("sender", evt.Sender.String()).
			Msg("matrix: encrypted event skipped (encryption is off for this connector)")
		return
	}
	c.e2e.handleEncrypted(ctx, evt)
}
