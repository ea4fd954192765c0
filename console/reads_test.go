package console_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/bits"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/console"
)

// countingBackend counts the console's reads of the audit log.
type countingBackend struct {
	*fakeBackend
	stats audit.ReadStats
}

func (c *countingBackend) AuditReadStats() *audit.ReadStats { return &c.stats }

// stepClock moves on 10 s at every reading: the log's clock.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(10 * time.Second)
	return c.t
}

func (c *stepClock) peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// decisionID is an ID as the engine makes them: 48 bits of Unix
// milliseconds, then 80 more bits (here the seq, for reading).
func decisionID(t time.Time, n int) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	b[15] = byte(n)
	b[14] = byte(n >> 8)
	return hex.EncodeToString(b[:])
}

const (
	longRecords = 3000
	// In the middle of the log: a recorded decision for the playground
	// and a turn for the trace.
	decisionSeq = 800
	turnSeq     = 1200
)

// longFixture serves a console over a log of longRecords records in about
// 200 files, one record every 10 s. Every rotated file that holds none of
// what the pages below need keeps only its first line intact (a file's
// first record is how a read finds where to start) and has the rest
// replaced by lines that are not records: a page that reads it fails.
func longFixture(t *testing.T) (*fixture, *countingBackend, string, string) {
	t.Helper()
	fb := newBackend(t)
	fb.log.Close()
	fb.dir = filepath.Join(t.TempDir(), "audit")
	clk := &stepClock{t: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	l, err := audit.Open(fb.dir, audit.Options{MaxBytes: 4096, Now: clk.now, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	fb.log = l
	var decID, turn string
	for i := 1; i <= longRecords; i++ {
		r := audit.Record{Kind: "tool", Decision: "deny", Connector: "tg", User: fmt.Sprintf("telegram:%d", i), Reasons: []string{"path-outside-workspace"}}
		switch {
		case i == decisionSeq:
			decID = decisionID(clk.peek(), i)
			r.DecisionID, r.Decision, r.Reasons = decID, "allow", nil
			r.Input = []byte(`{"tool":{"name":"read_file"},"paths":[]}`)
		case i == turnSeq:
			turn = decisionID(clk.peek(), i)
			r = audit.Record{Kind: "message", Decision: "allow", DecisionID: turn, Connector: "tg", User: "telegram:1"}
		case i > turnSeq && i <= turnSeq+3:
			r.TurnID = turn
		}
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	needed := [][2]uint64{{longRecords - 150, longRecords}, {390, 520}, {decisionSeq - 10, decisionSeq + 10}, {turnSeq - 10, turnSeq + 3 + 70}}
	files, _ := audit.Files(fb.dir)
	spoiled := 0
	for i, p := range files[:len(files)-1] {
		first, last := firstSeqOf(t, p), firstSeqOf(t, files[i+1])-1
		keep := false
		for _, n := range needed {
			keep = keep || (first <= n[1] && last >= n[0])
		}
		if !keep {
			b, _ := os.ReadFile(p)
			line, rest, _ := bytes.Cut(b, []byte("\n"))
			_ = os.WriteFile(p, append(append(line, '\n'), bytes.Repeat([]byte("not a record\n"), bytes.Count(rest, []byte("\n")))...), 0o600)
			spoiled++
		}
	}
	if len(files) < 150 || spoiled < len(files)*2/3 {
		t.Fatalf("%d files, %d spoiled: not the log this test means", len(files), spoiled)
	}
	cb := &countingBackend{fakeBackend: fb}
	srvClk := &clock{t: clk.peek()}
	f := newFixtureWith(t, cb, srvClk)
	return f, cb, decID, turn
}

func firstSeqOf(t *testing.T, path string) uint64 {
	t.Helper()
	b, _ := os.ReadFile(path)
	line, _, _ := bytes.Cut(b, []byte("\n"))
	var r struct{ Seq uint64 }
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r.Seq
}

// Each page reads only the files holding what it shows: over a long log
// whose other files cannot be read as records, every page works, and the
// console's counter bounds the files it opened.
func TestPagesReadOnlyTheFilesTheyShow(t *testing.T) {
	f, cb, decID, turn := longFixture(t)
	hc, _ := f.login()
	files, _ := audit.Files(cb.dir)
	search := int64(bits.Len(uint(len(files))) + 2) // a binary search for a time, and where it lands
	tests := []struct {
		path     string
		want     []string
		maxFiles int64
	}{
		{"/console/audit", []string{`data-seq="3000"`, `data-seq="2950"`, "before="}, 10},
		{"/console/audit?before=500", []string{`data-seq="499"`, `data-seq="400"`}, 10},
		{"/console/audit?since=5m", []string{`data-seq="3000"`, `data-seq="2971"`}, 4},
		{"/console/policy?from=" + strconv.Itoa(decisionSeq), []string{`id="pg-recorded"`, "seq " + strconv.Itoa(decisionSeq)}, 2},
		{"/console/policy?from=" + decID, []string{`id="pg-recorded"`, "seq " + strconv.Itoa(decisionSeq)}, search + 2},
		{"/console/trace/" + turn, []string{`data-step="message"`, `data-seq="1203"`}, search + 8},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			before := cb.stats.Files.Load()
			resp, body := f.get(hc, tt.path)
			opened := cb.stats.Files.Load() - before
			// (The audit page's verification status reads the whole log
			// through the backend, and says it is spoiled.)
			if resp.StatusCode != http.StatusOK || strings.Contains(body, `class="flash err"`) {
				t.Fatalf("%s: %s\n%s", tt.path, resp.Status, snippet(body, `class="flash err"`))
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Fatalf("%s: no %q in\n%s", tt.path, w, snippet(body, "<main"))
				}
			}
			if opened > tt.maxFiles {
				t.Fatalf("%s opened %d of the log's %d files, want at most %d", tt.path, opened, len(files), tt.maxFiles)
			}
			t.Logf("%s: %d files, of %d", tt.path, opened, len(files))
		})
	}
}

// The live stream opens on the newest records, reading only their files,
// and a reconnect (Last-Event-ID) starts after the last one seen.
func TestLiveStreamOpensAtTheTail(t *testing.T) {
	f, cb, _, _ := longFixture(t)
	hc, _ := f.login()
	hc.Timeout = 0
	for _, tt := range []struct {
		lastID   string
		first    uint64
		maxFiles int64
	}{
		{"", longRecords - 30, 5}, // LiveBacklog: 5 minutes of records 10 s apart
		{"2995", 2996, 6},         // the seq's file by the names, the time's by a binary search
		// An ID the log has not reached (2^64-1 would wrap FromSeq to 0),
		// or one so old that the replay would pass LiveBacklogMax, opens
		// as a fresh stream does instead of never delivering or replaying
		// without bound.
		{"99999999", longRecords - 30, 7},
		{"18446744073709551615", longRecords - 30, 7},
		{"1", longRecords - 30, 7},
	} {
		t.Run("last-event-id="+tt.lastID, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/console/live/events", nil)
			if tt.lastID != "" {
				req.Header.Set("Last-Event-ID", tt.lastID)
			}
			before := cb.stats.Files.Load()
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			var got []uint64
			for sc.Scan() && (len(got) == 0 || got[len(got)-1] < longRecords) {
				if strings.HasPrefix(sc.Text(), "event: failed") {
					sc.Scan()
					t.Fatalf("stream failed: %s", sc.Text())
				}
				if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
					n, _ := strconv.ParseUint(id, 10, 64)
					got = append(got, n)
				}
			}
			if len(got) == 0 || got[0] != tt.first || got[len(got)-1] != longRecords {
				t.Fatalf("stream delivered %v, want %d..%d", got, tt.first, longRecords)
			}
			if opened := cb.stats.Files.Load() - before; opened > tt.maxFiles {
				t.Fatalf("opening the stream opened %d files, want at most %d", opened, tt.maxFiles)
			}
		})
	}
}

// A lookup by something that is neither a seq nor a decision ID reads
// nothing and says what it wants.
func TestLookupNamesWhatItWants(t *testing.T) {
	f, cb, decID, _ := longFixture(t)
	hc, _ := f.login()
	for _, tt := range []struct{ from, want string }{
		{"not-an-id", "neither a record&#39;s seq number nor a decision ID"},
		{"99999", "no record with seq 99999"},
		{decisionID(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), 1), "no record with decision_id"},
		{strings.ToUpper(decID), "neither a record&#39;s seq number nor a decision ID"},
	} {
		before := cb.stats.Files.Load()
		_, body := f.get(hc, "/console/policy?from="+tt.from)
		if !strings.Contains(body, tt.want) {
			t.Fatalf("from=%s: no %q in\n%s", tt.from, tt.want, snippet(body, "<main"))
		}
		if opened := cb.stats.Files.Load() - before; opened > 12 {
			t.Fatalf("from=%s opened %d files", tt.from, opened)
		}
	}
}

// newFixtureWith is newFixture over the given backend and clock.
func newFixtureWith(t *testing.T, b *countingBackend, clk *clock) *fixture {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	c, err := console.New(console.Options{Backend: b, Addr: srv.Listener.Addr().String(), Now: clk.Now, FollowPoll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = c.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return &fixture{t: t, b: b.fakeBackend, c: c, srv: srv, clk: clk}
}

// snippet is 1500 bytes of body from the first at, for a failure message.
func snippet(body, at string) string {
	i := max(strings.Index(body, at), 0)
	return body[i:min(len(body), i+1500)]
}

// With audit.record_text on, a message's text is recorded just before its
// decision, with the same decision ID: ?from= takes the decision.
func TestLookupTakesTheDecisionNotItsText(t *testing.T) {
	f := newFixture(t)
	hc, _ := f.login()
	id := decisionID(time.Now(), 7)
	for _, r := range []audit.Record{
		{Kind: audit.KindMessageText, DecisionID: id, Connector: "tg", User: "telegram:1", Detail: map[string]string{"text": "hi"}},
		{Kind: "message", Decision: "allow", DecisionID: id, Connector: "tg", User: "telegram:1", Input: []byte(`{"connector":"tg"}`)},
	} {
		if _, err := f.b.log.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	_, body := f.get(hc, "/console/policy?from="+id)
	if !strings.Contains(body, `id="pg-recorded" data-allow="true"`) {
		t.Fatalf("from=%s did not take the message decision:\n%s", id, snippet(body, "<main"))
	}
}
