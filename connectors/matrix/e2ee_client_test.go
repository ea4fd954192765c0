//go:build goolm

package matrix_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// device is a person's E2EE client: a second mautrix client with its own
// olm device (memory store), syncing straight from Dendrite, as Element
// would. It sends encrypted messages and keeps what the bot sends it.
type device struct {
	person
	cli  *mautrix.Client
	mach *crypto.OlmMachine

	mu     sync.Mutex
	got    []received
	notify chan struct{} // closed and replaced on every received message
}

// received is one message of the bot as this device sees it.
type received struct {
	room      string
	encrypted bool   // it came as m.room.encrypted and decrypted
	msgtype   string // m.notice, …
	body      string
}

// newDevice starts p's E2EE client. crossSign makes p's account
// cross-signing keys and signs the device with them (what "verify this
// session" does in Element); without it the device is unverified.
func newDevice(t testing.TB, p person, crossSign bool) *device {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cli, err := mautrix.NewClient(p.hs.URL, id.UserID(p.UserID), p.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	cli.DeviceID = id.DeviceID(p.DeviceID)
	cli.Log = zerolog.Nop()
	st := mautrix.NewMemoryStateStore()
	cli.StateStore = st
	cli.Store = mautrix.NewMemorySyncStore()
	log := zerolog.Nop()
	mach := crypto.NewOlmMachine(cli, &log, newMemoryStore(), st.(crypto.StateStore))
	if err := mach.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mach.ShareKeys(ctx, -1); err != nil {
		t.Fatalf("%s: upload device keys: %v", p.UserID, err)
	}
	d := &device{person: p, cli: cli, mach: mach, notify: make(chan struct{})}
	if crossSign {
		keys, err := mach.GenerateCrossSigningKeys()
		if err != nil {
			t.Fatal(err)
		}
		uia := func(r *mautrix.RespUserInteractive) any {
			return map[string]any{"type": "m.login.password", "session": r.Session, "password": p.Password,
				"identifier": map[string]any{"type": "m.id.user", "user": p.UserID}}
		}
		if err := mach.PublishCrossSigningKeys(ctx, keys, uia); err != nil {
			t.Fatalf("%s: publish cross-signing keys: %v", p.UserID, err)
		}
		if err := mach.SignOwnDevice(ctx, mach.OwnIdentity()); err != nil {
			t.Fatalf("%s: sign own device: %v", p.UserID, err)
		}
	}
	s := mautrix.NewDefaultSyncer()
	s.OnSync(mach.ProcessSyncResponse)
	s.OnEvent(cli.StateStoreSyncHandler)
	s.OnEventType(event.StateMember, mach.HandleMemberEvent)
	s.OnEventType(event.EventMessage, func(ctx context.Context, evt *event.Event) { d.keep(evt, false) })
	s.OnEventType(event.EventEncrypted, func(ctx context.Context, evt *event.Event) {
		if evt.Sender == cli.UserID {
			return
		}
		dec, err := mach.DecryptMegolmEvent(ctx, evt)
		if errors.Is(err, crypto.ErrNoSessionFound) {
			c := evt.Content.AsEncrypted()
			go func() {
				if mach.WaitForSession(ctx, evt.RoomID, c.SenderKey, c.SessionID, 20*time.Second) {
					if dec, err := mach.DecryptMegolmEvent(ctx, evt); err == nil {
						d.keep(dec, true)
					}
				}
			}()
			return
		}
		if err == nil {
			d.keep(dec, true)
		}
	})
	cli.Syncer = s
	done := make(chan struct{})
	go func() { defer close(done); _ = cli.SyncWithContext(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func (d *device) keep(evt *event.Event, encrypted bool) {
	// Only the bot's messages (newWorld registers it as "parachute").
	if !strings.HasPrefix(evt.Sender.String(), "@parachute:") || evt.Type != event.EventMessage {
		return
	}
	c, ok := evt.Content.Parsed.(*event.MessageEventContent)
	if !ok {
		return
	}
	d.mu.Lock()
	d.got = append(d.got, received{room: evt.RoomID.String(), encrypted: encrypted, msgtype: string(c.MsgType), body: c.Body})
	close(d.notify)
	d.notify = make(chan struct{})
	d.mu.Unlock()
}

// wait blocks until the device has n messages in room and returns them.
func (d *device) wait(t testing.TB, room string, n int) []received {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		d.mu.Lock()
		var in []received
		for _, r := range d.got {
			if r.room == room {
				in = append(in, r)
			}
		}
		ch := d.notify
		d.mu.Unlock()
		if len(in) >= n {
			return in
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("%s: %d messages in %s after 30s, want %d: %+v", d.UserID, len(in), room, n, in)
		}
	}
}

// sendEncrypted shares the device's room key with the room's members'
// devices and sends content encrypted.
func (d *device) sendEncrypted(t testing.TB, room string, content map[string]any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members, err := d.cli.JoinedMembers(ctx, id.RoomID(room))
	if err != nil {
		t.Fatal(err)
	}
	var users []id.UserID
	for u := range members.Joined {
		users = append(users, u)
	}
	if err := d.mach.ShareGroupSession(ctx, id.RoomID(room), users); err != nil {
		t.Fatalf("share group session: %v", err)
	}
	enc, err := d.mach.EncryptMegolmEvent(ctx, id.RoomID(room), event.EventMessage, content)
	if err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	resp, err := d.cli.SendMessageEvent(ctx, id.RoomID(room), event.EventEncrypted, enc)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return resp.EventID.String()
}

// encryptedRoom creates a room with encryption on, inviting others.
func (w *world) encryptedRoom(t testing.TB, p person, direct bool, invite ...string) string {
	t.Helper()
	var out struct {
		RoomID string `json:"room_id"`
	}
	p.do(t, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat", "invite": invite, "is_direct": direct,
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}}, &out)
	w.mu.Lock()
	w.creators[out.RoomID] = p
	w.mu.Unlock()
	return out.RoomID
}

// memoryStore is mautrix's crypto.MemoryStore with its signature map
// guarded: MemoryStore (v0.32.0) writes it under a read lock (PutSignature,
// DropSignaturesByKey) and hands the inner map out of the lock
// (GetSignaturesForKeyBy, read by IsKeySignedBy), so a device syncing
// cross-signing keys while it sends races (go test -race). Tests only: the
// connector keeps its crypto state in its own store.
type memoryStore struct {
	*crypto.MemoryStore
	sigs sync.RWMutex
}

func newMemoryStore() *memoryStore { return &memoryStore{MemoryStore: crypto.NewMemoryStore(nil)} }

func (s *memoryStore) PutSignature(ctx context.Context, signedUser id.UserID, signedKey id.Ed25519, signerUser id.UserID, signerKey id.Ed25519, sig string) error {
	s.sigs.Lock()
	defer s.sigs.Unlock()
	return s.MemoryStore.PutSignature(ctx, signedUser, signedKey, signerUser, signerKey, sig)
}

func (s *memoryStore) DropSignaturesByKey(ctx context.Context, user id.UserID, key id.Ed25519) (int64, error) {
	s.sigs.Lock()
	defer s.sigs.Unlock()
	return s.MemoryStore.DropSignaturesByKey(ctx, user, key)
}

func (s *memoryStore) GetSignaturesForKeyBy(ctx context.Context, user id.UserID, key id.Ed25519, signer id.UserID) (map[id.Ed25519]string, error) {
	s.sigs.RLock()
	defer s.sigs.RUnlock()
	m, err := s.MemoryStore.GetSignaturesForKeyBy(ctx, user, key, signer)
	return maps.Clone(m), err
}

func (s *memoryStore) IsKeySignedBy(ctx context.Context, user id.UserID, key id.Ed25519, signer id.UserID, signerKey id.Ed25519) (bool, error) {
	s.sigs.RLock()
	defer s.sigs.RUnlock()
	return s.MemoryStore.IsKeySignedBy(ctx, user, key, signer, signerKey)
}
