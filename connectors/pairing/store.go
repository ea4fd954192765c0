// Package pairing is the gateway's store of who may talk to it beyond the
// config's allowlists: pairing requests an owner approves, single-use
// invite tokens, and the bindings (connector, identity) → role and
// workspace both produce. Bindings reach policy as input.binding.
//
// The store is one bbolt file. It is opened for each operation and closed
// again, so the running gateway and the `parachute pair` / `parachute
// invite` commands can use the same file in turn. The gateway's hot path
// (Binding) reads an in-memory copy that is refreshed when the file changes.
//
// Invite tokens are stored only as SHA-256 hashes. Every redemption attempt
// and every pairing request is rate-limited per identity and recorded; the
// attempt buckets live in the file too, so a restart gives a guesser no
// fresh attempts.
//
// No grant without its record. A store opened with a Recorder (the
// gateway's, on the audit log) writes the record inside the bbolt
// transaction that makes the change, before it commits: if the record
// cannot be written the transaction is rolled back and the caller gets
// ErrNotRecorded. A store opened without one (the `parachute pair` and
// `parachute invite` commands, which must not write the gateway's audit
// log behind its back) queues each event in the file's outbox in the same
// transaction as the change; grants (an approval, a new invite) are held
// there and take effect only when the gateway has recorded them, while
// restrictions (a denial, a revocation) take effect at once and their
// record follows. The gateway drains the outbox whenever the file changes.
package pairing

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/parachute-gateway/parachute/engine"
)

// Errors of the store; check with errors.Is.
var (
	// ErrRateLimited: too many attempts from one identity; see RateLimitError.
	ErrRateLimited = errors.New("too many attempts")
	// ErrInvalidToken: no such invite, or it was used or has expired.
	ErrInvalidToken = errors.New("invite token is not valid")
	// ErrNoSuchCode: no pending pairing request has this code (or it expired).
	ErrNoSuchCode = errors.New("no pending pairing request with this code")
	// ErrTooManyPending: the store holds MaxPending requests already.
	ErrTooManyPending = errors.New("too many pending pairing requests")
	// ErrInvalid: an argument is malformed (the message says which).
	ErrInvalid = errors.New("invalid argument")
	// ErrStore: the store file could not be used.
	ErrStore = errors.New("pairing store unavailable")
	// ErrNotRecorded: the audit record of a grant could not be written, so
	// nothing was granted.
	ErrNotRecorded = errors.New("the audit log could not record it, so nothing was granted")
)

// RateLimitError carries when to try again.
type RateLimitError struct{ RetryAfter time.Duration }

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many attempts; try again in %s", e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(t error) bool { return t == ErrRateLimited }

// Kinds of Event.
const (
	KindPairRequest  = "pair-request"
	KindInviteRedeem = "invite-redeem"
	KindPairApprove  = "pair-approve"
	KindPairDeny     = "pair-deny"
	KindInviteCreate = "invite-create"
	KindRevoke       = "binding-revoke"
	KindInviteRevoke = "invite-revoke"
)

// Reasons of a refused Event.
const (
	ReasonRateLimited    = "rate-limited"
	ReasonInvalidToken   = "invalid-token"
	ReasonNoSuchCode     = "no-such-code"
	ReasonTooManyPending = "too-many-pending"
	ReasonStoreError     = "store-error"
	ReasonNotRecorded    = "not-recorded"
)

// Event is one recorded grant, refusal or change of access.
type Event struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"` // a Kind* constant
	Connector string    `json:"connector,omitempty"`
	Identity  string    `json:"identity,omitempty"` // whose access it is about
	// Actor is who did it: the platform identity for a chat request, the
	// operator ("operator uid:1000") for a CLI action.
	Actor     string `json:"actor,omitempty"`
	Role      string `json:"role,omitempty"`      // granted, if any
	Workspace string `json:"workspace,omitempty"` // granted, if any
	Previous  string `json:"previous,omitempty"`  // role of the binding replaced or removed
	OK        bool   `json:"ok"`
	Reason    string `json:"reason,omitempty"` // why not: a Reason* constant
	// Queued is when a CLI action was queued for the gateway to record
	// (zero: recorded as it happened).
	Queued time.Time `json:"queued,omitzero"`
}

// Recorder receives every Event; the audit log implements it.
type Recorder interface {
	RecordAuth(ctx context.Context, e Event) error
}

// Defaults.
const (
	CodeTTL    = time.Hour
	MaxPending = 1000
	// codeAlphabet leaves out look-alikes (0/O, 1/I/L).
	codeAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
	codeLen      = 8
)

// Options configure a Store.
type Options struct {
	Path string // the bbolt file; its folder is created 0700
	// Recorder records every event before its change commits (the
	// gateway). Without one, events are queued in the file for the gateway
	// to record, and grants wait for it (the CLI).
	Recorder Recorder
	// Actor is who the operator actions of this store (Approve, Deny,
	// Revoke, CreateInvite) are recorded as, e.g. "operator uid:1000".
	Actor string
	// AttemptsPerHour and AttemptBurst bound pairing requests and invite
	// redemptions per identity (defaults 10 and 5).
	AttemptsPerHour float64
	AttemptBurst    float64
	Now             func() time.Time
}

// MaxAttemptKeys bounds the identities whose attempt buckets are kept;
// past it, refilled buckets are swept and, if none are, attempts from new
// identities are refused (fail closed) until some refill.
const MaxAttemptKeys = 100000

// Store is the pairing and invite store. Safe for concurrent use.
type Store struct {
	path  string
	rec   Recorder
	actor string
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	stamp     fileStamp
	bindings  map[string]engine.Binding
	drainedAt time.Time // last outbox drain that left entries behind
	undrained bool
}

type fileStamp struct {
	mod  time.Time
	size int64
}

var (
	bBindings     = []byte("bindings")
	bPending      = []byte("pending")
	bInvites      = []byte("invites")
	bAttempts     = []byte("attempts")      // identity -> attempt bucket
	bOutbox       = []byte("outbox")        // seq -> queued event, for the gateway to record
	bHeldBindings = []byte("held-bindings") // binding key -> binding waiting for its record
	bHeldInvites  = []byte("held-invites")  // token hash -> invite waiting for its record
	allBuckets    = [][]byte{bBindings, bPending, bInvites, bAttempts, bOutbox, bHeldBindings, bHeldInvites}
)

// Open checks that the store file can be used (creating it if needed) and
// returns the Store.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("%w: no store path given", ErrInvalid)
	}
	s := &Store{
		path:  opts.Path,
		rec:   opts.Recorder,
		actor: opts.Actor,
		now:   opts.Now,
		rate:  opts.AttemptsPerHour / 3600,
		burst: opts.AttemptBurst,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rate <= 0 {
		s.rate = 10.0 / 3600
	}
	if s.burst <= 0 {
		s.burst = 5
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.rec != nil {
		s.drain(ctx) // what the CLI queued while the gateway was down
	}
	return s, nil
}

// Queued reports whether this store queues its events for the gateway
// (it has no Recorder): its grants take effect once the gateway records
// them.
func (s *Store) Queued() bool { return s.rec == nil }

func (s *Store) db(readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrStore, s.path, err)
	}
	return db, nil
}

func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	db, err := s.db(false)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(fn)
}

func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	db, err := s.db(false)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(fn)
}

func bindingKey(connector, identity string) []byte {
	return []byte(connector + "\x00" + identity)
}

// Binding returns the binding of identity on connector, or nil. It reads an
// in-memory copy, refreshed whenever the file's size or time changes.
func (s *Store) Binding(ctx context.Context, connector, identity string) (*engine.Binding, error) {
	st, err := os.Stat(s.path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	}
	stamp := fileStamp{st.ModTime(), st.Size()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maybeDrainLocked(ctx, stamp) {
		if st, err := os.Stat(s.path); err == nil {
			stamp = fileStamp{st.ModTime(), st.Size()}
		}
		s.bindings = nil
	}
	if s.bindings == nil || stamp != s.stamp {
		m := make(map[string]engine.Binding)
		err := s.view(ctx, func(tx *bolt.Tx) error {
			return tx.Bucket(bBindings).ForEach(func(k, v []byte) error {
				var b engine.Binding
				if err := json.Unmarshal(v, &b); err != nil {
					return fmt.Errorf("binding %q: %w", k, err)
				}
				m[string(k)] = b
				return nil
			})
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrStore, err)
		}
		s.bindings, s.stamp = m, stamp
	}
	b, ok := s.bindings[string(bindingKey(connector, identity))]
	if !ok {
		return nil, nil
	}
	return &b, nil
}

// BoundIdentity is one binding as listed.
type BoundIdentity struct {
	Connector string
	Identity  string
	engine.Binding
	// Held: approved from the CLI, not yet recorded by the gateway, so
	// not yet in effect.
	Held bool
}

// Bindings lists every binding, sorted, the held ones after the others.
func (s *Store) Bindings(ctx context.Context) ([]BoundIdentity, error) {
	var out []BoundIdentity
	err := s.view(ctx, func(tx *bolt.Tx) error {
		for _, bucket := range [][]byte{bBindings, bHeldBindings} {
			err := tx.Bucket(bucket).ForEach(func(k, v []byte) error {
				conn, id, _ := strings.Cut(string(k), "\x00")
				var b engine.Binding
				if err := json.Unmarshal(v, &b); err != nil {
					return err
				}
				out = append(out, BoundIdentity{conn, id, b, bytes.Equal(bucket, bHeldBindings)})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// Revoke removes the binding of identity on connector (and any approval
// still waiting for its record). A revocation takes effect even while the
// audit log is down: the CLI's record is queued with it in one transaction.
func (s *Store) Revoke(ctx context.Context, connector, identity string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		k := bindingKey(connector, identity)
		e := Event{Kind: KindRevoke, Connector: connector, Identity: identity, Actor: s.actor, OK: true}
		if v := tx.Bucket(bBindings).Get(k); v != nil {
			var b engine.Binding
			_ = json.Unmarshal(v, &b)
			e.Previous = b.Role
		}
		if err := s.recordTx(ctx, tx, e, nil); err != nil {
			return err
		}
		if err := tx.Bucket(bHeldBindings).Delete(k); err != nil {
			return err
		}
		return tx.Bucket(bBindings).Delete(k)
	})
}

// Pending is a pairing request waiting for the owner.
type Pending struct {
	Code        string    `json:"code"`
	Connector   string    `json:"connector"`
	Identity    string    `json:"identity"`
	DisplayName string    `json:"display_name"` // for the owner's eyes only
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	// New is set by RequestCode when it made this request (not when it
	// returned the identity's unexpired one): the owners are told once.
	New bool `json:"-"`
}

// attempt is one identity's persisted token bucket.
type attempt struct {
	Tokens float64 `json:"tokens"`
	Last   int64   `json:"last"` // unix nanoseconds of the last refill
}

// takeAttempt spends one of identity's attempts inside tx, so the spend
// is as durable as the file and survives a restart. It reports when to
// try again if none is left.
func (s *Store) takeAttempt(tx *bolt.Tx, identity string) (time.Duration, error) {
	b := tx.Bucket(bAttempts)
	k := []byte("pairing:" + identity)
	now := s.now().UnixNano()
	a := attempt{Tokens: s.burst, Last: now}
	if v := b.Get(k); v != nil {
		if json.Unmarshal(v, &a) != nil {
			a = attempt{Tokens: 0, Last: now} // unreadable: fail closed
		}
	} else if b.Stats().KeyN >= MaxAttemptKeys && !s.sweepAttempts(b, now) {
		return time.Minute, nil
	}
	if el := now - a.Last; el > 0 {
		a.Tokens = min(s.burst, a.Tokens+float64(el)/1e9*s.rate)
		a.Last = now
	}
	a.Tokens = min(a.Tokens, s.burst)
	retry := time.Duration(0)
	if a.Tokens >= 1 {
		a.Tokens--
	} else {
		retry = max(time.Duration((1-a.Tokens)/s.rate*1e9), time.Second)
	}
	v, _ := json.Marshal(a)
	return retry, b.Put(k, v)
}

// sweepAttempts drops buckets that have refilled (they hold nothing a
// fresh bucket would not) and reports whether there is room again.
func (s *Store) sweepAttempts(b *bolt.Bucket, now int64) bool {
	var full [][]byte
	n := 0
	_ = b.ForEach(func(k, v []byte) error {
		n++
		var a attempt
		if json.Unmarshal(v, &a) == nil && a.Tokens+float64(now-a.Last)/1e9*s.rate >= s.burst {
			full = append(full, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range full {
		_ = b.Delete(k)
	}
	return n-len(full) < MaxAttemptKeys
}

// recordTx records e inside tx, before tx commits: on the Recorder, or,
// without one, in the outbox for the gateway. A failed record fails tx
// (wrapping ErrNotRecorded), so the change it was for never commits.
// held, if set, is put in a held bucket until the record is made.
func (s *Store) recordTx(ctx context.Context, tx *bolt.Tx, e Event, held *heldGrant) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if s.rec != nil {
		if err := s.rec.RecordAuth(ctx, e); err != nil {
			return fmt.Errorf("%w: %w", ErrNotRecorded, err)
		}
		if held != nil {
			return tx.Bucket(held.active).Put(held.Key, held.value)
		}
		return nil
	}
	e.Queued = e.Time
	ob := tx.Bucket(bOutbox)
	seq, err := ob.NextSequence()
	if err != nil {
		return err
	}
	v, err := json.Marshal(queued{Event: e, Held: held})
	if err != nil {
		return err
	}
	if held != nil {
		if err := tx.Bucket(held.heldBucket()).Put(held.Key, held.value); err != nil {
			return err
		}
	}
	return ob.Put(seqKey(seq), v)
}

// heldGrant is a grant that takes effect with its record.
type heldGrant struct {
	Bucket string `json:"bucket"` // the active bucket: bindings or invites
	Key    []byte `json:"key"`
	active []byte
	value  []byte
}

func newHeld(active, key, value []byte) *heldGrant {
	return &heldGrant{Bucket: string(active), Key: key, active: active, value: value}
}

func (h *heldGrant) heldBucket() []byte {
	if h.Bucket == string(bInvites) {
		return bHeldInvites
	}
	return bHeldBindings
}

// queued is one outbox entry.
type queued struct {
	Event Event      `json:"event"`
	Held  *heldGrant `json:"held,omitempty"`
}

func seqKey(n uint64) []byte {
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	return b[:]
}

// recordAfter records a refusal, which changes nothing: best effort
// (the engine records the message decision too).
func (s *Store) recordAfter(ctx context.Context, e Event) {
	if s.rec == nil {
		_ = s.update(ctx, func(tx *bolt.Tx) error { return s.recordTx(ctx, tx, e, nil) })
		return
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	_ = s.rec.RecordAuth(ctx, e)
}

// drain records what the CLI queued, oldest first, each in its own
// transaction: record, then release its held grant and drop the entry.
// It stops at the first record that fails; the rest wait.
func (s *Store) drain(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drainLocked(ctx)
}

// maybeDrainLocked drains when the file changed since the bindings were
// read (the CLI may have queued events), or, after a drain that failed,
// at most once a second. It reports whether it changed the file.
func (s *Store) maybeDrainLocked(ctx context.Context, stamp fileStamp) bool {
	if s.rec == nil || (stamp == s.stamp && !(s.undrained && s.now().Sub(s.drainedAt) >= time.Second)) {
		return false
	}
	empty := true
	if err := s.view(ctx, func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bOutbox).Cursor().First()
		empty = k == nil
		return nil
	}); err != nil || empty {
		return false
	}
	return s.drainLocked(ctx)
}

// drainLocked reports whether it changed the file.
func (s *Store) drainLocked(ctx context.Context) bool {
	changed := false
	s.undrained = false
	for {
		done := true
		err := s.update(ctx, func(tx *bolt.Tx) error {
			ob := tx.Bucket(bOutbox)
			k, v := ob.Cursor().First()
			if k == nil {
				return nil
			}
			done = false
			var q queued
			if err := json.Unmarshal(v, &q); err != nil {
				return ob.Delete(k) // unreadable: its grant stays held
			}
			if err := s.rec.RecordAuth(ctx, q.Event); err != nil {
				return fmt.Errorf("%w: %w", ErrNotRecorded, err)
			}
			if h := q.Held; h != nil {
				active := bBindings
				if h.Bucket == string(bInvites) {
					active = bInvites
				}
				hb := tx.Bucket((&heldGrant{Bucket: h.Bucket}).heldBucket())
				if hv := hb.Get(h.Key); hv != nil {
					if err := tx.Bucket(active).Put(h.Key, append([]byte(nil), hv...)); err != nil {
						return err
					}
					if err := hb.Delete(h.Key); err != nil {
						return err
					}
				}
			}
			return ob.Delete(k)
		})
		if err != nil {
			s.undrained, s.drainedAt = true, s.now()
			return changed
		}
		if done {
			return changed
		}
		changed = true
	}
}

// RequestCode returns a pairing code for identity on connector: the
// identity's unexpired request if it has one, else a new one valid for
// CodeTTL. Requests are rate-limited per identity.
func (s *Store) RequestCode(ctx context.Context, connector, identity, displayName string) (Pending, error) {
	if connector == "" || identity == "" {
		return Pending{}, fmt.Errorf("%w: connector and identity are required", ErrInvalid)
	}
	now := s.now()
	var p Pending
	var retry time.Duration
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		if retry, err = s.takeAttempt(tx, identity); err != nil || retry > 0 {
			return err // commit the spend, grant nothing
		}
		b := tx.Bucket(bPending)
		n := 0
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var q Pending
			if json.Unmarshal(v, &q) != nil || !now.Before(q.Expires) {
				if err := c.Delete(); err != nil {
					return err
				}
				continue
			}
			if q.Connector == connector && q.Identity == identity {
				p = q
				return s.recordTx(ctx, tx, Event{Kind: KindPairRequest, Connector: connector, Identity: identity, Actor: identity, OK: true}, nil)
			}
			n++
		}
		if n >= MaxPending {
			return ErrTooManyPending
		}
		code, err := newCode()
		if err != nil {
			return err
		}
		p = Pending{Code: code, Connector: connector, Identity: identity,
			DisplayName: clip(displayName, 64), Created: now, Expires: now.Add(CodeTTL)}
		if err := s.recordTx(ctx, tx, Event{Kind: KindPairRequest, Connector: connector, Identity: identity, Actor: identity, OK: true}, nil); err != nil {
			return err
		}
		v, _ := json.Marshal(p)
		p.New = true
		return b.Put([]byte(code), v)
	})
	if err == nil && retry > 0 {
		err = &RateLimitError{RetryAfter: retry}
	}
	if err != nil {
		s.refused(ctx, Event{Kind: KindPairRequest, Connector: connector, Identity: identity, Actor: identity}, err)
		return Pending{}, err
	}
	return p, nil
}

// refused records a refusal after the fact (a refusal grants nothing), and
// nothing when the refusal is that the record itself failed.
func (s *Store) refused(ctx context.Context, e Event, err error) {
	if errors.Is(err, ErrNotRecorded) {
		return
	}
	e.OK, e.Reason = false, reason(err)
	s.recordAfter(ctx, e)
}

// List returns the unexpired pairing requests, oldest first.
func (s *Store) List(ctx context.Context) ([]Pending, error) {
	now := s.now()
	var out []Pending
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bPending).ForEach(func(_, v []byte) error {
			var p Pending
			if json.Unmarshal(v, &p) == nil && now.Before(p.Expires) {
				out = append(out, p)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, err
}

// NormalizeCode upper-cases a code and drops spaces and dashes the owner
// may have typed.
func NormalizeCode(code string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, strings.ToUpper(strings.TrimSpace(code)))
}

// Approve binds the requester of code to role (and workspace, if given) and
// removes the request. The binding takes effect with its record: at once
// on a store with a Recorder, when the gateway records it otherwise.
func (s *Store) Approve(ctx context.Context, code, role, workspace string) (Pending, error) {
	return s.approve(ctx, s.actor, "", code, role, workspace)
}

// ApproveBy is Approve done by actor (an owner's platform identity, when
// the owner answers in chat) for a request on connector only: a code of
// another connector's request is ErrNoSuchCode, and stays pending.
func (s *Store) ApproveBy(ctx context.Context, actor, connector, code, role, workspace string) (Pending, error) {
	if actor == "" || connector == "" {
		return Pending{}, fmt.Errorf("%w: actor and connector are required", ErrInvalid)
	}
	return s.approve(ctx, actor, connector, code, role, workspace)
}

func (s *Store) approve(ctx context.Context, actor, connector, code, role, workspace string) (Pending, error) {
	if err := validName("role", role, false); err != nil {
		return Pending{}, err
	}
	if err := validName("workspace", workspace, true); err != nil {
		return Pending{}, err
	}
	p, err := s.take(ctx, connector, code, func(tx *bolt.Tx, p Pending) error {
		k := bindingKey(p.Connector, p.Identity)
		e := Event{Kind: KindPairApprove, Connector: p.Connector, Identity: p.Identity, Actor: actor,
			Role: role, Workspace: workspace, OK: true}
		if v := tx.Bucket(bBindings).Get(k); v != nil {
			var b engine.Binding
			_ = json.Unmarshal(v, &b)
			e.Previous = b.Role
		}
		v, _ := json.Marshal(engine.Binding{Role: role, Workspace: workspace, Source: "pairing"})
		return s.recordTx(ctx, tx, e, newHeld(bBindings, k, v))
	})
	if err != nil {
		s.refused(ctx, Event{Kind: KindPairApprove, Connector: orConnector(p.Connector, connector), Identity: p.Identity, Actor: actor, Role: role, Workspace: workspace}, err)
	}
	return p, err
}

// Deny removes the request with code without binding anyone. It takes
// effect at once; from the CLI its record is queued with it.
func (s *Store) Deny(ctx context.Context, code string) (Pending, error) {
	return s.deny(ctx, s.actor, "", code)
}

// DenyBy is Deny done by actor for a request on connector only (see
// ApproveBy).
func (s *Store) DenyBy(ctx context.Context, actor, connector, code string) (Pending, error) {
	if actor == "" || connector == "" {
		return Pending{}, fmt.Errorf("%w: actor and connector are required", ErrInvalid)
	}
	return s.deny(ctx, actor, connector, code)
}

func (s *Store) deny(ctx context.Context, actor, connector, code string) (Pending, error) {
	p, err := s.take(ctx, connector, code, func(tx *bolt.Tx, p Pending) error {
		return s.recordTx(ctx, tx, Event{Kind: KindPairDeny, Connector: p.Connector, Identity: p.Identity, Actor: actor, OK: true}, nil)
	})
	if err != nil {
		s.refused(ctx, Event{Kind: KindPairDeny, Connector: orConnector(p.Connector, connector), Identity: p.Identity, Actor: actor}, err)
	}
	return p, err
}

func orConnector(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// take removes the unexpired request with code (on connector, unless
// connector is empty) and runs then in the same transaction.
func (s *Store) take(ctx context.Context, connector, code string, then func(*bolt.Tx, Pending) error) (Pending, error) {
	code = NormalizeCode(code)
	var p Pending
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bPending)
		v := b.Get([]byte(code))
		if v == nil || json.Unmarshal(v, &p) != nil || !s.now().Before(p.Expires) {
			return fmt.Errorf("%w: %q", ErrNoSuchCode, code)
		}
		if connector != "" && p.Connector != connector {
			p = Pending{} // another connector's request: not its owner's to see
			return fmt.Errorf("%w: %q", ErrNoSuchCode, code)
		}
		if err := b.Delete([]byte(code)); err != nil {
			return err
		}
		return then(tx, p)
	})
	return p, err
}

// Invite is a single-use invitation, stored by the hash of its token.
type Invite struct {
	Role      string    `json:"role"`
	Workspace string    `json:"workspace,omitempty"`
	Connector string    `json:"connector,omitempty"` // "" = any connector
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	// Held: created from the CLI, not yet recorded by the gateway, so not
	// yet redeemable (listing only).
	Held bool `json:"-"`
}

// CreateInvite stores a new invite and returns its token, shown once.
func (s *Store) CreateInvite(ctx context.Context, inv Invite, ttl time.Duration) (string, error) {
	if err := validName("role", inv.Role, false); err != nil {
		return "", err
	}
	if err := validName("workspace", inv.Workspace, true); err != nil {
		return "", err
	}
	if ttl <= 0 || ttl > 90*24*time.Hour {
		return "", fmt.Errorf("%w: expiry %s must be between 1s and 90 days", ErrInvalid, ttl)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := "pi_" + base64.RawURLEncoding.EncodeToString(raw)
	inv.Created = s.now()
	inv.Expires = inv.Created.Add(ttl)
	v, _ := json.Marshal(inv)
	e := Event{Kind: KindInviteCreate, Connector: inv.Connector, Actor: s.actor, Role: inv.Role, Workspace: inv.Workspace, OK: true}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		return s.recordTx(ctx, tx, e, newHeld(bInvites, tokenKey(token), v))
	})
	if err != nil {
		s.refused(ctx, e, err)
		return "", err
	}
	return token, nil
}

// Invites lists unexpired invites by the first characters of their hash,
// held ones included (marked).
func (s *Store) Invites(ctx context.Context) (map[string]Invite, error) {
	out := map[string]Invite{}
	now := s.now()
	err := s.view(ctx, func(tx *bolt.Tx) error {
		for _, bucket := range [][]byte{bInvites, bHeldInvites} {
			_ = tx.Bucket(bucket).ForEach(func(k, v []byte) error {
				var inv Invite
				if json.Unmarshal(v, &inv) == nil && now.Before(inv.Expires) {
					inv.Held = bytes.Equal(bucket, bHeldInvites)
					out[string(k)[:12]] = inv
				}
				return nil
			})
		}
		return nil
	})
	return out, err
}

// RevokeInvite deletes the unused invite whose hash starts with prefix
// (as Invites lists it: at least 12 characters), held or not. Like a
// binding's revocation it takes effect at once; without a Recorder its
// record follows through the outbox.
func (s *Store) RevokeInvite(ctx context.Context, prefix string) (Invite, error) {
	if len(prefix) < 12 || strings.Trim(prefix, "0123456789abcdef") != "" {
		return Invite{}, fmt.Errorf("%w: %q is not an invite hash (12 or more hex characters, as invite list shows)", ErrInvalid, prefix)
	}
	var inv Invite
	err := s.update(ctx, func(tx *bolt.Tx) error {
		type hit struct{ bucket, key []byte }
		var hits []hit
		for _, bucket := range [][]byte{bInvites, bHeldInvites} {
			c := tx.Bucket(bucket).Cursor()
			for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
				if json.Unmarshal(v, &inv) == nil {
					hits = append(hits, hit{bucket, append([]byte(nil), k...)})
				}
			}
		}
		switch {
		case len(hits) == 0:
			return fmt.Errorf("%w: no unused invite with hash %s", ErrInvalidToken, prefix)
		case len(hits) > 1:
			return fmt.Errorf("%w: hash %s names %d invites; give more of it", ErrInvalid, prefix, len(hits))
		}
		e := Event{Kind: KindInviteRevoke, Connector: inv.Connector, Actor: s.actor, Role: inv.Role, Workspace: inv.Workspace, OK: true}
		if err := s.recordTx(ctx, tx, e, nil); err != nil {
			return err
		}
		return tx.Bucket(hits[0].bucket).Delete(hits[0].key)
	})
	return inv, err
}

// RedeemInvite consumes the invite with token and binds identity on
// connector to its role and workspace. Attempts are rate-limited per
// identity and recorded, so guessing tokens is slow and visible.
func (s *Store) RedeemInvite(ctx context.Context, connector, identity, token string) (*engine.Binding, error) {
	if _, err := s.Binding(ctx, connector, identity); err != nil { // releases invites the CLI queued
		return nil, err
	}
	var bind engine.Binding
	var retry time.Duration
	var invalid bool
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		if retry, err = s.takeAttempt(tx, identity); err != nil || retry > 0 {
			return err // commit the spend, grant nothing
		}
		b := tx.Bucket(bInvites)
		k := tokenKey(strings.TrimSpace(token))
		v := b.Get(k)
		var inv Invite
		if v == nil || json.Unmarshal(v, &inv) != nil || !s.now().Before(inv.Expires) ||
			(inv.Connector != "" && inv.Connector != connector) {
			invalid = true
			return nil // commit the spend: a wrong guess costs an attempt
		}
		bind = engine.Binding{Role: inv.Role, Workspace: inv.Workspace, Source: "invite"}
		e := Event{Kind: KindInviteRedeem, Connector: connector, Identity: identity, Actor: identity,
			Role: inv.Role, Workspace: inv.Workspace, OK: true}
		if pv := tx.Bucket(bBindings).Get(bindingKey(connector, identity)); pv != nil {
			var pb engine.Binding
			_ = json.Unmarshal(pv, &pb)
			e.Previous = pb.Role
		}
		if err := s.recordTx(ctx, tx, e, nil); err != nil {
			return err
		}
		if err := b.Delete(k); err != nil {
			return err
		}
		bv, _ := json.Marshal(bind)
		return tx.Bucket(bBindings).Put(bindingKey(connector, identity), bv)
	})
	switch {
	case err == nil && retry > 0:
		err = &RateLimitError{RetryAfter: retry}
	case err == nil && invalid:
		err = ErrInvalidToken
	}
	if err != nil {
		s.refused(ctx, Event{Kind: KindInviteRedeem, Connector: connector, Identity: identity, Actor: identity}, err)
		return nil, err
	}
	return &bind, nil
}

func tokenKey(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return []byte(hex.EncodeToString(h[:]))
}

func newCode() (string, error) {
	// Rejection sampling: bytes past the last whole multiple of the
	// alphabet size are drawn again, so every letter is equally likely.
	limit := 256 - 256%len(codeAlphabet)
	out := make([]byte, 0, codeLen)
	var b [16]byte
	for len(out) < codeLen {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		for _, c := range b {
			if int(c) < limit && len(out) < codeLen {
				out = append(out, codeAlphabet[int(c)%len(codeAlphabet)])
			}
		}
	}
	return string(out), nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func validName(field, v string, optional bool) error {
	if v == "" && optional {
		return nil
	}
	if !nameRE.MatchString(v) {
		return fmt.Errorf("%w: %s %q must be 1-64 of a-z, 0-9, _ and -", ErrInvalid, field, v)
	}
	return nil
}

func reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRateLimited):
		return ReasonRateLimited
	case errors.Is(err, ErrInvalidToken):
		return ReasonInvalidToken
	case errors.Is(err, ErrNoSuchCode):
		return ReasonNoSuchCode
	case errors.Is(err, ErrTooManyPending):
		return ReasonTooManyPending
	case errors.Is(err, ErrNotRecorded):
		return ReasonNotRecorded
	default:
		return ReasonStoreError
	}
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		r = r[:n]
	}
	return string(r)
}

// DefaultFile is the store's file name inside the gateway's state_dir.
const DefaultFile = "store.db"

// PathIn is the store file of a state directory.
func PathIn(stateDir string) string { return filepath.Join(stateDir, DefaultFile) }
