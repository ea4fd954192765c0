package connectors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SeenStore is the router's duplicate filter made durable: a message key
// (connector and platform message ID: Telegram chat:message_id, Discord
// message snowflake, Matrix event ID) is written to a bbolt file, fsynced,
// before the message is handled, so an update redelivered after a crash
// or kill -9 is not run twice. The in-memory Dedup in front keeps lookups
// off the disk; on open, keys still within the window are loaded back.
type SeenStore struct {
	mem *Dedup
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	db *bolt.DB
	n  int // keys in the file (approximately: counted, not read)
}

var bSeen = []byte("seen")

// OpenSeenStore opens (creating 0600) the file at path, drops keys older
// than ttl and loads the rest (at most max).
func OpenSeenStore(path string, max int, ttl time.Duration) (*SeenStore, error) {
	mem := NewDedup(max, ttl)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("connectors: duplicate filter: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("connectors: duplicate filter %s: %w", path, err)
	}
	s := &SeenStore{mem: mem, ttl: mem.ttl, now: time.Now, db: db}
	cutoff := s.now().Add(-s.ttl).UnixNano()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bSeen)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < cutoff {
				if err := c.Delete(); err != nil {
					return err
				}
				continue
			}
			mem.First(string(k))
			s.n++
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("connectors: duplicate filter %s: %w", path, err)
	}
	return s, nil
}

// ErrSeenStore: the duplicate filter could not record a key, so the
// message was not handled (it may be delivered again).
var ErrSeenStore = errors.New("duplicate filter unavailable")

// First records key durably and reports whether this is its first
// sighting. It returns an error (and forgets key) if the key could not be
// written: the caller must not handle the message.
func (s *SeenStore) First(key string) (bool, error) {
	if !s.mem.First(key) {
		return false, nil
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(s.now().UnixNano()))
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSeen)
		if err := b.Put([]byte(key), ts[:]); err != nil {
			return err
		}
		s.n++
		// Bound the file: 10% past the in-memory cap, drop every key the
		// memory has let go of (expired or evicted).
		if s.n > s.mem.max+s.mem.max/10 {
			c := b.Cursor()
			s.n = 0
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				if !s.mem.Seen(string(k)) {
					if err := c.Delete(); err != nil {
						return err
					}
					continue
				}
				s.n++
			}
		}
		return nil
	})
	if err != nil {
		s.mem.Forget(key)
		return false, fmt.Errorf("%w: %w", ErrSeenStore, err)
	}
	return true, nil
}

// Close closes the file.
func (s *SeenStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Close()
}
