package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// signedLog is a state folder with a key and a signed log in state/audit.
type signedLog struct {
	state, dir string
	key        *Signer
	logs       *logBuffer
}

func newSigned(t *testing.T) *signedLog {
	t.Helper()
	state := t.TempDir()
	key, err := OpenKey(filepath.Join(state, "audit-key"))
	if err != nil {
		t.Fatal(err)
	}
	return &signedLog{state: state, dir: filepath.Join(state, "audit"), key: key, logs: &logBuffer{}}
}

func (s *signedLog) opts(every uint64) Options {
	return Options{Signer: s.key, CheckpointEvery: every, CheckpointInterval: -1, Logger: slog.New(slog.NewJSONHandler(s.logs, nil))}
}

func (s *signedLog) anchor(t *testing.T) VerifyOptions {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.state, CheckpointFileName))
	if err != nil {
		t.Fatal(err)
	}
	pub := s.key.Public()
	return VerifyOptions{Key: &pub, Anchor: string(b), AnchorName: CheckpointFileName}
}

// logBuffer collects the process log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) lines(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rechain renumbers and re-hashes lines as an attacker without the key can:
// a consistent hash chain over whatever the lines now say.
func rechain(t *testing.T, lines []string) []string {
	t.Helper()
	prev := Genesis
	out := make([]string, 0, len(lines))
	l := &Log{}
	for i, line := range lines {
		body, _, ok := split([]byte(line))
		if !ok {
			t.Fatalf("line %d is not a record", i+1)
		}
		var r Record
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		r.Seq, r.Prev = uint64(i+1), prev
		enc, hash, err := l.encode(&r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimRight(string(enc), "\n"))
		prev = hash
	}
	return out
}

func kinds(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	if err := Read(dir, ReadOptions{}, func(e Entry) error { out = append(out, string(e.Record.Kind)); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCheckpointsAreSignedRecordsAndProcessLogLines(t *testing.T) {
	s := newSigned(t)
	l := openLog(t, s.dir, s.opts(10))
	appendN(t, l, 25)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// seq 1: start (signs the empty log); then one after every 10 records;
	// the last at Close.
	got := kinds(t, s.dir)
	var at []int
	for i, k := range got {
		if Kind(k) == KindCheckpoint {
			at = append(at, i+1)
		}
	}
	if want := []int{1, 12, 23, 29}; len(at) != len(want) || at[0] != 1 || at[1] != 12 || at[2] != 23 || at[3] != 29 {
		t.Fatalf("checkpoints at seq %v, want %v", at, want)
	}
	rep, err := VerifyWith(s.dir, s.anchor(t))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Checkpoints != 4 || rep.UnsignedTail != 0 || len(rep.Warnings) != 0 || rep.Last.Seq != 29 {
		t.Fatalf("report = %+v", rep)
	}
	lines := s.logs.lines("audit checkpoint")
	if len(lines) != 4 {
		t.Fatalf("%d checkpoint lines in the process log, want 4", len(lines))
	}
	last := lines[3]
	note, _ := last["note"].(string)
	c, err := VerifyCheckpoint(note, s.key.Public())
	if err != nil || c.Size != 28 || last["key_id"] != s.key.Public().KeyID() {
		t.Fatalf("process log line %v: %v %+v", last, err, c)
	}
	// The anchored line is what verify checks the log against.
	rep, _ = VerifyWith(s.dir, VerifyOptions{Key: ptr(s.key.Public()), Anchor: note, AnchorName: "journal"})
	if !rep.OK() {
		t.Fatalf("anchored with the process log line: %v", rep.Problems)
	}
	// The key file and its public key.
	st, err := os.Stat(s.key.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v %v", st.Mode(), err)
	}
	pub, err := LoadPublicKey(s.key.Path + PublicKeySuffix)
	if err != nil || pub.String() != s.key.Public().String() {
		t.Fatalf("public key file: %v %v", pub, err)
	}
}

func ptr[T any](v T) *T { return &v }

// What an attacker who can write the audit folder, but not read the key,
// does to the log; each is named, with its place.
func TestSignedVerifyRejectsTampering(t *testing.T) {
	other, err := OpenKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		tamper    func(t *testing.T, lines []string) []string
		anchor    bool   // verify against the checkpoint file
		want      string // in a problem ("" = OK)
		wantWarn  string
		wantSeq   uint64
		wantTotal int
	}{
		{name: "intact", anchor: true},
		{name: "cut the last 5 lines, anchored", anchor: true, tamper: func(t *testing.T, ls []string) []string { return ls[:len(ls)-5] },
			want: "truncated: the log ends at seq 24", wantSeq: 24},
		{name: "cut the last 5 lines, log alone: an unsigned tail", tamper: func(t *testing.T, ls []string) []string { return ls[:len(ls)-5] },
			wantWarn: "unsigned tail: 1 records after checkpoint at seq 23"},
		{name: "cut below the last two checkpoints, anchored", anchor: true, tamper: func(t *testing.T, ls []string) []string { return ls[:15] },
			want: "truncated", wantSeq: 15},
		{name: "deny edited into allow and re-chained", tamper: func(t *testing.T, ls []string) []string {
			ls[4] = strings.Replace(ls[4], `"decision":"deny"`, `"decision":"allow"`, 1)
			return rechain(t, ls)
		}, want: "checkpoint signs a head hash the chain does not have", wantSeq: 12},
		{name: "every checkpoint removed and re-chained", tamper: func(t *testing.T, ls []string) []string {
			var keep []string
			for _, l := range ls {
				if !strings.Contains(l, `"kind":"checkpoint"`) {
					keep = append(keep, l)
				}
			}
			return rechain(t, keep)
		}, want: "no checkpoint signed by key", wantSeq: 25},
		{name: "a middle checkpoint removed and re-chained", tamper: func(t *testing.T, ls []string) []string {
			return rechain(t, append(ls[:11:11], ls[12:]...))
		}, want: "checkpoint", wantSeq: 22},
		{name: "re-chained and re-signed with another key", tamper: func(t *testing.T, ls []string) []string {
			ls[4] = strings.Replace(ls[4], `"decision":"deny"`, `"decision":"allow"`, 1)
			return resign(t, rechain(t, ls), other)
		}, want: "signed by key parachute-audit+", wantSeq: 1},
		{name: "records appended without checkpoints", tamper: func(t *testing.T, ls []string) []string {
			for i := 0; i < 12; i++ {
				ls = append(ls, ls[2])
			}
			return rechain(t, ls)
		}, want: "checkpoint missing: 12 records after the checkpoint at seq 29", wantSeq: 41},
		{name: "checkpoint note swapped for an older one", tamper: func(t *testing.T, ls []string) []string {
			var a, b Record
			json.Unmarshal([]byte(ls[11]), &a)
			json.Unmarshal([]byte(ls[22]), &b)
			ls[22] = strings.Replace(ls[22], jsonString(b.Detail["note"]), jsonString(a.Detail["note"]), 1)
			return rechain(t, ls)
		}, want: "checkpoint signs seq 11, not the record before it (22)", wantSeq: 23},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSigned(t)
			l := openLog(t, s.dir, s.opts(10))
			appendN(t, l, 25)
			l.Close()
			path := filepath.Join(s.dir, CurrentFile)
			if tt.tamper != nil {
				writeLines(t, path, tt.tamper(t, readLines(t, path)))
			}
			opts := VerifyOptions{Key: ptr(s.key.Public())}
			if tt.anchor {
				opts = s.anchor(t)
			}
			rep, err := VerifyWith(s.dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if !rep.OK() {
					t.Fatalf("problems: %v", rep.Problems)
				}
			} else {
				var found *Problem
				for i, p := range rep.Problems {
					if strings.Contains(p.What, tt.want) {
						found = &rep.Problems[i]
						break
					}
				}
				if found == nil {
					t.Fatalf("no problem %q in %v", tt.want, rep.Problems)
				}
				if found.Seq != tt.wantSeq || found.File != path || found.Line == 0 {
					t.Fatalf("problem at %s, want seq %d in %s", found, tt.wantSeq, path)
				}
			}
			if tt.wantWarn != "" && (len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0].What, tt.wantWarn)) {
				t.Fatalf("warnings %v, want %q", rep.Warnings, tt.wantWarn)
			}
			// Without the key the same log is only a hash chain, and says so.
			plain, _ := Verify(s.dir)
			if plain.Signed {
				t.Fatal("a report without a key claims to be signed")
			}
		})
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// resign replaces every checkpoint's note with one signed by key over the
// re-chained head, as an attacker with their own key would.
func resign(t *testing.T, lines []string, key *Signer) []string {
	t.Helper()
	prev := Genesis
	l := &Log{}
	for i, line := range lines {
		body, _, _ := split([]byte(line))
		var r Record
		json.Unmarshal(body, &r)
		r.Seq, r.Prev = uint64(i+1), prev
		if r.Kind == KindCheckpoint {
			note, err := key.sign(Checkpoint{Origin: KeyName, Size: r.Seq - 1, Hash: prev, Time: r.Time, Interval: 10})
			if err != nil {
				t.Fatal(err)
			}
			r.Detail["note"] = note
		}
		enc, hash, _ := l.encode(&r)
		lines[i], prev = strings.TrimRight(string(enc), "\n"), hash
	}
	return lines
}

// A record the writer never writes (a repeated or re-cased key) could be
// read one way by verify and another by logs: refused.
func TestVerifyRefusesNonCanonicalLines(t *testing.T) {
	tests := []struct{ name, from, to string }{
		{"duplicate key", `"decision":"deny"`, `"decision":"deny","decision":"allow"`},
		{"re-cased key", `"decision":"deny"`, `"Decision":"allow","decision":"deny"`},
		{"unknown key", `"decision":"deny"`, `"decision":"deny","approved":true`},
		{"other escaping", `"connector":"tg"`, `"connector":"\u0074g"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, Options{})
			appendN(t, l, 3)
			l.Close()
			path := filepath.Join(dir, CurrentFile)
			lines := readLines(t, path)
			if !strings.Contains(lines[1], tt.from) {
				t.Fatalf("%q not in %s", tt.from, lines[1])
			}
			// The edited line is re-hashed over its bytes as they are.
			body, _, _ := split([]byte(strings.Replace(lines[1], tt.from, tt.to, 1)))
			lines[1] = string(body[:len(body)-1]) + `,"hash":"` + digest(body) + `"}`
			writeLines(t, path, lines[:2])
			rep := mustVerify(t, dir)
			if rep.OK() || !strings.Contains(rep.Problems[0].What, "not as the log writes it") || rep.Problems[0].Line != 2 {
				t.Fatalf("problems = %v", rep.Problems)
			}
		})
	}
}

func TestOpenRefusesALogCutBelowItsCheckpoint(t *testing.T) {
	s := newSigned(t)
	l := openLog(t, s.dir, s.opts(10))
	appendN(t, l, 25)
	l.Close()
	path := filepath.Join(s.dir, CurrentFile)
	writeLines(t, path, readLines(t, path)[:20])
	_, err := Open(s.dir, s.opts(10))
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "ends at seq 20") || !strings.Contains(err.Error(), "audit verify") {
		t.Fatalf("Open of a cut log = %v", err)
	}
	// Re-chained to the same length with a different record: also refused.
	s2 := newSigned(t)
	l2 := openLog(t, s2.dir, s2.opts(10))
	appendN(t, l2, 25)
	l2.Close()
	path = filepath.Join(s2.dir, CurrentFile)
	lines := readLines(t, path)
	lines[4] = strings.Replace(lines[4], `"decision":"deny"`, `"decision":"allow"`, 1)
	writeLines(t, path, rechain(t, lines))
	if _, err := Open(s2.dir, s2.opts(10)); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("Open of a re-chained log = %v", err)
	}
}

func TestReopenSignsTheCrashTailOnce(t *testing.T) {
	s := newSigned(t)
	l, err := Open(s.dir, s.opts(100))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3)
	// kill -9: no Close, so no closing checkpoint.
	l2 := openLog(t, s.dir, s.opts(100))
	l2.Close()
	l3 := openLog(t, s.dir, s.opts(100)) // the head is a checkpoint: none added
	l3.Close()
	if got := strings.Join(kinds(t, s.dir), ","); got != "checkpoint,tool,tool,tool,checkpoint" {
		t.Fatalf("kinds = %s", got)
	}
	l.Close()
}

func TestTimerSignsTheHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSigned(t)
		opts := s.opts(1000)
		opts.CheckpointInterval = time.Minute
		l, err := Open(s.dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		appendN(t, l, 2)
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if got := strings.Join(kinds(t, s.dir), ","); got != "checkpoint,tool,tool,checkpoint" {
			t.Fatalf("kinds after a minute = %s", got)
		}
		// Nothing new: the next tick adds nothing.
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(kinds(t, s.dir)); n != 4 {
			t.Fatalf("%d records after an idle minute, want 4", n)
		}
	})
}

func TestKeyFileIsCheckedBeforeUse(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		want  string
	}{
		{"readable by others", func(t *testing.T, path string) { os.Chmod(path, 0o644) }, "chmod 600"},
		{"a symlink", func(t *testing.T, path string) {
			os.Rename(path, path+".real")
			os.Symlink(path+".real", path)
		}, "symbolic link"},
		{"not a key", func(t *testing.T, path string) { os.WriteFile(path, []byte("hello\n"), 0o600) }, "not a private key"},
		{"public key of another key", func(t *testing.T, path string) {
			k, _ := parsePrivateKey(mustRead(t, path))
			other := ed25519.NewKeyFromSeed(make([]byte, 32))
			os.WriteFile(path+PublicKeySuffix, []byte(PublicKey{Name: KeyName, ID: keyID(KeyName, other.Public().(ed25519.PublicKey)), Key: other.Public().(ed25519.PublicKey)}.String()+"\n"), 0o644)
			_ = k
		}, "does not hold the public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit-key")
			if _, err := OpenKey(path); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, path)
			if _, err := OpenKey(path); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("OpenKey = %v, want %q", err, tt.want)
			}
		})
	}
	// Reopened, the same key; a lost public key is written again.
	path := filepath.Join(t.TempDir(), "audit-key")
	a, _ := OpenKey(path)
	os.Remove(path + PublicKeySuffix)
	b, err := OpenKey(path)
	if err != nil || a.Public().String() != b.Public().String() {
		t.Fatalf("reopened key differs: %v", err)
	}
	if _, err := os.Stat(path + PublicKeySuffix); err != nil {
		t.Fatal(err)
	}
	// The key may not live in the folder it protects.
	dir := t.TempDir()
	inner, _ := OpenKey(filepath.Join(dir, "audit-key"))
	if _, err := Open(dir, Options{Signer: inner}); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "inside the audit folder") {
		t.Fatalf("Open with the key inside the log folder = %v", err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckpointNoteRoundTrip(t *testing.T) {
	key, _ := OpenKey(filepath.Join(t.TempDir(), "k"))
	c := Checkpoint{Origin: KeyName, Size: 41, Hash: digest([]byte("x")), Time: time.Date(2026, 12, 1, 0, 0, 0, 5, time.UTC), Interval: 1000}
	note, err := key.sign(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyCheckpoint(note, key.Public())
	if err != nil || got.Size != 41 || got.Hash != c.Hash || !got.Time.Equal(c.Time) || got.Interval != 1000 {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{
		strings.Replace(note, "\n41\n", "\n42\n", 1),
		strings.Replace(note, "interval 1000", "interval 9999", 1),
		note[:len(note)-1],
		strings.Replace(note, "\u2014", "-", 1),
		note + "\u2014 x AAAA\n",
	} {
		if _, err := VerifyCheckpoint(bad, key.Public()); err == nil {
			t.Errorf("altered note verified:\n%s", bad)
		}
	}
}
