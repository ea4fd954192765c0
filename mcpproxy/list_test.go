package mcpproxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/engine/ratelimit"
)

// failingRecorder refuses every record after the first ok ones.
type failingRecorder struct{ ok int }

func (f *failingRecorder) Record(context.Context, engine.Input, *engine.Decision) error {
	if f.ok > 0 {
		f.ok--
		return nil
	}
	return errors.New("disk full")
}

// TestListingIsPure: listing tools, however often, takes no rate-limit
// token and writes exactly one tool-list record per listing, naming what
// was shown and hidden; none of its records looks like a call.
func TestListingIsPure(t *testing.T) {
	for _, readOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "read-write", true: "read-only"}[readOnly], func(t *testing.T) {
			f := newFixture(t)
			rec := &recorder{}
			lim := ratelimit.New(ratelimit.Options{})
			eng, err := engine.New(context.Background(), engine.Options{
				PolicyDir: filepath.Join(repoRoot(t), "policies"), Recorder: rec, Limiter: lim,
			})
			must(t, err)
			p, err := New(context.Background(), Options{Decider: eng, Vault: f.vault, Builtin: true})
			must(t, err)
			t.Cleanup(func() { p.Close() })
			s, err := p.NewSession(context.Background(), SessionOptions{
				Facts: func() engine.SessionFacts { return facts(readOnly) }, ClientRoot: "/workspace",
			})
			must(t, err)
			t.Cleanup(func() { s.Close() })
			cs := connectHTTP(t, s.Handler())
			const listings = 50 // more than the owner's tool-call burst
			var shown int
			for range listings {
				list, err := cs.ListTools(context.Background(), nil)
				must(t, err)
				shown = len(list.Tools)
			}
			if n := lim.Changes(); n != 0 {
				t.Errorf("listing changed rate-limit buckets %d times; want 0", n)
			}
			// The client's connect probes a method the intake refuses
			// (recorded as a protocol error); every other record must be
			// one listing's.
			var lists int
			for _, r := range rec.log {
				switch {
				case r.in.Invalid != nil && r.in.Invalid.Reason == ReasonProtocolError:
				case r.d.Entry == EntryToolList && r.d.Allow && r.in.Tool.Name == "":
					lists++
				default:
					t.Fatalf("record %s %+v of tool %q; want only %s records", r.d.Entry, r.d, r.in.Tool.Name, EntryToolList)
				}
			}
			if lists != listings {
				t.Fatalf("%d tool-list records for %d listings; want one each", lists, listings)
			}
			last, _ := rec.last()
			det := last.d.Detail
			if det["listing"] != "tools/list" || det["shown"] != itoa(shown) || det["hidden"] != itoa(len(p.catalog.order)-shown) {
				t.Errorf("listing detail %v; want shown %d of %d", det, shown, len(p.catalog.order))
			}
			if readOnly && !strings.Contains(det["hidden_tools"], "write_file="+ReasonReadOnly) {
				t.Errorf("hidden_tools %q does not say write_file is hidden as %s", det["hidden_tools"], ReasonReadOnly)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestListingUnrecorded: a listing whose record cannot be written is
// refused, not served unrecorded.
func TestListingUnrecorded(t *testing.T) {
	f := newFixture(t)
	p, err := New(context.Background(), Options{Decider: newEngine(t, &failingRecorder{}), Vault: f.vault, Builtin: true})
	must(t, err)
	t.Cleanup(func() { p.Close() })
	s, err := p.NewSession(context.Background(), SessionOptions{
		Facts: func() engine.SessionFacts { return facts(false) }, ClientRoot: "/workspace",
	})
	must(t, err)
	cs := connectHTTP(t, s.Handler())
	if list, err := cs.ListTools(context.Background(), nil); err == nil {
		t.Fatalf("unrecorded listing served %d tools; want an error", len(list.Tools))
	} else if !strings.Contains(err.Error(), engine.ReasonAuditUnavailable) {
		t.Fatalf("error %v does not name %s", err, engine.ReasonAuditUnavailable)
	}
}

// TestReadOnlyCommandSaysReadOnly: a read-only user's /write, run by the
// real agent's tools-only mode against the proxy, is refused as read-only
// (not "no tool named write_file"), recorded as a write_file call, and
// changes nothing.
func TestReadOnlyCommandSaysReadOnly(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	p, err := New(context.Background(), Options{Decider: newEngine(t, rec), Vault: f.vault, Builtin: true})
	must(t, err)
	t.Cleanup(func() { p.Close() })
	s, err := p.NewSession(context.Background(), SessionOptions{
		Facts: func() engine.SessionFacts { return facts(true) }, ClientRoot: "/workspace",
	})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	sock := serveSocket(t, s.Handler())
	for _, text := range []string{"/write notes.md overwritten", "/write new.md hello"} {
		reply, err := agent.Answer(context.Background(), agent.Config{Socket: sock, MaxSteps: 4},
			&agent.Request{Text: text, Workspace: "/workspace"})
		must(t, err)
		if !strings.Contains(reply, ReasonReadOnly) || !strings.Contains(reply, "read-only for you") || strings.Contains(reply, "no tool named") {
			t.Errorf("%s: reply %q; want the read-only refusal", text, reply)
		}
		last, _ := rec.last()
		if last.d.Allow || last.in.Tool.Name != "write_file" {
			t.Errorf("%s: last record %s %+v; want a denied write_file call", text, last.in.Tool.Name, last.d)
		}
	}
	if b, _ := os.ReadFile(f.ws + "/notes.md"); string(b) != "hello notes\n" {
		t.Fatalf("read-only workspace changed: %q", b)
	}
	if _, err := os.Stat(f.ws + "/new.md"); err == nil {
		t.Fatal("read-only /write created a file")
	}
}

// serveSocket serves h on a short unix socket path and returns the path.
func serveSocket(t testing.TB, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pl")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	must(t, err)
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestReadOnlyModelCallSaysReadOnly: a model's call of a write tool the
// read-only session was not shown still reaches the gateway, which refuses
// and records it as read-only-mode; the model is told what it has.
func TestReadOnlyModelCallSaysReadOnly(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	p, err := New(context.Background(), Options{Decider: newEngine(t, rec), Vault: f.vault, Builtin: true})
	must(t, err)
	t.Cleanup(func() { p.Close() })
	s, err := p.NewSession(context.Background(), SessionOptions{
		Facts: func() engine.SessionFacts { return facts(true) }, ClientRoot: "/workspace",
	})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	client := agent.NewSocketClient(serveSocket(t, s.Handler()))
	tb, err := agent.ConnectTools(context.Background(), client)
	must(t, err)
	t.Cleanup(func() { tb.Close() })
	for name, args := range map[string]string{
		"write_file":       `{"path": "/workspace/notes.md", "content": "x"}`,
		"create_directory": `{"path": "/workspace/d"}`,
	} {
		res, err := tb.Call(context.Background(), name, []byte(args))
		must(t, err)
		if !res.IsError || !strings.Contains(res.Text, ReasonReadOnly) || !strings.Contains(res.Text, "available: ") || strings.Contains(res.Text, "no tool named") {
			t.Errorf("%s: %+v; want the read-only refusal and the tools available", name, res)
		}
		last, _ := rec.last()
		if last.in.Tool.Name != name || last.d.Allow {
			t.Errorf("%s: last record %s %v; want the denied call recorded", name, last.in.Tool.Name, last.d.Reasons)
		}
	}
	if b, _ := os.ReadFile(f.ws + "/notes.md"); string(b) != "hello notes\n" {
		t.Fatalf("read-only workspace changed: %q", b)
	}
}
