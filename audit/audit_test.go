package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

func openLog(t *testing.T, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func appendN(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := l.Append(context.Background(), Record{Kind: "tool", Decision: "deny", Connector: "tg",
			User: fmt.Sprintf("telegram:%d", i), Reasons: []string{"path-outside-workspace"}}); err != nil {
			t.Fatal(err)
		}
	}
}

func mustVerify(t *testing.T, dir string) VerifyReport {
	t.Helper()
	rep, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestChainVerifies(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	appendN(t, l, 50)
	rep := mustVerify(t, dir)
	if !rep.OK() || rep.Records != 50 || rep.HeadSeq != 50 {
		t.Fatalf("report = %+v", rep)
	}
	seq, hash := l.Head()
	if seq != rep.HeadSeq || hash != rep.HeadHash {
		t.Fatalf("head (%d, %s) != verified head (%d, %s)", seq, hash, rep.HeadSeq, rep.HeadHash)
	}
}

// Every kind of tampering is named with its file and line.
func TestVerifyNamesTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(lines []string) []string
		want   string
		line   int
	}{
		{"edited field", func(ls []string) []string {
			ls[4] = strings.Replace(ls[4], `"decision":"deny"`, `"decision":"allow"`, 1)
			return ls
		}, "edited", 5},
		{"edited and rehashed", func(ls []string) []string {
			body, _, _ := split([]byte(ls[4]))
			body = bytes.Replace(body, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1)
			ls[4] = string(body[:len(body)-1]) + `,"hash":"` + digest(body) + `"}`
			return ls
		}, "chain broken", 6},
		{"deleted line", func(ls []string) []string { return append(ls[:3], ls[4:]...) }, "gap: records 4 to 4", 4},
		{"swapped lines", func(ls []string) []string { ls[2], ls[3] = ls[3], ls[2]; return ls }, "gap", 3},
		{"duplicated line", func(ls []string) []string { return append(ls[:3], append([]string{ls[2]}, ls[3:]...)...) }, "out of order or duplicated", 4},
		{"garbage line", func(ls []string) []string { ls[1] = "hello"; return ls }, "not an audit record", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, Options{})
			appendN(t, l, 8)
			l.Close()
			path := filepath.Join(dir, CurrentFile)
			b, _ := os.ReadFile(path)
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			os.WriteFile(path, []byte(strings.Join(tt.tamper(lines), "\n")+"\n"), 0o600)
			rep := mustVerify(t, dir)
			if rep.OK() {
				t.Fatal("tampering not detected")
			}
			p := rep.Problems[0]
			if !strings.Contains(p.What, tt.want) || p.Line != tt.line {
				t.Fatalf("first problem = %s, want %q at line %d (all: %v)", p, tt.want, tt.line, rep.Problems)
			}
		})
	}
}

func TestRotationKeepsTheChain(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{MaxBytes: 2000})
	appendN(t, l, 60)
	files, _ := Files(dir)
	if len(files) < 3 {
		t.Fatalf("expected rotation into several files, got %v", files)
	}
	rep := mustVerify(t, dir)
	if !rep.OK() || rep.Records != 60 {
		t.Fatalf("report after rotation = %+v", rep)
	}
	// Removing a rotated file is a gap.
	os.Remove(files[1])
	if rep := mustVerify(t, dir); rep.OK() || !strings.Contains(rep.Problems[0].What, "gap") {
		t.Fatalf("deleted rotated file not detected: %+v", rep)
	}
}

func TestReopenContinuesChainAndCutsPartialLine(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	appendN(t, l, 3)
	l.Close()
	// A crash in the middle of a write leaves a partial line.
	f, _ := os.OpenFile(filepath.Join(dir, CurrentFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":4,"time":"2026-`)
	f.Close()
	l2 := openLog(t, dir, Options{})
	appendN(t, l2, 2)
	rep := mustVerify(t, dir)
	if !rep.OK() || rep.HeadSeq != 5 {
		t.Fatalf("after reopen: %+v", rep)
	}
}

func TestConcurrentAppendsShareTheChain(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if _, err := l.Append(context.Background(), Record{Kind: "message"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if rep := mustVerify(t, dir); !rep.OK() || rep.Records != 200 {
		t.Fatalf("report = %+v", rep)
	}
}

func TestAppendFailsClosed(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	l.Close()
	if _, err := l.Append(context.Background(), Record{Kind: "tool"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append to a closed log = %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l2 := openLog(t, t.TempDir(), Options{})
	if _, err := l2.Append(ctx, Record{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append with a cancelled context = %v", err)
	}
}

func TestOpenRefusesUnwritableFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	os.WriteFile(file, nil, 0o600)
	if _, err := Open(file, Options{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open on a file = %v", err)
	}
}

// The engine refuses a decision whose record cannot be written.
func TestRecorderRefusesWhenLogUnavailable(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	rec := Recorder{Log: l}
	in := engine.ToolInput{Session: engine.SessionFacts{ID: "s1", Identity: "telegram:1", Connector: "tg", TrustLevel: "sandboxed"},
		Tool: engine.ToolFacts{Name: "write_file"}, Paths: []engine.PathFacts{{Raw: "../x", Error: "outside"}}}
	d := &engine.Decision{ID: "d1", Entry: engine.Tool, Reasons: []string{"invalid-path"}}
	if err := rec.Record(context.Background(), in, d); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := rec.Record(context.Background(), in, d); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("record on closed log = %v", err)
	}
}

func TestFormatAndFilter(t *testing.T) {
	r := FromDecision(engine.ToolInput{
		Session: engine.SessionFacts{ID: "s1", TurnID: "t1", Identity: "telegram:42", Connector: "tg", TrustLevel: "direct", Workspace: "users/telegram%3A42"},
		Tool:    engine.ToolFacts{Name: "write_file"},
		Paths:   []engine.PathFacts{{Raw: "a b", Resolved: "users/telegram%3A42/a b"}},
	}, &engine.Decision{ID: "d1", Entry: engine.Tool, Allow: false, Reasons: []string{"read-only-mode", "hooks-write-forbidden"}})
	r.Time = time.Date(2026, 11, 25, 5, 0, 0, 0, time.UTC)
	line := Format(r)
	for _, want := range []string{"connector=tg", "session_id=s1", "trust_level=direct", "decision=deny",
		`path="users/telegram%3A42/a b"`, "reasons=read-only-mode,hooks-write-forbidden", "turn_id=t1"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	tests := []struct {
		filter []string
		want   bool
	}{
		{[]string{"connector=tg"}, true},
		{[]string{"connector=tg", "trust_level=direct"}, true},
		{[]string{"reasons=hooks-write-forbidden"}, true},
		{[]string{"reasons=hooks"}, false},
		{[]string{"decision=allow"}, false},
		{[]string{"connector=discord"}, false},
		{[]string{"model=x"}, false},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Match(Fields(r)); got != tt.want {
			t.Errorf("filter %v = %v, want %v", tt.filter, got, tt.want)
		}
	}
	if _, err := ParseFilter([]string{"connector"}); err == nil {
		t.Error("filter without = accepted")
	}
}

func TestReadAndFollow(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{MaxBytes: 1500})
	appendN(t, l, 5)
	var got []uint64
	if err := Read(dir, ReadOptions{Filter: Filter{"user": "telegram:3"}}, func(e Entry) error {
		got = append(got, e.Record.Seq)
		return nil
	}); err != nil || len(got) != 1 || got[0] != 4 {
		t.Fatalf("Read filtered = %v, %v", got, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan uint64, 100)
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, dir, ReadOptions{}, 10*time.Millisecond, func(e Entry) error { seen <- e.Record.Seq; return nil })
	}()
	appendN(t, l, 20) // crosses rotations
	var last uint64
	timeout := time.After(5 * time.Second)
	for last < 25 {
		select {
		case s := <-seen:
			if s != last+1 {
				t.Fatalf("follow delivered seq %d after %d", s, last)
			}
			last = s
		case <-timeout:
			t.Fatalf("follow stopped at seq %d of 25", last)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func BenchmarkAppendDurable(b *testing.B) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	benchAppend(b, l)
}

// With checkpoints on as the gateway runs them: one in every 1000 appends
// also signs and writes the checkpoint file.
func BenchmarkAppendDurableCheckpoints(b *testing.B) {
	state := b.TempDir()
	key, err := OpenKey(filepath.Join(state, KeyFileName))
	if err != nil {
		b.Fatal(err)
	}
	l, err := Open(filepath.Join(state, "audit"), Options{Signer: key})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	benchAppend(b, l)
}

func BenchmarkAppendDurableParallel(b *testing.B) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := Record{Kind: "tool", Decision: "allow", Connector: "tg", User: "telegram:1", Tool: "read_file"}
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchAppend(b *testing.B, l *Log) {
	r := Record{Kind: "tool", Decision: "allow", Connector: "tg", User: "telegram:1", SessionID: "s1",
		Tool: "read_file", Path: "users/telegram%3A1/notes.md", Reasons: []string{}, PolicyRevision: "0123456789abcdef"}
	lat := make([]time.Duration, 0, 1<<14)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := l.Append(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	sortDurations(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func sortDurations(d []time.Duration) { slices.Sort(d) }
