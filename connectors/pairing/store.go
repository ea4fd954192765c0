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
// and every pairing request is rate-limited per identity and recorded.
package pairing

import (
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
	"github.com/parachute-gateway/parachute/engine/ratelimit"
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
)

// RateLimitError carries when to try again.
type RateLimitError struct{ RetryAfter time.Duration }

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many attempts; try again in %s", e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(t error) bool { return t == ErrRateLimited }

// Event is one recorded authentication attempt.
type Event struct {
	Time      time.Time
	Kind      string // "pair-request", "invite-redeem", "pair-approve", "pair-deny", "invite-create"
	Connector string
	Identity  string
	OK        bool
	Reason    string // why not, kebab-case: "rate-limited", "invalid-token", …
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
	Path     string             // the bbolt file; its folder is created 0700
	Limiter  *ratelimit.Limiter // attempts; default a new one
	Recorder Recorder           // default: none
	// AttemptsPerHour and AttemptBurst bound pairing requests and invite
	// redemptions per identity (defaults 10 and 5).
	AttemptsPerHour float64
	AttemptBurst    float64
	Now             func() time.Time
}

// Store is the pairing and invite store. Safe for concurrent use.
type Store struct {
	path    string
	limiter *ratelimit.Limiter
	rec     Recorder
	rate    float64 // tokens per second
	burst   float64
	now     func() time.Time

	mu       sync.Mutex
	stamp    fileStamp
	bindings map[string]engine.Binding
}

type fileStamp struct {
	mod  time.Time
	size int64
}

var (
	bBindings = []byte("bindings")
	bPending  = []byte("pending")
	bInvites  = []byte("invites")
)

// Open checks that the store file can be used (creating it if needed) and
// returns the Store.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("%w: no store path given", ErrInvalid)
	}
	s := &Store{
		path:    opts.Path,
		limiter: opts.Limiter,
		rec:     opts.Recorder,
		now:     opts.Now,
		rate:    opts.AttemptsPerHour / 3600,
		burst:   opts.AttemptBurst,
	}
	if s.limiter == nil {
		s.limiter = ratelimit.New(ratelimit.Options{})
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
		for _, b := range [][]byte{bBindings, bPending, bInvites} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

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
}

// Bindings lists every binding, sorted.
func (s *Store) Bindings(ctx context.Context) ([]BoundIdentity, error) {
	var out []BoundIdentity
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bBindings).ForEach(func(k, v []byte) error {
			conn, id, _ := strings.Cut(string(k), "\x00")
			var b engine.Binding
			if err := json.Unmarshal(v, &b); err != nil {
				return err
			}
			out = append(out, BoundIdentity{conn, id, b})
			return nil
		})
	})
	return out, err
}

// Revoke removes the binding of identity on connector.
func (s *Store) Revoke(ctx context.Context, connector, identity string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bBindings).Delete(bindingKey(connector, identity))
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
}

func (s *Store) allow(ctx context.Context, kind, connector, identity string) error {
	ok, retry := s.limiter.Allow("pairing:"+identity, s.rate, s.burst)
	if ok {
		return nil
	}
	s.record(ctx, Event{Kind: kind, Connector: connector, Identity: identity, Reason: "rate-limited"})
	return &RateLimitError{RetryAfter: retry}
}

func (s *Store) record(ctx context.Context, e Event) {
	if s.rec == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	_ = s.rec.RecordAuth(ctx, e) // the engine records the message decision too
}

// RequestCode returns a pairing code for identity on connector: the
// identity's unexpired request if it has one, else a new one valid for
// CodeTTL. Requests are rate-limited per identity.
func (s *Store) RequestCode(ctx context.Context, connector, identity, displayName string) (Pending, error) {
	if connector == "" || identity == "" {
		return Pending{}, fmt.Errorf("%w: connector and identity are required", ErrInvalid)
	}
	if err := s.allow(ctx, "pair-request", connector, identity); err != nil {
		return Pending{}, err
	}
	now := s.now()
	var p Pending
	err := s.update(ctx, func(tx *bolt.Tx) error {
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
				return nil
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
		v, _ := json.Marshal(p)
		return b.Put([]byte(code), v)
	})
	s.record(ctx, Event{Kind: "pair-request", Connector: connector, Identity: identity, OK: err == nil, Reason: reason(err)})
	return p, err
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
// removes the request.
func (s *Store) Approve(ctx context.Context, code, role, workspace string) (Pending, error) {
	if err := validName("role", role, false); err != nil {
		return Pending{}, err
	}
	if err := validName("workspace", workspace, true); err != nil {
		return Pending{}, err
	}
	p, err := s.take(ctx, code, func(tx *bolt.Tx, p Pending) error {
		v, _ := json.Marshal(engine.Binding{Role: role, Workspace: workspace, Source: "pairing"})
		return tx.Bucket(bBindings).Put(bindingKey(p.Connector, p.Identity), v)
	})
	s.record(ctx, Event{Kind: "pair-approve", Connector: p.Connector, Identity: p.Identity, OK: err == nil, Reason: reason(err)})
	return p, err
}

// Deny removes the request with code without binding anyone.
func (s *Store) Deny(ctx context.Context, code string) (Pending, error) {
	p, err := s.take(ctx, code, nil)
	s.record(ctx, Event{Kind: "pair-deny", Connector: p.Connector, Identity: p.Identity, OK: err == nil, Reason: reason(err)})
	return p, err
}

func (s *Store) take(ctx context.Context, code string, then func(*bolt.Tx, Pending) error) (Pending, error) {
	code = NormalizeCode(code)
	var p Pending
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bPending)
		v := b.Get([]byte(code))
		if v == nil || json.Unmarshal(v, &p) != nil || !s.now().Before(p.Expires) {
			return fmt.Errorf("%w: %q", ErrNoSuchCode, code)
		}
		if err := b.Delete([]byte(code)); err != nil {
			return err
		}
		if then != nil {
			return then(tx, p)
		}
		return nil
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
	err := s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bInvites).Put(tokenKey(token), v)
	})
	s.record(ctx, Event{Kind: "invite-create", Connector: inv.Connector, OK: err == nil, Reason: reason(err)})
	if err != nil {
		return "", err
	}
	return token, nil
}

// Invites lists unexpired invites by the first characters of their hash.
func (s *Store) Invites(ctx context.Context) (map[string]Invite, error) {
	out := map[string]Invite{}
	now := s.now()
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bInvites).ForEach(func(k, v []byte) error {
			var inv Invite
			if json.Unmarshal(v, &inv) == nil && now.Before(inv.Expires) {
				out[string(k)[:12]] = inv
			}
			return nil
		})
	})
	return out, err
}

// RedeemInvite consumes the invite with token and binds identity on
// connector to its role and workspace. Attempts are rate-limited per
// identity and recorded, so guessing tokens is slow and visible.
func (s *Store) RedeemInvite(ctx context.Context, connector, identity, token string) (*engine.Binding, error) {
	if err := s.allow(ctx, "invite-redeem", connector, identity); err != nil {
		return nil, err
	}
	var bind engine.Binding
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bInvites)
		k := tokenKey(strings.TrimSpace(token))
		v := b.Get(k)
		var inv Invite
		if v == nil || json.Unmarshal(v, &inv) != nil || !s.now().Before(inv.Expires) ||
			(inv.Connector != "" && inv.Connector != connector) {
			return ErrInvalidToken
		}
		if err := b.Delete(k); err != nil {
			return err
		}
		bind = engine.Binding{Role: inv.Role, Workspace: inv.Workspace, Source: "invite"}
		bv, _ := json.Marshal(bind)
		return tx.Bucket(bBindings).Put(bindingKey(connector, identity), bv)
	})
	s.record(ctx, Event{Kind: "invite-redeem", Connector: connector, Identity: identity, OK: err == nil, Reason: reason(err)})
	if err != nil {
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
	case errors.Is(err, ErrInvalidToken):
		return "invalid-token"
	case errors.Is(err, ErrNoSuchCode):
		return "no-such-code"
	case errors.Is(err, ErrTooManyPending):
		return "too-many-pending"
	default:
		return "store-error"
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
