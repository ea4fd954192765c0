package mcpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/engine"
)

// wireCall is one tools/call sent as raw bytes, the way an attacker writes
// it: the SDK client cannot send duplicate or case-variant members.
type wireCall struct {
	name   string
	params string // the raw params object
	reason string // the one reason the call must be refused with
}

var wireCalls = []wireCall{
	{"capitalised Path writes no hook", `{"name":"write_file","arguments":{"Path":".parachute/hooks/pre-session.sh","content":"echo pwned"}}`, ReasonInvalidArguments},
	{"upper-case PATH", `{"name":"write_file","arguments":{"PATH":".parachute/hooks/pre-session.sh","content":"echo pwned"}}`, ReasonInvalidArguments},
	{"edit_file Path", `{"name":"edit_file","arguments":{"Path":".parachute/hooks/x","edits":[{"oldText":"a","newText":"b"}]}}`, ReasonInvalidArguments},
	{"create_directory Path", `{"name":"create_directory","arguments":{"Path":".parachute/hooks/newdir"}}`, ReasonInvalidArguments},
	{"move_file Source Destination", `{"name":"move_file","arguments":{"Source":"notes.md","Destination":".parachute/hooks/run.sh"}}`, ReasonInvalidArguments},
	{"case variant beside the checked key", `{"name":"write_file","arguments":{"path":"ok.md","Path":".parachute/hooks/x","content":"x"}}`, ReasonInvalidArguments},
	{"undeclared argument", `{"name":"write_file","arguments":{"path":"ok.md","content":"x","mode":"0777"}}`, ReasonInvalidArguments},
	{"arguments not an object", `{"name":"read_file","arguments":["notes.md"]}`, ReasonInvalidArguments},
	{"arguments a string", `{"name":"read_file","arguments":"notes.md"}`, ReasonInvalidArguments},
	{"duplicate path", `{"name":"write_file","arguments":{"path":"ok.md","path":".parachute/hooks/x","content":"x"}}`, ReasonProtocolError},
	{"duplicate arguments", `{"name":"write_file","arguments":{"path":"ok.md","content":"x"},"arguments":{"path":".parachute/hooks/x","content":"x"}}`, ReasonProtocolError},
	{"case-variant tool name", `{"name":"read_file","Name":"write_file","arguments":{"path":".parachute/hooks/x","content":"x"}}`, ReasonProtocolError},
	{"invalid UTF-8 in a path", "{\"name\":\"write_file\",\"arguments\":{\"path\":\"ok\xff.md\",\"content\":\"x\"}}", ReasonProtocolError},
	{"lone surrogate in a path", `{"name":"write_file","arguments":{"path":"ok\udc00.md","content":"x"}}`, ReasonProtocolError},
	{"unknown tool", `{"name":"save_note","arguments":{"path":".parachute/hooks/x"}}`, ReasonNoSuchTool},
}

// TestOneParse: every call the proxy cannot read the one strict way is
// refused with its reason, leaves exactly one record, and changes nothing
// in the workspace (above all under .parachute).
func TestOneParse(t *testing.T) {
	for _, b := range []backend{backends[0], backends[2]} { // built-in, npm in its sandbox
		t.Run(b.name, func(t *testing.T) { testOneParse(t, b) })
	}
}

func testOneParse(t *testing.T, b backend) {
	f := newFixture(t)
	rec := &recorder{}
	opts := b.opts(t, f)
	opts.Decider = newEngine(t, rec)
	p, err := New(context.Background(), opts)
	must(t, err)
	t.Cleanup(func() { p.Close() })
	s, err := p.NewSession(context.Background(), SessionOptions{Facts: func() engine.SessionFacts { return facts(false) }, ClientRoot: "/workspace"})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	before := snapshot(t, f.ws)
	for i, c := range wireCalls {
		t.Run(c.name, func(t *testing.T) {
			n0 := rec.count()
			text := stdioCall(t, s, i+10, c.params)
			last, n := rec.last()
			if n != n0+1 {
				t.Fatalf("%d records for one call, want 1", n-n0)
			}
			if last.d.Allow || !slices.Contains(last.d.Reasons, c.reason) || last.in.Invalid == nil || last.in.Invalid.Reason != c.reason {
				t.Fatalf("recorded %+v %v, want a refusal for %s", last.in.Invalid, last.d.Reasons, c.reason)
			}
			// A protocol error is answered as a JSON-RPC error, whose
			// message says what was wrong; a refused call names its reason.
			if c.reason != ReasonProtocolError && !strings.Contains(text, c.reason) {
				t.Fatalf("answer %q does not name %s", text, c.reason)
			}
		})
	}
	if after := snapshot(t, f.ws); !slices.Equal(before, after) {
		t.Fatalf("workspace changed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestRefusalFloodBounded: a session sending garbage in a loop leaves a
// bounded number of records, and the count of the rest is recorded.
func TestRefusalFloodBounded(t *testing.T) {
	rec := &recorder{}
	s := builtinSession(t, rec)
	var in strings.Builder
	in.WriteString(initMsg + "\n" + `{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n")
	const flood = 500
	for i := range flood {
		fmt.Fprintf(&in, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"nope_%d"}}`+"\n", i+2, i)
	}
	var out bytes.Buffer
	must(t, s.ServeStdio(context.Background(), strings.NewReader(in.String()), &out))
	if got := strings.Count(out.String(), ReasonNoSuchTool); got != flood {
		t.Fatalf("%d of %d calls answered with %s", got, flood, ReasonNoSuchTool)
	}
	must(t, s.Close())
	n := rec.count()
	if n > refusalBurst+5 {
		t.Fatalf("%d records for %d refused calls, want at most %d", n, flood, refusalBurst+5)
	}
	var counted int64
	rec.mu.Lock()
	for _, r := range rec.log {
		if r.in.Invalid == nil {
			t.Fatalf("a refusal recorded without its reason: %+v", r.in)
		}
		if r.in.Invalid.Detail != flushDetail {
			counted++ // a refusal recorded one by one
		}
		counted += r.in.Invalid.Suppressed
	}
	rec.mu.Unlock()
	if counted != flood {
		t.Fatalf("records account for %d refusals, want %d", counted, flood)
	}
}

// stdioCall sends one raw tools/call over a fresh stdio exchange and
// returns the text of its answer (a tool result or a JSON-RPC error).
func stdioCall(t *testing.T, s *Session, id int, params string) string {
	t.Helper()
	in := initMsg + "\n" + `{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n" +
		fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":%s}`, id, params) + "\n"
	var out bytes.Buffer
	must(t, s.ServeStdio(context.Background(), strings.NewReader(in), &out))
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Error  *struct{ Message string }
			Result *struct {
				Content []struct{ Text string }
			}
		}
		must(t, json.Unmarshal([]byte(l), &m))
		if string(m.ID) != fmt.Sprint(id) && !(m.Error != nil && string(m.ID) == "null") {
			continue
		}
		if m.Error != nil {
			return m.Error.Message
		}
		if m.Result != nil && len(m.Result.Content) > 0 {
			return m.Result.Content[0].Text
		}
	}
	t.Fatalf("no answer to call %d:\n%s", id, out.String())
	return ""
}

// snapshot lists every entry under dir with its size, mode and content hash
// stand-in (the content itself, for small files).
func snapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s\t%v %d", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	}))
	return out
}

// TestIntakeRecordsRefusals: over HTTP, a refused message is recorded as a
// protocol-error refusal; a client's GET for a stream (part of the
// transport, no attack) is refused without a record.
func TestIntakeRecordsRefusals(t *testing.T) {
	rec := &recorder{}
	s := builtinSession(t, rec)
	h := s.Handler()
	get := httptest.NewRecorder()
	h.ServeHTTP(get, httptest.NewRequest(http.MethodGet, "/mcp", nil))
	if get.Code != http.StatusMethodNotAllowed || rec.count() != 0 {
		t.Fatalf("GET: status %d, %d records; want 405 and none", get.Code, rec.count())
	}
	batch := httptest.NewRecorder()
	h.ServeHTTP(batch, httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`)))
	last, n := rec.last()
	if batch.Code != http.StatusBadRequest || n != 1 || last.in.Invalid == nil || last.in.Invalid.Reason != ReasonProtocolError {
		t.Fatalf("batch: status %d, %d records (%+v); want 400 and one protocol-error record", batch.Code, n, last.in.Invalid)
	}
}

// builtinSession is a member's session on the built-in tools over a fresh
// fixture, its decisions kept by rec. Closing it is the caller's (a close
// records what it still owes), else the test's cleanup.
func builtinSession(t *testing.T, rec *recorder) *Session {
	t.Helper()
	f := newFixture(t)
	p, err := New(context.Background(), Options{Decider: newEngine(t, rec), Vault: f.vault, Builtin: true})
	must(t, err)
	t.Cleanup(func() { p.Close() })
	s, err := p.NewSession(context.Background(), SessionOptions{Facts: func() engine.SessionFacts { return facts(false) }})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}
