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
// End-to-end encryption is not built yet (see docs/connectors.md): the
// connector cannot read m.room.encrypted events and skips them. With E2EE,
// senders whose device is unverified or whose keys do not match their MXID
// must be marked Unverified (the policy then gives them the guest role).
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
	Backoff connectors.Backoff
}

// Connector is a Matrix bot account.
type Connector struct {
	opts Options
	me   id.UserID
	red  *connectors.Redactor
	log  zerolog.Logger
	disp *connectors.Dispatcher
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
	if opts.AccessToken == "" {
		return nil, errors.New("matrix: no access token (set the variable named by access_token_env)")
	}
	c := &Connector{
		opts:      opts,
		me:        id.UserID(opts.UserID),
		red:       connectors.NewRedactor(opts.AccessToken),
		disp:      connectors.NewDispatcher(0, 0),
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
	cli, err := c.client()
	if err != nil {
		return err
	}
	for {
		who, err := cli.Whoami(ctx)
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
		if !connectors.Sleep(ctx, wait) {
			return nil
		}
	}
	c.mu.Lock()
	c.cli, c.h = cli, h
	c.mu.Unlock()
	c.log.Info().Str("user_id", c.me.String()).Msg("matrix connected")
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
		if !connectors.Sleep(ctx, wait) {
			return nil
		}
	}
}

// beforeBatch runs before a sync batch's events: it resets the backoff and
// marks message events that precede the bot's own join in their room (the
// history a homeserver sends on join), so they are not answered.
func (c *Connector) beforeBatch(_ context.Context, resp *mautrix.RespSync, _ string) bool {
	c.opts.Backoff.Reset()
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

// initialSync: the first sync after start (no since token) brings history.
func initialSync(ctx context.Context) bool {
	since, _ := ctx.Value(mautrix.SyncTokenContextKey).(string)
	return since == ""
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
	if initialSync(ctx) || evt.Sender == c.me {
		return
	}
	c.log.Warn().Str("chat_id", evt.RoomID.String()).Str("sender", evt.Sender.String()).
		Msg("matrix: encrypted event skipped (end-to-end encryption is not supported yet)")
}
