package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// faults make the log's files fail as a full or broken disk does.
type faults struct {
	mu      sync.Mutex
	write   error // every Write fails with it
	partial bool  // after writing half of the bytes
	sync    error // every Sync fails with it
	syncN   int   // or: every syncN-th Sync fails with EIO
	syncs   int
}

func (f *faults) set(fn func(*faults)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type faultyFile struct {
	*os.File
	f *faults
}

func (ff faultyFile) Write(p []byte) (int, error) {
	ff.f.mu.Lock()
	err, partial := ff.f.write, ff.f.partial
	ff.f.mu.Unlock()
	if err == nil {
		return ff.File.Write(p)
	}
	if partial {
		n, _ := ff.File.Write(p[:len(p)/2])
		return n, err
	}
	return 0, err
}

// Sync fails after the bytes reached the file: what the kernel does not
// promise is that they are on disk.
func (ff faultyFile) Sync() error {
	ff.f.mu.Lock()
	ff.f.syncs++
	err := ff.f.sync
	if ff.f.syncN > 0 && ff.f.syncs%ff.f.syncN == 0 {
		err = syscall.EIO
	}
	ff.f.mu.Unlock()
	if err != nil {
		return err
	}
	return ff.File.Sync()
}

func (f *faults) opener() func(string) (file, error) {
	return func(name string) (file, error) {
		osf, err := openOSFile(name)
		if err != nil {
			return nil, err
		}
		return faultyFile{File: osf.(*os.File), f: f}, nil
	}
}

func records(t *testing.T, dir string) []Record {
	t.Helper()
	var out []Record
	if err := Read(dir, ReadOptions{}, func(e Entry) error { out = append(out, e.Record); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func userAppend(l *Log, user string) error {
	_, err := l.Append(context.Background(), Record{Kind: "tool", Decision: "allow", User: user})
	return err
}

// While the disk refuses writes every append is refused and counted, the
// log says it is unhealthy, and the first append that succeeds is preceded
// by a gap record naming the window and the count. No refused record is
// left in the file, even one whose bytes were written before its fsync
// failed.
func TestOutageIsRefusedCountedAndRecorded(t *testing.T) {
	tests := []struct {
		name string
		fail func(*faults)
		want string
	}{
		{"disk full", func(f *faults) { f.write = syscall.ENOSPC }, "no space left on device"},
		{"disk full mid-line", func(f *faults) { f.write, f.partial = syscall.ENOSPC, true }, "no space left on device"},
		{"fsync fails", func(f *faults) { f.sync = syscall.EIO }, "input/output error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSigned(t)
			ff := &faults{}
			opts := s.opts(1000)
			opts.openFile = ff.opener()
			l := openLog(t, s.dir, opts)
			for _, u := range []string{"before-1", "before-2"} {
				if err := userAppend(l, u); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Healthy(); err != nil {
				t.Fatalf("healthy log: %v", err)
			}
			ff.set(tt.fail)
			for i := range 4 {
				if err := userAppend(l, fmt.Sprintf("refused-%d", i)); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("append during the outage = %v, want ErrUnavailable", err)
				}
			}
			err := l.Healthy()
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "4 append(s) refused") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Healthy during the outage = %v", err)
			}
			if l.Refused() != 4 {
				t.Fatalf("Refused = %d", l.Refused())
			}
			ff.set(func(f *faults) { f.write, f.partial, f.sync, f.syncN = nil, false, nil, 0 })
			if err := userAppend(l, "after"); err != nil {
				t.Fatalf("append after recovery: %v", err)
			}
			if err := l.Healthy(); err != nil {
				t.Fatalf("Healthy after recovery: %v", err)
			}
			l.Close()
			var got []string
			var gap Record
			for _, r := range records(t, s.dir) {
				got = append(got, string(r.Kind)+":"+r.User)
				if r.Kind == KindGap {
					gap = r
				}
			}
			if want := "checkpoint:,tool:before-1,tool:before-2,gap:,tool:after,checkpoint:"; strings.Join(got, ",") != want {
				t.Fatalf("records = %s\nwant      %s", strings.Join(got, ","), want)
			}
			from, _ := time.Parse(time.RFC3339Nano, gap.Detail["from"])
			to, _ := time.Parse(time.RFC3339Nano, gap.Detail["to"])
			if gap.Detail["refused"] != "4" || from.IsZero() || to.Before(from) || gap.Time.Before(to) || !strings.Contains(gap.Error, tt.want) {
				t.Fatalf("gap record = %+v", gap)
			}
			rep, err := VerifyWith(s.dir, s.anchor(t))
			if err != nil || !rep.OK() || len(rep.Gaps) != 1 || rep.Gaps[0].Refused != 4 || rep.Gaps[0].Seq != 4 {
				t.Fatalf("verify: %v %+v", err, rep)
			}
		})
	}
}

// Group commit with failing fsyncs: exactly the appends that returned nil
// are in the log, and the gap records count exactly the others.
func TestConcurrentAppendsWithFailingFsyncs(t *testing.T) {
	s := newSigned(t)
	ff := &faults{}
	opts := s.opts(7)
	opts.openFile = ff.opener()
	opts.MaxBytes = 4000 // rotations too
	l := openLog(t, s.dir, opts)
	ff.set(func(f *faults) { f.syncN = 3 })
	var (
		mu       sync.Mutex
		ok       = map[string]bool{}
		failures int
		wg       sync.WaitGroup
	)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				u := fmt.Sprintf("u%d-%d", g, i)
				err := userAppend(l, u)
				mu.Lock()
				if err == nil {
					ok[u] = true
				} else {
					failures++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	ff.set(func(f *faults) { f.write, f.partial, f.sync, f.syncN = nil, false, nil, 0 })
	if err := userAppend(l, "final"); err != nil {
		t.Fatal(err)
	}
	ok["final"] = true
	l.Close()
	if failures == 0 {
		t.Fatal("no append failed; the fault did not fire")
	}
	var refused int
	seen := map[string]bool{}
	for _, r := range records(t, s.dir) {
		switch r.Kind {
		case KindGap:
			n, _ := strconv.Atoi(r.Detail["refused"])
			refused += n
		case "tool":
			if !ok[r.User] {
				t.Errorf("record of %s is in the log, but its append was refused", r.User)
			}
			seen[r.User] = true
		}
	}
	for u := range ok {
		if !seen[u] {
			t.Errorf("append of %s succeeded, but its record is not in the log", u)
		}
	}
	if refused != failures {
		t.Errorf("gap records count %d refused appends, %d were refused", refused, failures)
	}
	if rep, err := VerifyWith(s.dir, s.anchor(t)); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// With nothing to append, the timer finds the disk writable again: the gap
// is recorded and the log healthy without waiting for traffic.
func TestTimerRecoversAnIdleLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		ff := &faults{}
		l, err := Open(dir, Options{CheckpointInterval: time.Minute, openFile: ff.opener()})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ff.set(func(f *faults) { f.write = syscall.ENOSPC })
		if err := userAppend(l, "refused"); err == nil {
			t.Fatal("append on a full disk succeeded")
		}
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if l.Healthy() == nil {
			t.Fatal("healthy while the disk is still full")
		}
		ff.set(func(f *faults) { f.write, f.partial, f.sync, f.syncN = nil, false, nil, 0 })
		time.Sleep(time.Minute)
		synctest.Wait()
		if err := l.Healthy(); err != nil {
			t.Fatalf("not healthy after the disk recovered: %v", err)
		}
		if rs := records(t, dir); len(rs) != 1 || rs[0].Kind != KindGap || rs[0].Detail["refused"] != "2" {
			t.Fatalf("records = %+v", rs)
		}
	})
}

// needRoot skips a test that needs root, or fails it under CI=true.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s needs root, and CI=true", why)
	}
	t.Skipf("skipping: %s needs root (set CI=true to make this a failure)", why)
}

// The same on a real full file system: a 64 KiB tmpfs.
func TestFullTmpfs(t *testing.T) {
	needRoot(t, "mounting a tmpfs")
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Skipf("skipping: cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	s := newSigned(t)
	s.dir = filepath.Join(mnt, "audit")
	l := openLog(t, s.dir, s.opts(1000))
	if err := userAppend(l, "before"); err != nil {
		t.Fatal(err)
	}
	// Fill the file system.
	filler := filepath.Join(mnt, "filler")
	f, _ := os.Create(filler)
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	// The current file's last page may still take a line or two.
	refused, written := 0, 0
	for refused < 3 && written < 100 {
		err := userAppend(l, fmt.Sprintf("try-%d", written+refused))
		switch {
		case err == nil && refused == 0:
			written++
		case errors.Is(err, ErrUnavailable) && errors.Is(err, syscall.ENOSPC):
			refused++
		default:
			t.Fatalf("append on a full tmpfs after %d refused: %v", refused, err)
		}
	}
	if refused != 3 || l.Healthy() == nil {
		t.Fatalf("on a full tmpfs: %d appends refused with ENOSPC, healthy = %v", refused, l.Healthy())
	}
	os.Remove(filler)
	if err := userAppend(l, "after"); err != nil {
		t.Fatal(err)
	}
	if err := l.Healthy(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	rep, err := VerifyWith(s.dir, s.anchor(t))
	if err != nil || !rep.OK() || len(rep.Gaps) != 1 || rep.Gaps[0].Refused != 3 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}
