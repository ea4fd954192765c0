package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// CurrentFile is the name of the file being appended to inside the log
// folder. Rotated files are named audit-<first seq, 20 digits>.jsonl.
const CurrentFile = "audit.jsonl"

// Genesis is the prev of the very first record.
var Genesis = strings.Repeat("0", 64)

// ErrUnavailable wraps every failure to make a record durable. Callers
// refuse the action the record was for.
var ErrUnavailable = errors.New("audit log unavailable")

// hashField separates a line's body from its hash.
var hashField = []byte(`,"hash":"`)

// Options configure a Log.
type Options struct {
	// MaxBytes rotates the current file once it is larger (default 64 MiB).
	MaxBytes int64
	// NoSync skips fsync. Only for benchmarks that measure the rest.
	NoSync bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Log is an append-only, hash-chained, fsynced audit log in one folder.
// It is safe for concurrent use; concurrent appends share fsyncs (group
// commit).
type Log struct {
	dir  string
	opts Options

	mu      sync.Mutex // guards the fields below and writes
	f       *os.File
	size    int64
	seq     uint64 // last written
	prev    string // hash of the last written record
	closed  bool
	scratch bytes.Buffer

	syncMu sync.Mutex // one fsync at a time
	synced uint64     // last seq known durable (guarded by syncMu)
}

// Open opens (creating if needed) the log in dir and continues its chain.
// A partial last line, left by a crash in the middle of a write that was
// never acknowledged, is cut off.
func Open(dir string, opts Options) (*Log, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l := &Log{dir: dir, opts: opts, prev: Genesis}
	if err := l.resume(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, CurrentFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.f, l.size, l.synced = f, st.Size(), l.seq
	return l, nil
}

// resume finds the last complete record of the newest file holding one.
func (l *Log) resume() error {
	files, err := Files(l.dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for i := len(files) - 1; i >= 0; i-- {
		last, err := lastLine(files[i])
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnavailable, files[i], err)
		}
		if last == nil {
			continue
		}
		var r struct {
			Seq uint64 `json:"seq"`
		}
		body, hash, ok := split(last)
		if !ok || json.Unmarshal(body, &r) != nil {
			return fmt.Errorf("%w: %s: last line is not an audit record; run `parachute audit verify`", ErrUnavailable, files[i])
		}
		l.seq, l.prev = r.Seq, hash
		return nil
	}
	return nil
}

// lastLine returns the last complete line of path, cutting off a partial
// one (no trailing newline) if the file ends with it.
func lastLine(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if n := len(b); n > 0 && b[n-1] != '\n' {
		cut := bytes.LastIndexByte(b, '\n') + 1
		if err := os.Truncate(path, int64(cut)); err != nil {
			return nil, err
		}
		b = b[:cut]
	}
	b = bytes.TrimRight(b, "\n")
	if len(b) == 0 {
		return nil, nil
	}
	return b[bytes.LastIndexByte(b, '\n')+1:], nil
}

// split separates a line into its body (with closing brace) and hash.
func split(line []byte) (body []byte, hash string, ok bool) {
	i := bytes.LastIndex(line, hashField)
	if i < 0 || !bytes.HasSuffix(line, []byte(`"}`)) {
		return nil, "", false
	}
	hash = string(line[i+len(hashField) : len(line)-2])
	body = make([]byte, 0, i+1)
	body = append(append(body, line[:i]...), '}')
	return body, hash, true
}

func digest(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Append assigns the record its sequence number, time and chain link, writes
// it and returns once it is durable. On any failure it returns an error
// wrapping ErrUnavailable and the chain is left as it was.
func (l *Log) Append(ctx context.Context, r Record) (Record, error) {
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return r, fmt.Errorf("%w: log closed", ErrUnavailable)
	}
	if l.size >= l.opts.MaxBytes {
		if err := l.rotate(); err != nil {
			l.mu.Unlock()
			return r, err
		}
	}
	r.Seq, r.Prev = l.seq+1, l.prev
	if r.Time.IsZero() {
		r.Time = l.opts.Now().UTC()
	}
	line, hash, err := l.encode(&r)
	if err != nil {
		l.mu.Unlock()
		return r, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if n, err := l.f.Write(line); err != nil {
		// Take back a partial write so the next line starts clean.
		if n > 0 {
			_ = l.f.Truncate(l.size)
		}
		l.mu.Unlock()
		return r, fmt.Errorf("%w: writing: %w", ErrUnavailable, err)
	}
	l.size += int64(len(line))
	l.seq, l.prev = r.Seq, hash
	f, seq := l.f, r.Seq
	l.mu.Unlock()
	if err := l.syncTo(f, seq); err != nil {
		return r, err
	}
	return r, nil
}

// encode renders r as a line and returns its hash.
func (l *Log) encode(r *Record) ([]byte, string, error) {
	l.scratch.Reset()
	enc := json.NewEncoder(&l.scratch)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, "", err
	}
	body := bytes.TrimRight(l.scratch.Bytes(), "\n")
	hash := digest(body)
	line := make([]byte, 0, len(body)+len(hashField)+len(hash)+3)
	line = append(line, body[:len(body)-1]...)
	line = append(line, hashField...)
	line = append(line, hash...)
	line = append(line, '"', '}', '\n')
	return line, hash, nil
}

// syncTo makes every record up to seq durable. Appenders that arrive while
// an fsync runs are covered by the next one: one fsync serves them all.
func (l *Log) syncTo(f *os.File, seq uint64) error {
	if l.opts.NoSync {
		return nil
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced >= seq {
		return nil
	}
	l.mu.Lock()
	upTo := l.seq
	if l.f != f { // rotated since: rotate synced the old file
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: fsync: %w", ErrUnavailable, err)
	}
	l.synced = upTo
	return nil
}

// rotate renames the current file after its first record and opens a new
// one. The chain continues: the next record's prev is the last hash.
// Called with l.mu held.
func (l *Log) rotate() error {
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("%w: fsync before rotation: %w", ErrUnavailable, err)
	}
	cur := filepath.Join(l.dir, CurrentFile)
	first, err := firstSeq(cur)
	if err != nil {
		return fmt.Errorf("%w: rotation: %w", ErrUnavailable, err)
	}
	next, err := os.OpenFile(cur+".new", os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("%w: rotation: %w", ErrUnavailable, err)
	}
	if err := os.Rename(cur, filepath.Join(l.dir, fmt.Sprintf("audit-%020d.jsonl", first))); err != nil {
		next.Close()
		return fmt.Errorf("%w: rotation: %w", ErrUnavailable, err)
	}
	if err := os.Rename(cur+".new", cur); err != nil {
		next.Close()
		return fmt.Errorf("%w: rotation: %w", ErrUnavailable, err)
	}
	if d, err := os.Open(l.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	l.f.Close()
	l.f, l.size = next, 0
	return nil
}

func firstSeq(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&r); err != nil {
		return 0, err
	}
	return r.Seq, nil
}

// Head returns the sequence number and hash of the last record written.
// Publishing it elsewhere anchors the chain against truncation.
func (l *Log) Head() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.prev
}

// Close syncs and closes the log. Later appends fail.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Files lists the log's files oldest first: rotated files by their first
// sequence number, then the current file.
func Files(dir string) ([]string, error) {
	rotated, err := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	if err != nil {
		return nil, err
	}
	// The 20-digit zero-padded names sort numerically.
	sort.Strings(rotated)
	cur := filepath.Join(dir, CurrentFile)
	if _, err := os.Stat(cur); err == nil {
		rotated = append(rotated, cur)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return rotated, nil
}
