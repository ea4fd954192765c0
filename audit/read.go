package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
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

// ReadOptions select what Read and Follow deliver.
type ReadOptions struct {
	Filter Filter
	Since  time.Time
}

// Entry is one record as read back, with its raw line.
type Entry struct {
	Record Record
	Raw    []byte
}

// Read calls fn for every record in the log in dir, oldest first, that
// matches opts. A line that is not a record is reported as an error.
func Read(dir string, opts ReadOptions, fn func(Entry) error) error {
	files, err := Files(dir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no audit log in %s", dir)
	}
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = scan(f, path, opts.matching(fn))
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// matching wraps fn so it sees only the records opts select.
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

// Follow delivers what Read would and then every new record as it is
// appended, across rotations, until ctx is done. No record is delivered
// twice or skipped: it tracks the last sequence number delivered.
func Follow(ctx context.Context, dir string, opts ReadOptions, poll time.Duration, fn func(Entry) error) error {
	var last uint64
	deliver := opts.matching(fn)
	once := func(e Entry) error {
		if e.Record.Seq <= last {
			return nil
		}
		last = e.Record.Seq
		return deliver(e)
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
	// catchUp reads every file and keeps the current one open at its end.
	// The files are all opened before any is read, and the listing is
	// taken again after: a rotation in between (the current file renamed,
	// a new one begun) would otherwise leave the renamed file unread and
	// its records skipped, as records are delivered in order.
	catchUp := func() error {
		if f != nil {
			f.Close()
			f = nil
		}
		for {
			files, err := Files(dir)
			if err != nil {
				return err
			}
			opened := make([]*os.File, 0, len(files))
			closeAll := func() {
				for _, o := range opened {
					o.Close()
				}
			}
			for _, path := range files {
				file, err := os.Open(path)
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
			if !slices.Equal(files, again) {
				closeAll() // rotated while opening: list again
				continue
			}
			for i, path := range files {
				n, err := scan(opened[i], path, once)
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
		nst, err2 := os.Stat(cur)
		if err1 != nil || err2 != nil || !os.SameFile(st, nst) {
			if err := catchUp(); err != nil {
				return err
			}
			continue
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return err
		}
		n, err := scan(f, cur, once)
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
