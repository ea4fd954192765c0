// Package sessions owns agent sessions: who a session belongs to, its
// conversation history, and the sandbox it runs in while it is warm.
//
// A session belongs to exactly one identity (or, when policy says a group
// chat shares one, to that chat). Its key is derived by the router from the
// verified platform identity, never from anything a user can type, so
// nobody else's message can reach it. "/new" ends it; idleness expires it.
// Sessions and their history persist in an embedded bbolt file: nothing to
// run, nothing lost on restart.
package sessions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors of the store; check with errors.Is.
var (
	// ErrStore: the store file cannot be read or written.
	ErrStore = errors.New("session store unavailable")
	// ErrNotFound: no such session.
	ErrNotFound = errors.New("no such session")
	// ErrNotOwner: the session belongs to somebody else.
	ErrNotOwner = errors.New("session belongs to another identity")
)

// Session is one conversation with the agent.
type Session struct {
	ID         string    `json:"id"`
	Key        string    `json:"key"`   // the router's session key
	Owner      string    `json:"owner"` // identity that created it
	Connector  string    `json:"connector"`
	ChatID     string    `json:"chat_id"`
	Workspace  string    `json:"workspace"` // vault-relative
	Created    time.Time `json:"created"`
	LastActive time.Time `json:"last_active"`
	Ended      time.Time `json:"ended,omitzero"`
	Turns      int       `json:"turns"`
}

// Entry is one line of conversation history.
type Entry struct {
	Role    string    `json:"role"` // "user" or "assistant"
	Content string    `json:"content"`
	Time    time.Time `json:"time"`
	TurnID  string    `json:"turn_id,omitempty"`
}

var (
	bSessions = []byte("sessions") // id -> Session
	bKeys     = []byte("keys")     // key -> id of the current session
	bHistory  = []byte("history")  // id -> []Entry
)

// Store persists sessions and history in one bbolt file.
type Store struct {
	db         *bolt.DB
	maxHistory int
}

// StoreOptions configure a Store.
type StoreOptions struct {
	Path string
	// MaxHistory bounds the entries kept per session (default 40); older
	// ones are dropped first.
	MaxHistory int
}

// OpenStore opens (creating if needed) the store file, readable by its
// owner only.
func OpenStore(opts StoreOptions) (*Store, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("%w: no path given", ErrStore)
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrStore, opts.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bSessions, bKeys, bHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	}
	if opts.MaxHistory <= 0 {
		opts.MaxHistory = 40
	}
	return &Store{db: db, maxHistory: opts.MaxHistory}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.Update(fn); err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotOwner) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrStore, err)
	}
	return nil
}

func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.View(fn); err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotOwner) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrStore, err)
	}
	return nil
}

func getSession(tx *bolt.Tx, id string) (Session, error) {
	v := tx.Bucket(bSessions).Get([]byte(id))
	if v == nil {
		return Session{}, ErrNotFound
	}
	var s Session
	if err := json.Unmarshal(v, &s); err != nil {
		return Session{}, fmt.Errorf("session %s: %v", id, err)
	}
	return s, nil
}

func putSession(tx *bolt.Tx, s Session) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return tx.Bucket(bSessions).Put([]byte(s.ID), b)
}

// Acquire returns the current session of key for owner, creating one when
// there is none or the current one has been idle longer than ttl. A
// session of key owned by another identity is never returned: that is
// ErrNotOwner (keys carry the identity, so this only happens if a caller
// builds keys wrongly, and then it fails closed). created reports whether a
// new session was made.
func (s *Store) Acquire(ctx context.Context, key string, tmpl Session, ttl time.Duration, now time.Time) (sess Session, created bool, err error) {
	// The common case, a live session of this owner, needs no write (a
	// bbolt write transaction costs an fsync).
	live := func(cur Session) bool {
		return cur.Owner == tmpl.Owner && cur.Ended.IsZero() && (ttl <= 0 || now.Sub(cur.LastActive) < ttl)
	}
	err = s.view(ctx, func(tx *bolt.Tx) error {
		if id := tx.Bucket(bKeys).Get([]byte(key)); id != nil {
			if cur, err := getSession(tx, string(id)); err == nil && live(cur) {
				sess = cur
			}
		}
		return nil
	})
	if err != nil || sess.ID != "" {
		return sess, false, err
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		if id := tx.Bucket(bKeys).Get([]byte(key)); id != nil {
			cur, err := getSession(tx, string(id))
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if err == nil && cur.Owner != tmpl.Owner {
				return ErrNotOwner
			}
			if err == nil && live(cur) {
				sess = cur
				return nil
			}
			if err == nil && cur.Ended.IsZero() {
				cur.Ended = now
				if err := putSession(tx, cur); err != nil {
					return err
				}
			}
		}
		sess = tmpl
		sess.ID, sess.Key = newID(), key
		sess.Created, sess.LastActive = now, now
		sess.Ended, sess.Turns = time.Time{}, 0
		created = true
		if err := putSession(tx, sess); err != nil {
			return err
		}
		return tx.Bucket(bKeys).Put([]byte(key), []byte(sess.ID))
	})
	return sess, created, err
}

// Get returns the session id if owner owns it.
func (s *Store) Get(ctx context.Context, id, owner string) (Session, error) {
	var sess Session
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		sess, err = getSession(tx, id)
		if err == nil && sess.Owner != owner {
			return ErrNotOwner
		}
		return err
	})
	return sess, err
}

// End ends the current session of key, if any, and returns its ID ("" if
// there was none).
func (s *Store) End(ctx context.Context, key, owner string, now time.Time) (string, error) {
	var ended string
	err := s.update(ctx, func(tx *bolt.Tx) error {
		id := tx.Bucket(bKeys).Get([]byte(key))
		if id == nil {
			return nil
		}
		cur, err := getSession(tx, string(id))
		if errors.Is(err, ErrNotFound) {
			return tx.Bucket(bKeys).Delete([]byte(key))
		}
		if err != nil {
			return err
		}
		if cur.Owner != owner {
			return ErrNotOwner
		}
		if cur.Ended.IsZero() {
			cur.Ended = now
			ended = cur.ID
			if err := putSession(tx, cur); err != nil {
				return err
			}
		}
		return tx.Bucket(bKeys).Delete([]byte(key))
	})
	return ended, err
}

// History returns the history of session id, oldest first.
func (s *Store) History(ctx context.Context, id string) ([]Entry, error) {
	var out []Entry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bHistory).Get([]byte(id))
		if v == nil {
			return nil
		}
		return json.Unmarshal(v, &out)
	})
	return out, err
}

// Record appends entries to the history of session id (keeping the newest
// MaxHistory) and marks it active at now.
func (s *Store) Record(ctx context.Context, id string, now time.Time, entries ...Entry) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		sess, err := getSession(tx, id)
		if err != nil {
			return err
		}
		var hist []Entry
		if v := tx.Bucket(bHistory).Get([]byte(id)); v != nil {
			if err := json.Unmarshal(v, &hist); err != nil {
				return fmt.Errorf("history of %s: %v", id, err)
			}
		}
		hist = append(hist, entries...)
		if len(hist) > s.maxHistory {
			hist = hist[len(hist)-s.maxHistory:]
		}
		b, err := json.Marshal(hist)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bHistory).Put([]byte(id), b); err != nil {
			return err
		}
		sess.LastActive = now
		sess.Turns++
		return putSession(tx, sess)
	})
}

// List returns the sessions owned by owner ("" for all), newest first.
func (s *Store) List(ctx context.Context, owner string) ([]Session, error) {
	var out []Session
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bSessions).ForEach(func(_, v []byte) error {
			var sess Session
			if err := json.Unmarshal(v, &sess); err != nil {
				return err
			}
			if owner == "" || sess.Owner == owner {
				out = append(out, sess)
			}
			return nil
		})
	})
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Created.After(out[j-1].Created); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, err
}

// Expire ends every session idle longer than ttl and deletes the history
// of sessions that ended more than keep ago. It returns how many sessions
// it ended.
func (s *Store) Expire(ctx context.Context, ttl, keep time.Duration, now time.Time) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var drop []string
		var ended []Session
		err := tx.Bucket(bSessions).ForEach(func(k, v []byte) error {
			var sess Session
			if err := json.Unmarshal(v, &sess); err != nil {
				return err
			}
			switch {
			case sess.Ended.IsZero() && ttl > 0 && now.Sub(sess.LastActive) >= ttl:
				sess.Ended = now
				ended = append(ended, sess)
			case !sess.Ended.IsZero() && keep > 0 && now.Sub(sess.Ended) >= keep:
				drop = append(drop, sess.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, sess := range ended {
			if err := putSession(tx, sess); err != nil {
				return err
			}
			if id := tx.Bucket(bKeys).Get([]byte(sess.Key)); string(id) == sess.ID {
				if err := tx.Bucket(bKeys).Delete([]byte(sess.Key)); err != nil {
					return err
				}
			}
		}
		for _, id := range drop {
			if err := tx.Bucket(bSessions).Delete([]byte(id)); err != nil {
				return err
			}
			if err := tx.Bucket(bHistory).Delete([]byte(id)); err != nil {
				return err
			}
		}
		n = len(ended)
		return nil
	})
	return n, err
}
