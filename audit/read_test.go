package audit

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// noSyncFile skips fsync: the read tests build logs of thousands of
// records and test reading, not durability.
type noSyncFile struct{ *os.File }

func (noSyncFile) Sync() error { return nil }

// stepClock is a log's clock that moves on a second at every reading.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

const readMaxBytes = 4096

// longLog writes n records into a log rotating at readMaxBytes: hundreds
// of files, as a gateway that ran for months has (scaled down).
func longLog(t *testing.T, n int) (string, *Log) {
	t.Helper()
	dir := t.TempDir()
	clock := &stepClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := openLog(t, dir, Options{MaxBytes: readMaxBytes, Now: clock.now, CheckpointInterval: -1,
		openFile: func(name string) (file, error) {
			f, err := openOSFile(name)
			if err != nil {
				return nil, err
			}
			return noSyncFile{f.(*os.File)}, nil
		}})
	appendN(t, l, n)
	return dir, l
}

func seqs(rs []Record) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 { // from..to, either way round
	var out []uint64
	for s := from; ; {
		out = append(out, s)
		if s == to {
			return out
		}
		if from < to {
			s++
		} else {
			s--
		}
	}
}

// Each bounded read opens only the files that hold what it asked for,
// and delivers exactly what a whole read filtered in memory would. A read
// without the new options (what `parachute logs` does) is unchanged: it
// still reads every file.
func TestBoundedReadsOpenOnlyTheirFiles(t *testing.T) {
	const n = 3000
	dir, _ := longLog(t, n)
	all := records(t, dir)
	files, _ := Files(dir)
	if len(all) != n || len(files) < 200 {
		t.Fatalf("log has %d records in %d files, want %d in 200 or more", len(all), len(files), n)
	}
	at := func(seq uint64) Record { return all[seq-1] }
	collect := func(out *[]uint64, stop int) func(Entry) error {
		return func(e Entry) error {
			*out = append(*out, e.Record.Seq)
			if stop > 0 && len(*out) >= stop {
				return Stop
			}
			return nil
		}
	}
	search := bits.Len(uint(len(files))) + 2 // a binary search's peeks, and the files it lands in
	tests := []struct {
		name     string
		read     func(*ReadOptions, *[]uint64) error
		want     []uint64
		maxFiles int64
		maxBytes int64
	}{
		{"from a seq in the current file", func(o *ReadOptions, out *[]uint64) error {
			o.FromSeq = n - 3
			return Read(dir, *o, collect(out, 0))
		}, seqRange(n-3, n), 3, 3 * readMaxBytes},
		{"from a seq in an old file, stopping", func(o *ReadOptions, out *[]uint64) error {
			o.FromSeq = 1000
			return Read(dir, *o, collect(out, 5))
		}, seqRange(1000, 1004), 2, 2 * readMaxBytes},
		{"a seq range across files", func(o *ReadOptions, out *[]uint64) error {
			o.FromSeq, o.BeforeSeq = 1000, 1050
			return Read(dir, *o, collect(out, 0))
		}, seqRange(1000, 1049), 12, 12 * readMaxBytes},
		{"since, ordered", func(o *ReadOptions, out *[]uint64) error {
			o.Since, o.Ordered = at(n-10).Time, true
			return Read(dir, *o, collect(out, 0))
		}, seqRange(n-10, n), int64(search), int64(search)*(4<<10) + 2*readMaxBytes},
		{"since and until, ordered, deep in the past", func(o *ReadOptions, out *[]uint64) error {
			o.Since, o.Until, o.Ordered = at(700).Time, at(720).Time, true
			return Read(dir, *o, collect(out, 0))
		}, seqRange(700, 719), int64(search) + 4, int64(search)*(4<<10) + 6*readMaxBytes},
		{"last 5", func(o *ReadOptions, out *[]uint64) error {
			o.Last = 5
			return Read(dir, *o, collect(out, 0))
		}, seqRange(n-4, n), 2, 2 * readMaxBytes},
		{"last 1 matching a filter", func(o *ReadOptions, out *[]uint64) error {
			o.Last, o.Filter = 1, Filter{"user": "telegram:2990"}
			return Read(dir, *o, collect(out, 0))
		}, []uint64{2991}, 6, 6 * readMaxBytes},
		{"back from a seq, stopping", func(o *ReadOptions, out *[]uint64) error {
			o.BeforeSeq = 1500
			return ReadBack(dir, *o, collect(out, 5))
		}, seqRange(1499, 1495), 3, 3 * readMaxBytes},
		{"back to a seq", func(o *ReadOptions, out *[]uint64) error {
			o.FromSeq = n - 5
			return ReadBack(dir, *o, collect(out, 0))
		}, seqRange(n, n-5), 3, 3 * readMaxBytes},
		{"back to a time, ordered", func(o *ReadOptions, out *[]uint64) error {
			o.Since, o.Ordered = at(n-5).Time, true
			return ReadBack(dir, *o, collect(out, 0))
		}, seqRange(n, n-5), 3, 3 * readMaxBytes},
		{"last seq", func(o *ReadOptions, out *[]uint64) error {
			s, err := LastSeq(dir)
			*out = append(*out, s)
			return err
		}, []uint64{n}, 1, readMaxBytes},
		// What `parachute logs --since` does: every file, the same records.
		{"since, not ordered, reads every file", func(o *ReadOptions, out *[]uint64) error {
			o.Since = at(n - 10).Time
			return Read(dir, *o, collect(out, 0))
		}, seqRange(n-10, n), int64(len(files)), 1 << 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &ReadStats{}
			o := &ReadOptions{Stats: st}
			var got []uint64
			if err := tt.read(o, &got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("read %v, want %v", got, tt.want)
			}
			if f, b := st.Files.Load(), st.Bytes.Load(); f > tt.maxFiles || b > tt.maxBytes {
				t.Fatalf("opened %d files and read %d bytes, want at most %d and %d (the log: %d files)", f, b, tt.maxFiles, tt.maxBytes, len(files))
			}
		})
	}
	if name := tests[len(tests)-1].name; !strings.Contains(name, "every file") {
		t.Fatal(name)
	}
}

// Follow started late reads only the files from its start, delivers the
// backlog then every new record in order, and a rotation while it follows
// does not make it read the past again.
func TestFollowStartsLate(t *testing.T) {
	const n = 3000
	tests := []struct {
		name    string
		opts    func(all []Record) ReadOptions
		backlog []uint64
	}{
		{"at the head", func([]Record) ReadOptions { return ReadOptions{FromSeq: n + 1} }, nil},
		{"last 5", func([]Record) ReadOptions { return ReadOptions{Last: 5} }, seqRange(n-4, n)},
		{"last 1 matching", func([]Record) ReadOptions {
			return ReadOptions{Last: 1, Filter: Filter{"user": "telegram:2990"}}
		}, []uint64{2991}},
		{"since, ordered", func(all []Record) ReadOptions { return ReadOptions{Since: all[n-4].Time, Ordered: true} }, seqRange(n-3, n)},
		{"since and last", func(all []Record) ReadOptions {
			return ReadOptions{Since: all[n-40].Time, Ordered: true, Last: 3}
		}, seqRange(n-2, n)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, l := longLog(t, n)
			all := records(t, dir)
			files, _ := Files(dir)
			st := &ReadStats{}
			opts := tt.opts(all)
			opts.Stats = st
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			seen := make(chan uint64, 1000)
			done := make(chan error, 1)
			go func() {
				done <- Follow(ctx, dir, opts, time.Millisecond, func(e Entry) error { seen <- e.Record.Seq; return nil })
			}()
			next := func() uint64 {
				select {
				case s := <-seen:
					return s
				case err := <-done:
					t.Fatalf("follow ended: %v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("follow delivered nothing in 10 s")
				}
				return 0
			}
			for _, want := range tt.backlog {
				if got := next(); got != want {
					t.Fatalf("backlog delivered seq %d, want %d", got, want)
				}
			}
			opened := st.Files.Load()
			if opened > int64(bits.Len(uint(len(files)))+4) {
				t.Fatalf("opening the stream opened %d of %d files", opened, len(files))
			}
			// 200 more records: several rotations while following.
			before := st.Bytes.Load()
			appendN(t, l, 200)
			filter := opts.Filter
			want := uint64(n + 1)
			for ; want <= n+200; want++ {
				if len(filter) > 0 {
					break
				}
				if got := next(); got != want {
					t.Fatalf("follow delivered seq %d, want %d", got, want)
				}
			}
			if len(filter) == 0 {
				var size int64
				after, _ := Files(dir)
				for _, p := range after[len(files)-1:] {
					fi, _ := os.Stat(p)
					size += fi.Size()
				}
				if read := st.Bytes.Load() - before; read > 3*size {
					t.Fatalf("following 200 records (%d bytes in the newest files) read %d bytes: rotations made it read the past", size, read)
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Reading back sees exactly what reading forward sees, reversed: lines
// longer than a read-back chunk, and a partial last line (an append under
// way) left out.
func TestReadBackMatchesRead(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{MaxBytes: 300 << 10})
	for i := range 40 {
		r := Record{Kind: "tool", Decision: "allow", User: fmt.Sprintf("u%d", i)}
		if i%7 == 3 {
			r.Detail = map[string]string{"text": strings.Repeat("é\n", (backChunk/3)*(i%3+1))}
		}
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, CurrentFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":41,"kind":"to`)
	f.Close()
	var fwd, back []uint64
	var fwdRaw, backRaw []string
	if err := Read(dir, ReadOptions{}, func(e Entry) error {
		fwd, fwdRaw = append(fwd, e.Record.Seq), append(fwdRaw, string(e.Raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := ReadBack(dir, ReadOptions{}, func(e Entry) error {
		back, backRaw = append(back, e.Record.Seq), append(backRaw, string(e.Raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(back)
	slices.Reverse(backRaw)
	if files, _ := Files(dir); len(files) < 2 || !slices.Equal(fwd, seqRange(1, 40)) || !slices.Equal(back, fwd) || !slices.Equal(backRaw, fwdRaw) {
		t.Fatalf("%d files; forward %v, back %v (raw lines equal: %v)", len(files), fwd, back, slices.Equal(backRaw, fwdRaw))
	}
}

// A bounded read chooses files by their names, so the first file it opens
// must start where its name says; and no read follows a link.
func TestReadRefusesWhatTheLogDidNotWrite(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string, rotated []string)
		read   func(dir string) error
		want   string
	}{
		{"a rotated file renamed", func(t *testing.T, dir string, rotated []string) {
			first, _ := nameSeq(rotated[3])
			// Still sorts between its neighbours.
			if err := os.Rename(rotated[3], filepath.Join(dir, fmt.Sprintf("audit-%020d.jsonl", first+1))); err != nil {
				t.Fatal(err)
			}
		}, func(dir string) error {
			first, _ := nameSeq(mustFiles(dir)[3])
			return Read(dir, ReadOptions{FromSeq: first}, func(Entry) error { return nil })
		}, "is named for seq"},
		{"a rotated file renamed, read back", func(t *testing.T, dir string, rotated []string) {
			first, _ := nameSeq(rotated[len(rotated)-1])
			if err := os.Rename(rotated[len(rotated)-1], filepath.Join(dir, fmt.Sprintf("audit-%020d.jsonl", first+1))); err != nil {
				t.Fatal(err)
			}
		}, func(dir string) error {
			return ReadBack(dir, ReadOptions{Last: 1000}, func(Entry) error { return nil })
		}, "is named for seq"},
		{"a rotated file replaced by a link", func(t *testing.T, dir string, rotated []string) {
			b, _ := os.ReadFile(rotated[1])
			other := filepath.Join(t.TempDir(), "elsewhere.jsonl")
			os.WriteFile(other, b, 0o600)
			os.Remove(rotated[1])
			if err := os.Symlink(other, rotated[1]); err != nil {
				t.Fatal(err)
			}
		}, func(dir string) error {
			return Read(dir, ReadOptions{}, func(Entry) error { return nil })
		}, syscall.ELOOP.Error()},
		{"the current file replaced by a link, read back", func(t *testing.T, dir string, rotated []string) {
			cur := filepath.Join(dir, CurrentFile)
			b, _ := os.ReadFile(cur)
			other := filepath.Join(t.TempDir(), "elsewhere.jsonl")
			os.WriteFile(other, b, 0o600)
			os.Remove(cur)
			if err := os.Symlink(other, cur); err != nil {
				t.Fatal(err)
			}
		}, func(dir string) error {
			return ReadBack(dir, ReadOptions{}, func(Entry) error { return Stop })
		}, syscall.ELOOP.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, l := longLog(t, 100)
			l.Close()
			files := mustFiles(dir)
			tt.tamper(t, dir, files[:len(files)-1])
			err := tt.read(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("read = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func mustFiles(dir string) []string {
	f, err := Files(dir)
	if err != nil {
		panic(err)
	}
	return f
}

// Ordered rests on records being in time order along the chain: true
// across rotations and after a gap record (whose time is when it was
// written; its window is in its detail).
func TestRecordTimesAreOrderedAcrossRotationAndGaps(t *testing.T) {
	dir := t.TempDir()
	clock := &stepClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	ff := &faults{}
	l := openLog(t, dir, Options{MaxBytes: 1500, Now: clock.now, CheckpointInterval: -1, openFile: ff.opener()})
	appendN(t, l, 20)
	ff.set(func(f *faults) { f.sync = syscall.EIO })
	for range 3 {
		if err := userAppend(l, "refused"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("append during the outage = %v", err)
		}
	}
	ff.set(func(f *faults) { f.sync = nil })
	appendN(t, l, 20)
	all := records(t, dir)
	gaps := 0
	for i, r := range all {
		if r.Kind == KindGap {
			gaps++
		}
		if i > 0 && r.Time.Before(all[i-1].Time) {
			t.Fatalf("seq %d (%s) at %s is older than seq %d at %s", r.Seq, r.Kind, r.Time, all[i-1].Seq, all[i-1].Time)
		}
	}
	if files, _ := Files(dir); gaps != 1 || len(files) < 3 {
		t.Fatalf("%d gap records in %d files, want 1 in 3 or more", gaps, len(files))
	}
	// And a read from the gap on, by time, starts at the gap.
	var gap Record
	for _, r := range all {
		if r.Kind == KindGap {
			gap = r
		}
	}
	var got []uint64
	if err := Read(dir, ReadOptions{Since: gap.Time, Ordered: true}, func(e Entry) error { got = append(got, e.Record.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0] != gap.Seq || got[len(got)-1] != all[len(all)-1].Seq {
		t.Fatalf("read since the gap = %v, want %d..%d", got, gap.Seq, all[len(all)-1].Seq)
	}
}
