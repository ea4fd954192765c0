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
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CurrentFile is the name of the file being appended to inside the log
// folder. Rotated files are named audit-<first seq, 20 digits>.jsonl.
const CurrentFile = "audit.jsonl"

// CheckpointFileName is the default name of the file, beside the signing key,
// that holds the newest checkpoint made durable in the log. It lives outside
// the audit folder so that cutting the log below it is seen on the next start
// and by `parachute audit verify`.
const CheckpointFileName = "audit-checkpoint"

// Defaults for Options.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 60 * time.Second
)

// Genesis is the prev of the very first record.
var Genesis = strings.Repeat("0", 64)

// ErrUnavailable wraps every failure to make a record durable. Callers
// refuse the action the record was for.
var ErrUnavailable = errors.New("audit log unavailable")

// ErrTruncated is returned by Open when the log ends before the newest
// checkpoint kept outside it.
var ErrTruncated = errors.New("audit log truncated")

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

	// Signer signs checkpoints (nil: the log is only hash-chained). Its key
	// must live outside the log folder.
	Signer *Signer
	// CheckpointEvery is the most records between two checkpoints
	// (default 1000).
	CheckpointEvery uint64
	// CheckpointInterval is the longest time a record stays unsigned
	// (default 60 s); the same timer retries a failed log. Negative turns
	// the timer off.
	CheckpointInterval time.Duration
	// CheckpointFile keeps the newest durable checkpoint (default
	// audit-checkpoint beside the signer's key).
	CheckpointFile string
	// Logger receives each checkpoint (so an operator can anchor it
	// elsewhere), outages and recoveries (default: discarded).
	Logger *slog.Logger

	// openFile opens the current file (tests inject failing files).
	openFile func(name string) (file, error)
}

// file is what the log needs of the current file.
type file interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Close() error
}

func openOSFile(name string) (file, error) {
	return os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
}

// head is a position in the chain.
type head struct {
	seq    uint64 // last record
	size   int64  // bytes of the current file up to it
	prev   string // its hash
	lastCk uint64 // seq of the newest checkpoint record at or before it
}

// outage is a run of refused appends, reported by a gap record once the log
// can be written again.
type outage struct {
	from, to time.Time
	refused  uint64
	first    string // the first error
	// Set once its gap record is written: refusals after that (a later batch
	// failed while the gap was not yet durable) form the next outage.
	atGap      uint64
	afterFrom  time.Time
	afterFirst string
}

// Log is an append-only, hash-chained, fsynced audit log in one folder.
// It is safe for concurrent use; concurrent appends share fsyncs (group
// commit).
//
// A record, with the gap record that may precede it and the checkpoint that
// may follow it, is written in one write: all of it or none. When a write,
// fsync or rotation fails the log is in an outage: Healthy reports it, every
// append until the next success is refused and counted, and the first
// success writes a gap record first naming the window and the count. Bytes
// whose fsync failed are cut off before anything else is written, so every
// record in the file was acknowledged or is part of the batch being written.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex // guards the fields below and writes
	f       file
	cur     head              // last written
	durable head              // last known durable (in the current file)
	epoch   uint64            // incremented by every cut
	cuts    map[uint64]uint64 // epoch → last seq of it that survived its cut
	repair  bool              // bytes after durable.size are untrusted: cut them first
	ckDue   bool              // a checkpoint goes with the next write
	outage  *outage
	gapSeq  uint64 // seq of a written gap record not yet durable
	refused uint64 // total appends refused
	closed  bool
	scratch bytes.Buffer
	batch   []byte

	syncing bool       // a leader's fsync is under way (syncTo)
	synced  *sync.Cond // on mu: broadcast when an fsync ends
	syncs   uint64     // fsyncs of appended records since Open

	syncMu sync.Mutex // held by the fsyncing leader, a rotation and a cut

	ckMu      sync.Mutex // checkpoint file
	ckSeq     uint64     // seq of the checkpoint record in it
	ckErr     error
	stop      chan struct{}
	stopOnce  sync.Once
	tickerRun sync.WaitGroup
}

// Open opens (creating if needed) the log in dir and continues its chain.
// A partial last line, left by a crash in the middle of a write that was
// never acknowledged, is cut off. With a Signer, Open refuses a log that
// ends before the checkpoint kept in CheckpointFile (ErrTruncated) and signs
// the head it found unless it is already a checkpoint.
func Open(dir string, opts Options) (*Log, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.openFile == nil {
		opts.openFile = openOSFile
	}
	l := &Log{dir: dir, opts: opts, log: opts.Logger, cur: head{prev: Genesis}, stop: make(chan struct{})}
	l.synced = sync.NewCond(&l.mu)
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if s := opts.Signer; s != nil {
		if inside(dir, s.Path) {
			return nil, fmt.Errorf("%w: the signing key %s is inside the audit folder %s; keep it where the log's writers cannot reach (default <state_dir>/audit-key)", ErrKey, s.Path, dir)
		}
		if l.opts.CheckpointFile == "" {
			l.opts.CheckpointFile = filepath.Join(filepath.Dir(s.Path), CheckpointFileName)
		}
		if inside(dir, l.opts.CheckpointFile) {
			return nil, fmt.Errorf("%w: the checkpoint file %s is inside the audit folder %s", ErrUnavailable, l.opts.CheckpointFile, dir)
		}
	}
	kind, err := l.resume()
	if err != nil {
		return nil, err
	}
	if opts.Signer != nil {
		if err := l.checkAnchor(); err != nil {
			return nil, err
		}
		if kind == KindCheckpoint {
			l.cur.lastCk = l.cur.seq
		} else {
			l.ckDue = true
		}
	}
	f, err := opts.openFile(filepath.Join(dir, CurrentFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.f, l.cur.size = f, st.Size()
	l.durable = l.cur
	if l.ckDue {
		// Sign what the last run left (a crash leaves an unsigned tail). A
		// failure here is an outage like any other: the gateway starts, is
		// not ready, and retries on the timer.
		_ = l.Checkpoint(context.Background())
	}
	if opts.CheckpointInterval > 0 {
		l.tickerRun.Add(1)
		go l.tick()
	}
	return l, nil
}

// inside reports whether path is dir or below it.
func inside(dir, path string) bool {
	d, err1 := filepath.Abs(dir)
	p, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// resume finds the last complete record of the newest file holding one.
func (l *Log) resume() (kind Kind, err error) {
	files, err := Files(l.dir)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for i := len(files) - 1; i >= 0; i-- {
		last, err := lastLine(files[i])
		if err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrUnavailable, files[i], err)
		}
		if last == nil {
			continue
		}
		var r struct {
			Seq  uint64 `json:"seq"`
			Kind Kind   `json:"kind"`
		}
		body, hash, ok := split(last)
		if !ok || json.Unmarshal(body, &r) != nil {
			return "", fmt.Errorf("%w: %s: last line is not an audit record; run `parachute audit verify`", ErrUnavailable, files[i])
		}
		l.cur.seq, l.cur.prev = r.Seq, hash
		return r.Kind, nil
	}
	return "", nil
}

// checkAnchor refuses a log that ends before, or differs at, the checkpoint
// kept in the checkpoint file.
func (l *Log) checkAnchor() error {
	path := l.opts.CheckpointFile
	b, err := readAnchor(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	c, err := VerifyCheckpoint(string(b), l.opts.Signer.Public())
	if err != nil {
		return fmt.Errorf("%w: %s: %w; it was not written with the key %s", ErrUnavailable, path, err, l.opts.Signer.Path)
	}
	fix := fmt.Sprintf("run `parachute audit verify %s`; to start a new log, move %s and %s aside", l.dir, l.dir, path)
	if l.cur.seq < c.Size+1 {
		return fmt.Errorf("%w: the log ends at seq %d, but the checkpoint in %s is record %d: records were removed; %s",
			ErrTruncated, l.cur.seq, path, c.Size+1, fix)
	}
	rec, found, err := recordAt(l.dir, c.Size+1)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !found || rec.Kind != KindCheckpoint || rec.Detail["note"] != string(b) || rec.Prev != c.Hash {
		return fmt.Errorf("%w: record %d is not the checkpoint kept in %s: the log was rewritten; %s", ErrTruncated, c.Size+1, path, fix)
	}
	l.ckSeq = c.Size + 1
	return nil
}

func readAnchor(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, 64<<10))
}

// recordAt finds the record with sequence number seq.
func recordAt(dir string, seq uint64) (Record, bool, error) {
	files, err := Files(dir)
	if err != nil {
		return Record{}, false, err
	}
	// Rotated files are named by their first seq: start at the last one
	// that begins at or before seq.
	start := 0
	for i, p := range files {
		var first uint64
		if n, err := fmt.Sscanf(filepath.Base(p), "audit-%020d.jsonl", &first); err == nil && n == 1 && first <= seq {
			start = i
		}
	}
	var found Record
	ok := false
	stop := errors.New("found")
	for _, p := range files[start:] {
		f, err := os.Open(p)
		if err != nil {
			return Record{}, false, err
		}
		_, err = scan(f, p, func(e Entry) error {
			if e.Record.Seq == seq {
				found, ok = e.Record, true
				return stop
			}
			return nil
		})
		f.Close()
		if ok {
			return found, true, nil
		}
		if err != nil {
			return Record{}, false, err
		}
	}
	return Record{}, false, nil
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
	return l.append(&r, false)
}

// Checkpoint signs the chain head now, if anything was written since the
// last checkpoint. Without a Signer it only retries a failed log (writing
// its gap record). The timer calls it every CheckpointInterval.
func (l *Log) Checkpoint(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	_, err := l.append(nil, true)
	return err
}

func (l *Log) append(r *Record, force bool) (Record, error) {
	var out Record
	if r != nil {
		out = *r
	}
	// Cutting off bytes whose fsync failed and rotating both need every
	// fsync to be done (no fsync may run on bytes being cut or a file being
	// renamed): they run holding syncMu, taken before mu.
	haveSync := false
	for {
		l.mu.Lock()
		if !haveSync && (l.repair || l.cur.size >= l.opts.MaxBytes) {
			l.mu.Unlock()
			l.syncMu.Lock()
			haveSync = true
			continue
		}
		break
	}
	unlock := func() {
		l.mu.Unlock()
		if haveSync {
			l.syncMu.Unlock()
		}
	}
	if l.closed {
		unlock()
		return out, fmt.Errorf("%w: log closed", ErrUnavailable)
	}
	if r == nil && l.outage == nil && (l.opts.Signer == nil || l.cur.seq == l.cur.lastCk && !l.ckDue) {
		unlock()
		return out, nil // nothing to sign, nothing to retry
	}
	note, err := l.writeLocked(r, force, haveSync)
	if err != nil {
		l.refuseLocked(err)
		unlock()
		return out, err
	}
	if r != nil {
		out = *r
	}
	f, seq, epoch := l.f, l.cur.seq, l.epoch
	unlock()
	if err := l.syncTo(f, seq, epoch); err != nil {
		l.mu.Lock()
		l.refuseLocked(err)
		l.mu.Unlock()
		return out, err
	}
	if note != nil {
		l.keepCheckpoint(*note)
	}
	return out, nil
}

// refuseLocked counts a refused append and opens or extends the outage.
func (l *Log) refuseLocked(err error) {
	now := l.opts.Now().UTC()
	l.refused++
	if l.outage == nil {
		l.outage = &outage{from: now, first: err.Error()}
		l.log.Error("audit log unavailable: appends are refused until it can be written", "dir", l.dir, "error", err.Error())
	}
	o := l.outage
	if o.atGap > 0 && o.refused == o.atGap {
		o.afterFrom, o.afterFirst = now, err.Error()
	}
	o.to = now
	o.refused++
}

// checkpointNote is a checkpoint written in a batch, kept once durable.
type checkpointNote struct {
	seq  uint64
	note string
	c    Checkpoint
}

// writeLocked writes one batch: a gap record if the log is recovering from
// an outage, r (if any), and a checkpoint when one is due. Called with l.mu
// held; haveSync says syncMu is held too, which repair and rotation need.
func (l *Log) writeLocked(r *Record, force, haveSync bool) (*checkpointNote, error) {
	if l.repair && !haveSync {
		return nil, fmt.Errorf("%w: fsync failed before this record was written", ErrUnavailable)
	}
	if l.repair {
		// An fsync failed: what follows the last durable record may or may
		// not be on disk. Its appenders were all refused; cut it off.
		if err := l.f.Truncate(l.durable.size); err != nil {
			return nil, fmt.Errorf("%w: cutting off records whose fsync failed: %w", ErrUnavailable, err)
		}
		if err := l.f.Sync(); err != nil {
			return nil, fmt.Errorf("%w: fsync: %w", ErrUnavailable, err)
		}
		if l.cuts == nil {
			l.cuts = map[uint64]uint64{}
		}
		l.cuts[l.epoch] = l.durable.seq
		l.cur, l.repair = l.durable, false
		l.epoch++
		if l.gapSeq > l.cur.seq {
			l.gapSeq = 0
			if l.outage != nil {
				l.outage.atGap = 0
			}
		}
	}
	if l.cur.size >= l.opts.MaxBytes && haveSync {
		if err := l.rotate(); err != nil {
			return nil, err
		}
	}
	next := l.cur
	l.batch = l.batch[:0]
	add := func(rec *Record) error {
		rec.Seq, rec.Prev = next.seq+1, next.prev
		if rec.Time.IsZero() {
			rec.Time = l.opts.Now().UTC()
		}
		line, hash, err := l.encode(rec)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		l.batch = append(l.batch, line...)
		next.seq, next.prev, next.size = rec.Seq, hash, next.size+int64(len(line))
		return nil
	}
	gapSeq := l.gapSeq
	if o := l.outage; o != nil && gapSeq == 0 {
		gap := Record{Kind: KindGap, Decision: "deny", Reasons: []string{ReasonAuditUnavailable}, Error: o.first,
			Detail: map[string]string{
				"from":    o.from.Format(time.RFC3339Nano),
				"to":      o.to.Format(time.RFC3339Nano),
				"refused": strconv.FormatUint(o.refused, 10),
			}}
		if err := add(&gap); err != nil {
			return nil, err
		}
		gapSeq = gap.Seq
		defer func() {
			if gapSeq == l.gapSeq && l.outage != nil && l.outage.atGap == 0 {
				l.outage.atGap = l.outage.refused
			}
		}()
	}
	if r != nil {
		if err := add(r); err != nil {
			return nil, err
		}
	}
	var ck *checkpointNote
	if s := l.opts.Signer; s != nil && (l.ckDue || (force && next.seq > next.lastCk) || next.seq-next.lastCk >= l.opts.CheckpointEvery) {
		c := Checkpoint{Origin: s.pub.Name, Size: next.seq, Hash: next.prev, Time: l.opts.Now().UTC(),
			Interval: l.opts.CheckpointEvery, KeyID: s.pub.ID}
		note, err := s.sign(c)
		if err != nil {
			return nil, fmt.Errorf("%w: signing checkpoint: %w", ErrUnavailable, err)
		}
		rec := Record{Kind: KindCheckpoint, Time: c.Time, Detail: map[string]string{"note": note}}
		if err := add(&rec); err != nil {
			return nil, err
		}
		next.lastCk = rec.Seq
		ck = &checkpointNote{seq: rec.Seq, note: note, c: c}
	}
	if len(l.batch) == 0 {
		return nil, nil
	}
	if n, err := l.f.Write(l.batch); err != nil {
		// Take back a partial write so the next line starts clean.
		if n > 0 {
			if terr := l.f.Truncate(l.cur.size); terr != nil {
				l.repair = true
			}
		}
		return nil, fmt.Errorf("%w: writing: %w", ErrUnavailable, err)
	}
	l.cur, l.gapSeq = next, gapSeq
	if ck != nil {
		l.ckDue = false
	}
	return ck, nil
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

// syncTo makes every record up to seq durable (group commit). One
// appender at a time is the leader: it fsyncs everything written so far
// while the others wait on synced; when its fsync returns it wakes them
// all at once, and those it covered return while the first one it did not
// cover leads the next fsync. So an fsync serves every record written
// while the one before it ran, and no appender returns before an fsync
// that began after its record was written has succeeded.
//
// A record whose bytes were cut off after a failed fsync (another epoch)
// is refused, never reported durable. The leader holds syncMu for its
// fsync, so no rotation or cut happens under it: the file and epoch it
// checked before the fsync are those after it.
func (l *Log) syncTo(f file, seq, epoch uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if done, err := l.coveredLocked(f, seq, epoch); done {
			return err
		}
		if !l.syncing {
			break
		}
		l.synced.Wait()
	}
	l.syncing = true
	defer func() {
		l.syncing = false
		l.synced.Broadcast()
	}()
	// syncMu before mu: release mu to take it, then look again (a cut or
	// rotation may have run in between).
	l.mu.Unlock()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if done, err := l.coveredLocked(f, seq, epoch); done {
		return err
	}
	target := l.cur
	l.mu.Unlock()
	var err error
	if !l.opts.NoSync {
		err = f.Sync()
	}
	l.mu.Lock()
	l.syncs++
	if err != nil {
		// What follows the durable head may or may not be on disk, and a
		// later fsync would not say: it is cut off before the next write.
		l.repair = true
		return fmt.Errorf("%w: fsync: %w", ErrUnavailable, err)
	}
	if target.seq > l.durable.seq {
		l.durable = target
	}
	l.recoveredLocked()
	return nil
}

// coveredLocked reports whether the record at seq, written to f in epoch,
// needs no further fsync: it is durable (nil), or it can never be (an
// error).
func (l *Log) coveredLocked(f file, seq, epoch uint64) (bool, error) {
	if l.epoch != epoch {
		// Cut off since written, unless it was durable before the cut.
		if seq <= l.cuts[epoch] {
			return true, nil
		}
		return true, fmt.Errorf("%w: fsync failed before this record was durable", ErrUnavailable)
	}
	if l.repair && seq > l.durable.seq {
		return true, fmt.Errorf("%w: fsync failed before this record was durable", ErrUnavailable)
	}
	// Rotated since: rotate synced the old file.
	return l.durable.seq >= seq || l.f != f, nil
}

// recoveredLocked ends the outage once its gap record is durable.
func (l *Log) recoveredLocked() {
	if l.outage != nil && l.gapSeq != 0 && l.durable.seq >= l.gapSeq {
		l.log.Warn("audit log writable again; gap recorded", "dir", l.dir, "gap_seq", l.gapSeq,
			"from", l.outage.from, "to", l.outage.to, "refused", l.outage.refused)
		o := l.outage
		l.outage, l.gapSeq = nil, 0
		if o.refused > o.atGap {
			l.outage = &outage{from: o.afterFrom, to: o.to, refused: o.refused - o.atGap, first: o.afterFirst}
		}
	}
}

// keepCheckpoint writes a durable checkpoint to the checkpoint file (beside
// the key, outside the log) and to the process log.
func (l *Log) keepCheckpoint(ck checkpointNote) {
	l.ckMu.Lock()
	defer l.ckMu.Unlock()
	if ck.seq <= l.ckSeq {
		return
	}
	l.log.Info("audit checkpoint", "seq", ck.seq, "signed_seq", ck.c.Size, "head", ck.c.Hash,
		"key_id", fmt.Sprintf("%08x", ck.c.KeyID), "time", ck.c.Time, "note", ck.note)
	if err := replaceFile(l.opts.CheckpointFile, []byte(ck.note)); err != nil {
		l.ckErr = err
		l.log.Error("audit checkpoint file not written; truncation below this checkpoint is seen only from the process log",
			"file", l.opts.CheckpointFile, "error", err.Error())
		return
	}
	l.ckSeq, l.ckErr = ck.seq, nil
}

// replaceFile writes b to path atomically and durably.
func replaceFile(path string, b []byte) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// tick signs the head every CheckpointInterval and retries a failed log.
func (l *Log) tick() {
	defer l.tickerRun.Done()
	t := time.NewTicker(l.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			_ = l.Checkpoint(context.Background())
		}
	}
}

// rotate renames the current file after its first record and opens a new
// one. The chain continues: the next record's prev is the last hash.
// Called with l.mu held.
func (l *Log) rotate() error {
	if err := l.f.Sync(); err != nil {
		l.repair = true
		return fmt.Errorf("%w: fsync before rotation: %w", ErrUnavailable, err)
	}
	l.durable = l.cur
	cur := filepath.Join(l.dir, CurrentFile)
	first, err := firstSeq(cur)
	if err != nil {
		return fmt.Errorf("%w: rotation: %w", ErrUnavailable, err)
	}
	next, err := l.opts.openFile(cur + ".new")
	if err != nil {
		return fmt.Errorf("%w: rotation: %w", ErrUnavailable, err)
	}
	if err := next.Truncate(0); err != nil {
		next.Close()
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
	_ = syncDir(l.dir)
	l.f.Close()
	l.f = next
	l.cur.size = 0
	l.durable = l.cur
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
	return l.cur.seq, l.cur.prev
}

// Healthy returns nil while records can be written, else why not: the log
// is closed, in an outage (since when, how many appends were refused, the
// first error), or the newest checkpoint could not be kept outside it.
// The gateway's /readyz answers not-ready with it.
func (l *Log) Healthy() error {
	l.mu.Lock()
	closed, o := l.closed, l.outage
	var oc outage
	if o != nil {
		oc = *o
	}
	l.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("%w: log closed", ErrUnavailable)
	case o != nil:
		return fmt.Errorf("%w since %s: %d append(s) refused; first error: %s",
			ErrUnavailable, oc.from.Format(time.RFC3339), oc.refused, oc.first)
	}
	l.ckMu.Lock()
	defer l.ckMu.Unlock()
	if l.ckErr != nil {
		return fmt.Errorf("%w: checkpoint file %s: %w", ErrUnavailable, l.opts.CheckpointFile, l.ckErr)
	}
	return nil
}

// Syncs returns how many fsyncs made appended records durable since Open;
// with Appends it tells how many records one fsync covers.
func (l *Log) Syncs() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncs
}

// Refused returns how many appends were refused since Open.
func (l *Log) Refused() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refused
}

// Close signs the head (with a Signer), syncs and closes the log. Later
// appends fail.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	l.stopOnce.Do(func() { close(l.stop) })
	l.tickerRun.Wait()
	var err error
	if l.opts.Signer != nil {
		err = l.Checkpoint(context.Background())
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	serr := l.f.Sync()
	if serr == nil && !l.repair {
		// Appenders still waiting for an fsync are covered by this one
		// (not bytes after a failed fsync: this one would not prove them).
		l.durable = l.cur
	} else if err == nil {
		err = serr
	}
	l.synced.Broadcast()
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
