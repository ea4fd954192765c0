package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
)

// diskFile stands in for the disk: it keeps what was written and how much
// of it the last successful fsync made durable (what was written before
// that fsync began), so a test can check what an acknowledged append
// claims against what is really on disk.
type diskFile struct {
	*os.File
	mu       sync.Mutex
	data     []byte
	durable  int           // bytes of data known durable
	syncs    int           // Sync calls
	failN    int           // every failN-th Sync fails with EIO (0: never)
	hold     chan struct{} // if set, the next Sync waits until it is closed
	inSync   chan struct{} // closed when a held Sync has begun
	written  *sync.Cond    // broadcast on every Write
	lastSync []int         // data length at the start of each successful Sync
}

func newDiskFile() *diskFile {
	d := &diskFile{}
	d.written = sync.NewCond(&d.mu)
	return d
}

func (d *diskFile) opener() func(string) (file, error) {
	return func(name string) (file, error) {
		f, err := openOSFile(name)
		if err != nil {
			return nil, err
		}
		d.File = f.(*os.File)
		return d, nil
	}
}

func (d *diskFile) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.data = append(d.data, p...)
	d.written.Broadcast()
	return d.File.Write(p)
}

func (d *diskFile) Truncate(size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.data = d.data[:size]
	d.durable = min(d.durable, int(size))
	return d.File.Truncate(size)
}

func (d *diskFile) Sync() error {
	d.mu.Lock()
	d.syncs++
	n, fail := len(d.data), d.failN > 0 && d.syncs%d.failN == 0
	hold, began := d.hold, d.inSync
	d.hold = nil
	d.mu.Unlock()
	if hold != nil {
		close(began)
		<-hold
	}
	if fail {
		return syscall.EIO
	}
	if err := d.File.Sync(); err != nil {
		return err
	}
	d.mu.Lock()
	d.durable = max(d.durable, n)
	d.lastSync = append(d.lastSync, n)
	d.mu.Unlock()
	return nil
}

// durableLines is how many complete lines are durable: without a signer
// and rotation, line i holds seq i.
func (d *diskFile) durableLines() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return uint64(bytes.Count(d.data[:d.durable], []byte("\n")))
}

// waitLines waits until n lines were written.
func (d *diskFile) waitLines(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for bytes.Count(d.data, []byte("\n")) < n {
		d.written.Wait()
	}
}

// 8 writers at once, every third fsync failing: every append that returns
// nil has its record on disk at that moment (never acknowledged before an
// fsync that began after its write succeeded), and every one refused is
// not in the log.
func TestGroupCommitNeverAcknowledgesBeforeDurable(t *testing.T) {
	d := newDiskFile()
	d.failN = 3
	dir := t.TempDir()
	l, err := Open(dir, Options{CheckpointInterval: -1, openFile: d.opener()})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		ok  = map[string]bool{}
		bad int
		wg  sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				u := fmt.Sprintf("w%d-%d", w, i)
				r, err := l.Append(context.Background(), Record{Kind: "tool", Decision: "allow", User: u})
				mu.Lock()
				if err == nil {
					ok[u] = true
					if got := d.durableLines(); got < r.Seq {
						bad++
						t.Errorf("append of %s (seq %d) acknowledged with %d lines durable", u, r.Seq, got)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	d.mu.Lock()
	d.failN = 0
	d.mu.Unlock()
	if _, err := l.Append(context.Background(), Record{Kind: "tool", User: "final"}); err != nil {
		t.Fatal(err)
	}
	ok["final"] = true
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(ok) == 8*40+1 {
		t.Fatal("no append was refused; the fault did not fire")
	}
	seen := 0
	for _, r := range records(t, dir) {
		if r.Kind == "tool" {
			if !ok[r.User] {
				t.Errorf("record of %s is in the log, but its append was refused", r.User)
			}
			seen++
		}
	}
	if seen != len(ok) {
		t.Errorf("%d records in the log, %d appends succeeded", seen, len(ok))
	}
	if rep, err := Verify(dir); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify: %v %v", err, rep.Problems)
	}
}

// Appends that arrive while an fsync runs share the next one: with the
// first fsync held until seven more records are written, eight appends
// take two fsyncs, and the second covers all seven.
func TestGroupCommitSharesOneFsync(t *testing.T) {
	d := newDiskFile()
	hold, began := make(chan struct{}), make(chan struct{})
	d.hold, d.inSync = hold, began
	l, err := Open(t.TempDir(), Options{CheckpointInterval: -1, openFile: d.opener()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errs := make(chan error, 8)
	app := func(u string) {
		_, err := l.Append(context.Background(), Record{Kind: "tool", User: u})
		errs <- err
	}
	go app("leader")
	<-began
	for i := range 7 {
		go app(fmt.Sprintf("follower-%d", i))
	}
	d.waitLines(8)
	close(hold)
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.syncs != 2 || l.Syncs() != 2 {
		t.Fatalf("8 appends took %d fsyncs (log counted %d), want 2: the 7 written during the first must share the second", d.syncs, l.Syncs())
	}
	if d.lastSync[1] != len(d.data) {
		t.Fatalf("second fsync began with %d of %d bytes written", d.lastSync[1], len(d.data))
	}
}
