//go:build goolm

package matrix

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/olm"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"
	_ "modernc.org/sqlite" // pure-Go SQLite: CGO_ENABLED=0 builds keep E2EE

	"github.com/parachute-gateway/parachute/connectors"
)

// EncryptionBuilt reports whether this build has end-to-end encryption
// (the pure-Go olm of mautrix, selected by the build tag goolm).
const EncryptionBuilt = true

// e2ee is the bot's device: an OlmMachine over a SQLite store that keeps
// the account, olm and megolm sessions, device lists, the rooms' state
// and the sync position across restarts.
type e2ee struct {
	c     *Connector
	cli   *mautrix.Client
	mach  *crypto.OlmMachine
	state *sqlstatestore.SQLStateStore
	db    *dbutil.Database
	wait  time.Duration
	// answered: the megolm sessions whose first undecryptable message was
	// answered (room, sender, session), so a sender gets one reply each;
	// answeredSender caps that at one per sender and room in 10 minutes,
	// whatever session IDs the ciphertext claims.
	answered, answeredSender *connectors.Dedup
}

// startEncryption opens the store, loads (or creates and uploads) the
// device's keys, checks them against the homeserver's, cross-signs the
// device when a recovery key is given, and hooks decryption into cli's
// syncer.
func startEncryption(ctx context.Context, c *Connector, cli *mautrix.Client) (encryption, error) {
	opts := c.opts.Encryption
	db, err := openStore(opts.StorePath)
	if err != nil {
		return nil, err
	}
	e := &e2ee{c: c, cli: cli, db: db, wait: opts.KeyWait, answered: connectors.NewDedup(10000, 7*24*time.Hour),
		answeredSender: connectors.NewDedup(10000, 10*time.Minute)}
	if e.wait <= 0 {
		e.wait = 10 * time.Second
	}
	if err := e.start(ctx, opts); err != nil {
		_ = db.Close()
		return nil, err
	}
	return e, nil
}

func (e *e2ee) start(ctx context.Context, opts *Encryption) error {
	cli := e.cli
	log := e.c.log.With().Str("component", "matrix-crypto").Logger().Level(zerolog.WarnLevel)
	e.state = sqlstatestore.NewSQLStateStore(e.db, dbutil.ZeroLogger(log), false)
	if err := e.state.Upgrade(ctx); err != nil {
		return fmt.Errorf("crypto store %s: room state tables: %w", opts.StorePath, err)
	}
	store := crypto.NewSQLCryptoStore(e.db, dbutil.ZeroLogger(log), "", cli.DeviceID, opts.PickleKey)
	if err := store.DB.Upgrade(ctx); err != nil {
		return fmt.Errorf("crypto store %s: crypto tables: %w", opts.StorePath, err)
	}
	stored, err := store.FindDeviceID(ctx)
	if err != nil {
		return fmt.Errorf("crypto store %s: %w", opts.StorePath, err)
	}
	if stored != "" && stored != cli.DeviceID {
		return fmt.Errorf("the crypto store %s holds the keys of device %s, but the access token is for device %s: use a token of device %s, or move the store away to start a new device (people will see a new, unverified device of the bot)",
			opts.StorePath, stored, cli.DeviceID, stored)
	}
	cli.StateStore = e.state
	cli.Store = store // the sync position: to-device messages are never lost across restarts
	e.mach = crypto.NewOlmMachine(cli, &log, store, e.state)
	if err := e.mach.Load(ctx); err != nil {
		if errors.Is(err, olm.ErrBadMAC) {
			return fmt.Errorf("crypto store %s: the pickle key does not open it (pickle_key_env changed?): %w", opts.StorePath, err)
		}
		return fmt.Errorf("crypto store %s: load the device: %w", opts.StorePath, err)
	}
	if err := e.checkKeysOnServer(ctx); err != nil {
		return err
	}
	if opts.RecoveryKey != "" {
		if err := e.mach.VerifyWithRecoveryKey(ctx, opts.RecoveryKey); err != nil {
			return fmt.Errorf("cross-signing with the recovery key (recovery_key_env): %w", err)
		}
	}
	e.c.log.Info().Str("device_id", cli.DeviceID.String()).Str("device_fingerprint", e.mach.OwnIdentity().SigningKey.Fingerprint()).
		Bool("cross_signed", opts.RecoveryKey != "").Msg("matrix e2ee device ready")
	s := cli.Syncer.(*syncer)
	// After beforeBatch: to-device room keys and device-list changes are
	// processed before the batch's room events.
	s.OnSync(e.mach.ProcessSyncResponse)
	s.OnEventType(event.StateMember, e.mach.HandleMemberEvent)
	s.OnEventType(event.StateHistoryVisibility, e.mach.HandleHistoryVisibility)
	return nil
}

// checkKeysOnServer uploads the device's keys the first time, and refuses
// a device whose keys on the homeserver are not the ones in the store.
func (e *e2ee) checkKeysOnServer(ctx context.Context) error {
	resp, err := e.cli.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: map[id.UserID]mautrix.DeviceIDList{e.cli.UserID: {e.cli.DeviceID}}})
	if err != nil {
		return fmt.Errorf("query the device's keys: %w", err)
	}
	own := e.mach.OwnIdentity()
	shared := e.mach.GetAccount().Shared
	dev, ok := resp.DeviceKeys[e.cli.UserID][e.cli.DeviceID]
	switch {
	case (!ok || len(dev.Keys) == 0) && shared:
		return fmt.Errorf("the keys of device %s are gone from the homeserver although the store says they were uploaded: log in again for a new device and move the store away", e.cli.DeviceID)
	case !ok || len(dev.Keys) == 0:
		if err := e.mach.ShareKeys(ctx, -1); err != nil {
			return fmt.Errorf("upload the device's keys: %w", err)
		}
		return nil
	case !shared:
		return fmt.Errorf("device %s already has keys on the homeserver that this store did not make (a store lost or from another device?): log in again for a new device", e.cli.DeviceID)
	case dev.Keys.GetEd25519(e.cli.DeviceID) != own.SigningKey:
		return fmt.Errorf("the homeserver has other keys for device %s than the store", e.cli.DeviceID)
	}
	return nil
}

// openStore opens (or creates) the SQLite store without following a
// symbolic link: a regular file of this user, mode 0600, in a folder
// nobody else can write.
func openStore(path string) (*dbutil.Database, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("crypto store folder %s: %w", dir, err)
	}
	if fi, err := os.Lstat(dir); err != nil {
		return nil, fmt.Errorf("crypto store folder %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("crypto store folder %s is not a folder (a symbolic link?)", dir)
	} else if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("crypto store folder %s is writable by others (mode %o): chmod go-w %s", dir, fi.Mode().Perm(), dir)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("crypto store %s is a symbolic link; give the real path", path)
	}
	if err != nil {
		return nil, fmt.Errorf("crypto store %s: %w", path, err)
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("crypto store %s: %w", path, err)
	}
	if err := checkStoreFile(path, fi); err != nil {
		return nil, err
	}
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"
	raw, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("crypto store %s: %w", path, err)
	}
	db, err := dbutil.NewWithDB(raw, "sqlite")
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("crypto store %s: %w", path, err)
	}
	return db, nil
}

func (e *e2ee) deviceID() id.DeviceID { return e.cli.DeviceID }

func (e *e2ee) close() error {
	e.mach.Destroy()
	return e.db.Close()
}

func (e *e2ee) isEncrypted(ctx context.Context, room id.RoomID) bool {
	enc, err := e.state.IsEncrypted(ctx, room)
	return enc || err != nil
}

func (e *e2ee) encrypt(ctx context.Context, room id.RoomID, content any) (*event.EncryptedEventContent, error) {
	enc, err := e.mach.EncryptMegolmEvent(ctx, room, event.EventMessage, content)
	if err == nil {
		return enc, nil
	}
	if !errors.Is(err, crypto.ErrSessionExpired) && !errors.Is(err, crypto.ErrNoGroupSession) && !errors.Is(err, crypto.ErrSessionNotShared) {
		return nil, err
	}
	// A new or expired outbound session: share it with every device of
	// the room's members (device lists as tracked from the sync), then
	// encrypt.
	users, err := e.state.GetRoomJoinedOrInvitedMembers(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("room members: %w", err)
	}
	if err := e.mach.ShareGroupSession(ctx, room, users); err != nil {
		return nil, fmt.Errorf("share the room key: %w", err)
	}
	return e.mach.EncryptMegolmEvent(ctx, room, event.EventMessage, content)
}

// handleEncrypted runs on the sync goroutine. A message whose key is here
// is decrypted and delivered at once; one whose key is not waits in the
// background (the key comes with a later sync), with a key request to
// the sender's devices after a fifth of the wait.
func (e *e2ee) handleEncrypted(ctx context.Context, evt *event.Event) {
	dec, err := e.mach.DecryptMegolmEvent(ctx, evt)
	if !errors.Is(err, crypto.ErrNoSessionFound) {
		e.decrypted(ctx, evt, dec, err)
		return
	}
	e.c.bg.Add(1)
	go func() {
		defer e.c.bg.Done()
		content := evt.Content.AsEncrypted()
		first := e.wait / 5
		if !e.mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, first) {
			if ctx.Err() != nil {
				return // shutting down: the event is not lost, it stays in the room
			}
			e.requestKey(ctx, evt, content)
			if !e.mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, e.wait-first) {
				if ctx.Err() != nil {
					return // shutting down: the event is not lost, it stays in the room
				}
				e.decrypted(ctx, evt, nil, err)
				return
			}
		}
		dec, err := e.mach.DecryptMegolmEvent(ctx, evt)
		e.decrypted(ctx, evt, dec, err)
	}()
}

func (e *e2ee) requestKey(ctx context.Context, evt *event.Event, content *event.EncryptedEventContent) {
	dev := content.DeviceID
	if dev == "" {
		dev = "*"
	}
	err := e.mach.SendRoomKeyRequest(ctx, evt.RoomID, content.SenderKey, content.SessionID, "",
		map[id.UserID][]id.DeviceID{evt.Sender: {dev}})
	if err != nil {
		e.c.log.Warn().Str("event_id", evt.ID.String()).Str("error", e.c.red.String(err.Error())).Msg("matrix room key request failed")
	}
}

// decrypted decides what a decryption result may become: a message (with
// the sender's device trust), a refusal or an undecryptable answer.
func (e *e2ee) decrypted(ctx context.Context, evt *event.Event, dec *event.Event, err error) {
	content, _ := evt.Content.Parsed.(*event.EncryptedEventContent)
	detail := map[string]string{}
	if content != nil {
		detail["session_id"] = content.SessionID.String()
		if content.DeviceID != "" {
			detail["claimed_device_id"] = content.DeviceID.String()
		}
	}
	if err != nil {
		detail["error"] = e.c.red.String(err.Error())
		reason := ReasonUndecryptable
		if errors.Is(err, crypto.ErrDuplicateMessageIndex) || errors.Is(err, crypto.ErrWrongRoom) {
			reason = ReasonReplayed
		}
		e.refuse(ctx, evt, reason, detail)
		return
	}
	detail["trust"] = dec.Mautrix.TrustState.String()
	if dec.Mautrix.TrustSource != nil {
		detail["device_id"] = dec.Mautrix.TrustSource.DeviceID.String()
	}
	v := judge(dec.Mautrix.TrustState)
	if dec.Mautrix.ForwardedKeys && v == senderTrusted {
		// A key another device passed on vouches for that device, not
		// for the sender's own: unverified, whoever forwarded it.
		v = senderUnverified
		detail["forwarded"] = "true"
	}
	switch v {
	case senderForged:
		e.refuse(ctx, evt, ReasonForgedSender, detail)
		return
	case senderUnverified:
		e.c.log.Info().Str("event_id", evt.ID.String()).Str("sender", evt.Sender.String()).Str("trust", detail["trust"]).Msg("matrix message from an unverified device")
		e.deliverDecrypted(ctx, dec, true)
	default:
		e.deliverDecrypted(ctx, dec, false)
	}
}

func (e *e2ee) deliverDecrypted(ctx context.Context, dec *event.Event, unverified bool) {
	if dec.Type != event.EventMessage {
		return // reactions, stickers, …: nothing for the agent
	}
	e.c.deliver(ctx, dec, unverified)
}

// refuse records an event that is not handled; an undecryptable one is
// then answered once per megolm session. Nothing is sent before its
// record is written; without the record the sender is told so.
func (e *e2ee) refuse(ctx context.Context, evt *event.Event, reason string, detail map[string]string) {
	log := e.c.log.With().Str("event_id", evt.ID.String()).Str("sender", evt.Sender.String()).Str("chat_id", evt.RoomID.String()).Str("reason", reason).Logger()
	rec := Record{Reason: reason, Identity: Type + ":" + evt.Sender.String(), ChatID: evt.RoomID.String(), EventID: evt.ID.String(), Detail: detail}
	// Once per megolm session; the audit-log answer is due whenever the
	// record fails, the key-sharing one at most once per sender and room
	// in 10 minutes (made-up session IDs do not buy more answers).
	first := reason == ReasonUndecryptable &&
		e.answered.First(evt.RoomID.String()+"\x00"+evt.Sender.String()+"\x00"+detail["session_id"])
	if err := e.c.opts.Recorder.RecordMatrix(ctx, rec); err != nil {
		log.Error().Str("error", e.c.red.String(err.Error())).Msg("matrix event refused; its record could not be written")
		if first {
			_ = e.c.SendText(ctx, evt.RoomID.String(), NotRecordedReply)
		}
		return
	}
	answer := first && e.answeredSender.First(evt.RoomID.String()+"\x00"+evt.Sender.String())
	log.Warn().Str("error", detail["error"]).Msg("matrix event refused")
	if answer {
		if err := e.c.SendText(ctx, evt.RoomID.String(), fmt.Sprintf(UndecryptableReply, e.cli.DeviceID)); err != nil {
			log.Warn().Str("error", e.c.red.String(err.Error())).Msg("matrix undecryptable answer not sent")
		}
	}
}
