package ratelimit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A flooder who emptied a bucket gets no fresh burst from a restart: the
// new limiter, restored from the file, refills only for the time passed.
func TestRestartKeepsDrainedBuckets(t *testing.T) {
	tests := []struct {
		name     string
		down     time.Duration // between the snapshot and the first check after it
		wantOK   int           // of 10 checks after the restart
		rate     float64
		burst    float64
		clockJmp time.Duration // the new process's clock relative to the old
	}{
		{name: "restart at once", rate: 1, burst: 5, wantOK: 0},
		{name: "down two seconds refills two", rate: 1, burst: 5, down: 2 * time.Second, wantOK: 2},
		{name: "down an hour refills to burst, no more", rate: 1, burst: 5, down: time.Hour, wantOK: 5},
		{name: "clock stepped back grants nothing", rate: 1, burst: 5, clockJmp: -time.Hour, wantOK: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ratelimit")
			l, c := newTest(0)
			for l.allowN("flood", tt.rate, tt.burst, 1) == 1 {
			}
			if err := l.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			c.advance(tt.down + tt.clockJmp)
			l2 := New(Options{Now: c.now})
			if err := l2.ReadFile(path); err != nil {
				t.Fatal(err)
			}
			if got := l2.allowN("flood", tt.rate, tt.burst, 10); got != tt.wantOK {
				t.Fatalf("after restart %d of 10 allowed, want %d", got, tt.wantOK)
			}
			if got := l2.allowN("other", tt.rate, tt.burst, 10); got != int(tt.burst) {
				t.Fatalf("an untouched key got %d, want its burst %v", got, tt.burst)
			}
		})
	}
}

func (l *Limiter) allowN(key string, rate, burst float64, n int) int {
	ok := 0
	for range n {
		if a, _ := l.Allow(key, rate, burst); a {
			ok++
		}
	}
	return ok
}

func TestSnapshotFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ratelimit")
	l, _ := newTest(0)
	l.Allow("a", 1, 3)
	l.Allow("b", 0, 1) // never refills
	if err := l.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot mode %v, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".ratelimit-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	raw, _ := os.ReadFile(path)

	if err := New(Options{}).ReadFile(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("a missing file is a first start: %v", err)
	}
	corrupt := map[string][]byte{
		"empty":          {},
		"truncated":      raw[:len(raw)-5],
		"flipped bit":    flip(raw, 10),
		"other magic":    append([]byte("XXXX"), raw[4:]...),
		"trailing bytes": append(append([]byte{}, raw...), 0),
	}
	for name, b := range corrupt {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "c")
			os.WriteFile(p, b, 0o600)
			if err := New(Options{}).ReadFile(p); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ReadFile = %v, want ErrCorrupt", err)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 1
	return c
}

func TestRestoreNeverGrants(t *testing.T) {
	l, _ := newTest(0)
	l.allowN("k", 0, 3, 3) // empty, never refills
	if err := l.Restore([]State{{Key: "k", Tokens: 3, Rate: 0, Burst: 3}}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.Allow("k", 0, 3); ok {
		t.Fatal("restoring a fuller bucket over an empty one granted a token")
	}
	for _, bad := range []State{{Key: "x", Tokens: -1, Burst: 1}, {Key: "", Burst: 1}, {Key: "x", Rate: -1}} {
		if err := l.Restore([]State{bad}); err == nil {
			t.Errorf("Restore(%+v) accepted", bad)
		}
	}
}

func TestChangesCountsSpends(t *testing.T) {
	l, _ := newTest(0)
	c0 := l.Changes()
	l.Allow("k", 0, 1)
	l.Allow("k", 0, 1) // refused: no change
	if got := l.Changes() - c0; got != 1 {
		t.Fatalf("Changes moved by %d, want 1", got)
	}
	l.Refund("k", 1)
	if got := l.Changes() - c0; got != 2 {
		t.Fatalf("after a refund Changes moved by %d, want 2", got)
	}
}
