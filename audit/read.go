package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Filter selects records by field: every key must match. A key is a field
// name as printed by Format (connector, user, session_id, trust_level,
// decision, kind, tool, reasons, …); for reasons, any one reason matching
// is enough.
type Filter map[string]string

// ParseFilter reads key=value arguments.
func ParseFilter(args []string) (Filter, error) {
	f := Filter{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("filter %q is not key=value", a)
		}
		if _, known := LookupKind(Kind(v)); k == "kind" && !known {
			return nil, fmt.Errorf("filter %q: no record has kind %q; the kinds are %s", a, v, KindList())
		}
		f[k] = v
	}
	return f, nil
}

// Match reports whether the record's formatted fields satisfy f.
func (f Filter) Match(fields []Field) bool {
	for k, want := range f {
		found := false
		for _, fl := range fields {
			if fl.Key != k {
				continue
			}
			if fl.Value == want || (k == "reasons" && containsItem(fl.Value, want)) {
				found = true
			}
			break
		}
		if !found {
			return false
		}
	}
	return true
}

func containsItem(list, want string) bool {
	for _, s := range strings.Split(list, ",") {
		if s == want {
			return true
		}
	}
	return false
}

// Field is one key=value pair of a formatted record.
type Field struct{ Key, Value string }

// Fields lays a record out in a fixed, readable order, leaving empty fields
// out. The chain fields (seq, prev, hash) come last.
func Fields(r Record) []Field {
	out := make([]Field, 0, 20)
	add := func(k, v string) {
		if v != "" {
			out = append(out, Field{k, v})
		}
	}
	add("decision", r.Decision)
	add("kind", string(r.Kind))
	add("connector", r.Connector)
	add("user", r.User)
	add("session_id", r.SessionID)
	add("turn_id", r.TurnID)
	add("trust_level", r.TrustLevel)
	add("workspace", r.Workspace)
	add("tool", r.Tool)
	add("path", r.Path)
	add("model", r.Model)
	add("host", r.Host)
	add("reasons", strings.Join(r.Reasons, ","))
	for _, k := range sortedKeys(r.Detail) {
		add(k, r.Detail[k])
	}
	add("error", r.Error)
	if r.RetryAfterMS > 0 {
		add("retry_after_ms", strconv.FormatInt(r.RetryAfterMS, 10))
	}
	add("policy_revision", r.PolicyRevision)
	if r.LatencyUS > 0 {
		add("latency_us", strconv.FormatInt(r.LatencyUS, 10))
	}
	add("decision_id", r.DecisionID)
	add("seq", strconv.FormatUint(r.Seq, 10))
	return out
}

// Format renders a record as one line: the time, then key=value pairs.
// Values with spaces, quotes or '=' are quoted, so `grep "connector="`
// and `grep "trust_level=direct"` work on the output. Every key and value is
// escaped (see Escape): control, bidi and other invisible characters are
// shown as \x1b, \u202e, …, never sent to the terminal.
func Format(r Record) string {
	var b strings.Builder
	b.WriteString(r.Time.UTC().Format(time.RFC3339Nano))
	for _, f := range Fields(r) {
		b.WriteByte(' ')
		b.WriteString(Escape(f.Key))
		b.WriteByte('=')
		b.WriteString(formatValue(f.Value))
	}
	return b.String()
}

// ReadOptions select what Read, ReadBack and Follow deliver. The zero
// value delivers every record, oldest first: what `parachute logs` prints.
type ReadOptions struct {
	Filter Filter
	// Since leaves out records older than it, Until records at or after it
	// (zero: no bound). Without Ordered every file is still read.
	Since, Until time.Time
	// FromSeq and BeforeSeq bound sequence numbers: FromSeq <= seq, and
	// seq < BeforeSeq when BeforeSeq is not 0. Files wholly outside are not
	// opened: a rotated file is named by its first seq, so a file whose
	// successor starts at or below FromSeq, or which starts at or above
	// BeforeSeq, is passed over unread. The first file a bounded read opens
	// must start at the seq its name says, or the read fails.
	FromSeq, BeforeSeq uint64
	// Ordered lets Since and Until skip whole files and end the read: a
	// file whose successor's first record is older than Since is not
	// opened (found by a binary search over the files' first records), and
	// the first record at or after Until, or older than Since when reading
	// back, ends the read. Records are in time order when the writer's
	// clock does not step back: each record's time is taken under the log's
	// lock as it is written, a gap or checkpoint record's too (a gap's
	// window is in its detail, not its time), and rotation only renames.
	// A wall clock stepped back breaks it, and a record written then may
	// be left out: `parachute logs --since` does not set Ordered, the
	// console's time windows do.
	Ordered bool
	// Last keeps only the last Last matching records (Read still delivers
	// them oldest first; Follow starts with them): files are read from the
	// newest back and older ones are not opened once that many are found.
	Last int
	// Stats, when not nil, counts what the read opens and reads.
	Stats *ReadStats
}

// ReadStats counts a read's work: files opened (a look at a file's first
// record counts as one) and bytes read from them. Tests bound a page's
// cost with it; it is safe to read while a Follow runs.
type ReadStats struct{ Files, Bytes atomic.Int64 }

// Stop, returned by a read's fn, ends the read early; the read returns nil.
var Stop = errors.New("audit: stop reading")

// Entry is one record as read back, with its raw line.
type Entry struct {
	Record Record
	Raw    []byte
}

// Read calls fn for every record in the log in dir, oldest first, that
// matches opts. A line that is not a record is reported as an error.
func Read(dir string, opts ReadOptions, fn func(Entry) error) error {
	if opts.Last > 0 {
		return opts.readLast(dir, fn)
	}
	files, err := Files(dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no audit log in %s", dir)
	}
	start, err := opts.start(files)
	if err != nil {
		return err
	}
	deliver := opts.bounded(opts.matching(fn))
	for i, path := range files[start:] {
		f, err := opts.open(path)
		if err != nil {
			return err
		}
		_, err = opts.scanFile(f, path, i == 0 && opts.isBounded(), deliver)
		f.Close()
		if errors.Is(err, Stop) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ReadBack calls fn for the records opts select, newest first, reading
// each file from its end: a caller that stops (fn returns Stop) once it has
// what it wants reads only the newest files. FromSeq, and Since when
// Ordered, end the read at the first record below them; files starting at
// or above BeforeSeq are not opened.
func ReadBack(dir string, opts ReadOptions, fn func(Entry) error) error {
	files, err := Files(dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no audit log in %s", dir)
	}
	cur := filepath.Join(dir, CurrentFile)
	deliver := func(e Entry) error {
		r := e.Record
		switch {
		case opts.BeforeSeq != 0 && r.Seq >= opts.BeforeSeq:
			return nil
		case r.Seq < opts.FromSeq:
			return Stop
		case !opts.Since.IsZero() && r.Time.Before(opts.Since):
			if opts.Ordered {
				return Stop
			}
			return nil
		case !opts.Until.IsZero() && !r.Time.Before(opts.Until):
			return nil
		case len(opts.Filter) > 0 && !opts.Filter.Match(Fields(r)):
			return nil
		}
		return fn(e)
	}
	for i := len(files) - 1; i >= 0; i-- {
		path := files[i]
		named := path
		if path == cur && i > 0 {
			named = files[i-1] // the current file starts after every rotated one
		}
		if first, ok := nameSeq(named); ok && opts.BeforeSeq != 0 && first >= opts.BeforeSeq {
			continue
		}
		f, err := opts.open(path)
		if err != nil {
			return err
		}
		err = opts.scanBack(f, path, path != cur, deliver)
		f.Close()
		if errors.Is(err, Stop) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readLast delivers the last opts.Last matching records, oldest first.
func (opts ReadOptions) readLast(dir string, fn func(Entry) error) error {
	var got []Entry
	back := opts
	back.Last = 0
	err := ReadBack(dir, back, func(e Entry) error {
		got = append(got, e)
		if len(got) >= opts.Last {
			return Stop
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(got) - 1; i >= 0; i-- {
		if err := fn(got[i]); err != nil {
			if errors.Is(err, Stop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// LastSeq returns the sequence number of the log's last record, reading
// only the end of its newest file that holds one (0 for an empty log).
func LastSeq(dir string) (uint64, error) {
	var seq uint64
	err := ReadBack(dir, ReadOptions{}, func(e Entry) error {
		seq = e.Record.Seq
		return Stop
	})
	return seq, err
}

// matching wraps fn so it sees only the records Filter and Since select.
func (opts ReadOptions) matching(fn func(Entry) error) func(Entry) error {
	return func(e Entry) error {
		if !opts.Since.IsZero() && e.Record.Time.Before(opts.Since) {
			return nil
		}
		if len(opts.Filter) > 0 && !opts.Filter.Match(Fields(e.Record)) {
			return nil
		}
		return fn(e)
	}
}

// bounded wraps fn, for a read oldest first, with the seq and Until
// bounds: below FromSeq is passed over, BeforeSeq (and Until when
// Ordered) ends the read.
func (opts ReadOptions) bounded(fn func(Entry) error) func(Entry) error {
	return func(e Entry) error {
		r := e.Record
		switch {
		case r.Seq < opts.FromSeq:
			return nil
		case opts.BeforeSeq != 0 && r.Seq >= opts.BeforeSeq:
			return Stop
		case !opts.Until.IsZero() && !r.Time.Before(opts.Until):
			if opts.Ordered {
				return Stop
			}
			return nil
		}
		return fn(e)
	}
}

// isBounded reports whether opts may skip files, so the first file opened
// is checked against its name.
func (opts ReadOptions) isBounded() bool {
	return opts.FromSeq > 1 || (opts.Ordered && !opts.Since.IsZero())
}

// start is the index of the first file a read oldest first must open: the
// last one starting at or below FromSeq (rotated files by their name, the
// current file by its first record), and with Ordered and Since, the last
// one whose first record is older than Since (a binary search: the files'
// first records are in time order).
func (opts ReadOptions) start(files []string) (int, error) {
	start := 0
	if opts.FromSeq > 1 {
		for i, p := range files {
			first, ok := nameSeq(p)
			if !ok && i > start && filepath.Base(p) == CurrentFile {
				var err error
				if first, _, ok, err = opts.peek(p); err != nil {
					return 0, err
				}
			}
			if !ok || first > opts.FromSeq {
				break
			}
			start = i
		}
	}
	if opts.Ordered && !opts.Since.IsZero() {
		lo, hi := start+1, len(files)-1
		for lo <= hi {
			mid := (lo + hi) / 2
			_, t, ok, err := opts.peek(files[mid])
			if err != nil {
				return 0, err
			}
			if ok && t.Before(opts.Since) {
				start, lo = mid, mid+1
			} else {
				hi = mid - 1
			}
		}
	}
	return start, nil
}

// nameSeq is the first seq a rotated file's name gives.
func nameSeq(path string) (uint64, bool) {
	var first uint64
	base := filepath.Base(path)
	if n, err := fmt.Sscanf(base, "audit-%020d.jsonl", &first); err != nil || n != 1 || base != fmt.Sprintf("audit-%020d.jsonl", first) {
		return 0, false
	}
	return first, true
}

// peek reads the seq and time of a file's first record; ok is false for a
// file with no complete first record (the current file just after a
// rotation).
func (opts ReadOptions) peek(path string) (seq uint64, t time.Time, ok bool, err error) {
	f, err := opts.open(path)
	if err != nil {
		return 0, time.Time{}, false, err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(opts.counting(io.LimitReader(f, 1<<20)), 4<<10).ReadBytes('\n')
	if err != nil {
		return 0, time.Time{}, false, nil
	}
	var r struct {
		Seq  uint64    `json:"seq"`
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return 0, time.Time{}, false, fmt.Errorf("%s:1: not an audit record: %w", path, err)
	}
	return r.Seq, r.Time, true, nil
}

// open opens one of the log's files without following a link and refuses
// anything but a regular file.
func (opts ReadOptions) open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("audit log: %s is a %s, not a regular file: the log writes only regular files; run `parachute audit verify`", path, st.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if opts.Stats != nil {
		opts.Stats.Files.Add(1)
	}
	return f, nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (opts ReadOptions) counting(r io.Reader) io.Reader {
	if opts.Stats == nil {
		return r
	}
	return countingReader{r, &opts.Stats.Bytes}
}

// scanFile scans f; with checkName, its first record must carry the seq
// its name says (the files a bounded read passed over were chosen by the
// names).
func (opts ReadOptions) scanFile(f *os.File, path string, checkName bool, fn func(Entry) error) (int64, error) {
	want, named := nameSeq(path)
	first := checkName && named
	return scan(opts.counting(f), path, func(e Entry) error {
		if first {
			first = false
			if e.Record.Seq != want {
				return misnamed(path, want, e.Record.Seq)
			}
		}
		return fn(e)
	})
}

func misnamed(path string, want, got uint64) error {
	return fmt.Errorf("audit log: %s is named for seq %d but its first record is seq %d: the log's files were renamed or edited; run `parachute audit verify`", path, want, got)
}

// scan reads complete lines from r, calls fn for each record and returns
// the bytes consumed; a partial last line is left for the next scan.
func scan(r io.Reader, name string, fn func(Entry) error) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var consumed int64
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return consumed, nil
		}
		if err != nil {
			return consumed, err
		}
		consumed += int64(len(line))
		raw := line[:len(line)-1]
		var rec Record
		if err := json.Unmarshal(raw, &rec); err != nil {
			return consumed, fmt.Errorf("%s:%d: not an audit record: %w", name, n, err)
		}
		if err := fn(Entry{Record: rec, Raw: raw}); err != nil {
			return consumed, err
		}
	}
}

// backChunk is how much scanBack reads at a time.
const backChunk = 64 << 10

// scanBack calls fn for the complete lines of f from the last back, as
// scan would see them: a partial last line (an append under way) is left
// out. With checkName, a file read to its start must begin at the seq its
// name says.
func (opts ReadOptions) scanBack(f *os.File, path string, checkName bool, fn func(Entry) error) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pos := st.Size()
	var (
		carry   []byte // unsplit bytes after pos: they end with '\n' once trimmed
		trimmed bool
		oldest  uint64
		seen    bool
	)
	for pos > 0 {
		n := min(int64(backChunk), pos)
		pos -= n
		buf := make([]byte, n, int(n)+len(carry))
		if _, err := f.ReadAt(buf, pos); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if opts.Stats != nil {
			opts.Stats.Bytes.Add(n)
		}
		data := append(buf, carry...)
		if !trimmed {
			i := bytes.LastIndexByte(data, '\n')
			if i < 0 {
				continue // all of it so far is the partial last line
			}
			data, trimmed = data[:i+1], true
		}
		for len(data) > 0 {
			end := len(data) - 1
			j := bytes.LastIndexByte(data[:end], '\n')
			if j < 0 && pos > 0 {
				break // the line begins in an earlier chunk
			}
			raw := data[j+1 : end]
			var rec Record
			if err := json.Unmarshal(raw, &rec); err != nil {
				return fmt.Errorf("%s at byte %d: not an audit record: %w", path, pos+int64(j+1), err)
			}
			oldest, seen = rec.Seq, true
			if err := fn(Entry{Record: rec, Raw: raw}); err != nil {
				return err
			}
			data = data[:j+1]
		}
		carry = data
	}
	if want, named := nameSeq(path); checkName && named && seen && oldest != want {
		return misnamed(path, want, oldest)
	}
	return nil
}

// Follow delivers what Read would and then every new record as it is
// appended, across rotations, until ctx is done. No record is delivered
// twice or skipped: it tracks the last sequence number delivered. FromSeq,
// Since with Ordered, and Last choose where it starts, reading only the
// files from there; Until and BeforeSeq do not apply.
func Follow(ctx context.Context, dir string, opts ReadOptions, poll time.Duration, fn func(Entry) error) error {
	var last uint64
	deliver := opts.matching(fn)
	once := func(e Entry) error {
		if e.Record.Seq <= last || e.Record.Seq < opts.FromSeq {
			return nil
		}
		last = e.Record.Seq
		return deliver(e)
	}
	if opts.Last > 0 {
		// The last Last matches, newest first, then everything after the
		// newest record seen: the catch-up below opens only its file on.
		var (
			got  []Entry
			seen uint64
		)
		back := opts
		back.Filter, back.Last, back.BeforeSeq, back.Until = nil, 0, 0, time.Time{}
		err := ReadBack(dir, back, func(e Entry) error {
			seen = max(seen, e.Record.Seq)
			if len(opts.Filter) == 0 || opts.Filter.Match(Fields(e.Record)) {
				got = append(got, e)
			}
			if len(got) >= opts.Last {
				return Stop
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i := len(got) - 1; i >= 0; i-- {
			if err := once(got[i]); err != nil {
				return err
			}
		}
		last = max(last, seen)
	}
	cur := filepath.Join(dir, CurrentFile)
	var (
		f      *os.File
		offset int64
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	// catchUp reads every file from the one holding the next record to
	// deliver, and keeps the current one open at its end. The files are
	// all opened before any is read, and the listing is taken again after:
	// a rotation in between (the current file renamed, a new one begun)
	// would otherwise leave the renamed file unread and its records
	// skipped, as records are delivered in order.
	catchUp := func() error {
		if f != nil {
			f.Close()
			f = nil
		}
		from := opts
		from.FromSeq = max(opts.FromSeq, last+1)
		if last > 0 {
			from.Ordered = false // the seq says where to start
		}
		for missing := 0; ; {
			files, err := Files(dir)
			if err != nil {
				return err
			}
			// Between rotation's two renames there is no current file for
			// a moment: list again a while; a folder that keeps none is
			// no log.
			wait := func() error {
				if missing++; missing > 50 {
					return fmt.Errorf("no audit log in %s: it has no %s", dir, CurrentFile)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(poll):
					return nil
				}
			}
			if len(files) == 0 || files[len(files)-1] != cur {
				if err := wait(); err != nil {
					return err
				}
				continue
			}
			start, err := from.start(files)
			if errors.Is(err, fs.ErrNotExist) {
				if err := wait(); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			files = files[start:]
			opened := make([]*os.File, 0, len(files))
			closeAll := func() {
				for _, o := range opened {
					o.Close()
				}
			}
			for _, path := range files {
				file, err := opts.open(path)
				if errors.Is(err, fs.ErrNotExist) {
					break // renamed since listed: list again
				}
				if err != nil {
					closeAll()
					return err
				}
				opened = append(opened, file)
			}
			again, err := Files(dir)
			if err != nil {
				closeAll()
				return err
			}
			if len(opened) < len(files) || len(again) < start || !slices.Equal(files, again[start:]) {
				closeAll() // rotated while opening: list again
				continue
			}
			for i, path := range files {
				n, err := opts.scanFile(opened[i], path, i == 0 && start > 0, once)
				if err != nil {
					opened[i].Close()
					for _, o := range opened[i+1:] {
						o.Close()
					}
					return err
				}
				if path == cur {
					f, offset = opened[i], n
				} else {
					opened[i].Close()
				}
			}
			if f == nil {
				return fmt.Errorf("no audit log in %s", dir)
			}
			return nil
		}
	}
	if err := catchUp(); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st, err1 := f.Stat()
		nst, err2 := os.Lstat(cur)
		if err1 != nil || err2 != nil || !os.SameFile(st, nst) {
			if err := catchUp(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			continue
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return err
		}
		n, err := scan(opts.counting(f), cur, once)
		if err != nil {
			return err
		}
		offset += n
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
