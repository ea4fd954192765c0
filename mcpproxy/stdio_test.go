package mcpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/engine"
)

// TestServeStdio: hostile lines are refused one by one with JSON-RPC
// errors, the session keeps serving, and answers in flight at the end of
// input are still written.
func TestServeStdio(t *testing.T) {
	f := newFixture(t)
	p, err := New(context.Background(), Options{Decider: newEngine(t, nil), Vault: f.vault, Builtin: true, MaxMessageBytes: 4096})
	must(t, err)
	s, err := p.NewSession(context.Background(), SessionOptions{Facts: func() engine.SessionFacts { return facts(false) }})
	must(t, err)
	defer s.Close()
	in := strings.Join([]string{
		initMsg,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":"` + strings.Repeat("x", 5000) + `"}}`,
		`[{"jsonrpc":"2.0","id":3,"method":"ping"}]`,
		`{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`,
		`not json`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"notes.md"}}}`,
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","arguments":"notes.md"}}`,
	}, "\n") + "\n"
	var out bytes.Buffer
	must(t, s.ServeStdio(context.Background(), strings.NewReader(in), &out))
	var errs int
	results := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Error  *struct{ Code int }
			Result *struct {
				Content []struct{ Text string }
			}
		}
		must(t, json.Unmarshal([]byte(l), &m))
		if m.Error != nil {
			errs++
			continue
		}
		if m.Result != nil && len(m.Result.Content) > 0 {
			results[string(m.ID)] = m.Result.Content[0].Text
		}
	}
	if errs != 4 {
		t.Fatalf("%d JSON-RPC errors, want 4 (too long, batch, roots, malformed):\n%s", errs, out.String())
	}
	if results["4"] != "hello notes\n" {
		t.Fatalf("read after hostile lines: %q", results["4"])
	}
	if !strings.HasPrefix(results["5"], "denied: "+ReasonInvalidArguments) {
		t.Fatalf("non-object arguments: %q", results["5"])
	}
}
