package mcpproxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/parachute-gateway/parachute/engine"
)

const initMsg = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

func TestIntakeHostile(t *testing.T) {
	f := newFixture(t)
	p, err := New(context.Background(), Options{Decider: newEngine(t, nil), Vault: f.vault, Builtin: true})
	must(t, err)
	s, err := p.NewSession(context.Background(), SessionOptions{Facts: func() engine.SessionFacts { return facts(false) }})
	must(t, err)
	hc := serveUnix(t, s.Handler())
	post := func(method, body string) (int, map[string]any) {
		req, err := http.NewRequest(method, "http://parachute/mcp", strings.NewReader(body))
		must(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := hc.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	tests := []struct {
		name, method, body string
		status, code       int
	}{
		{"batch", "POST", `[` + initMsg + `]`, 400, CodeInvalidRequest},
		{"roots widened", "POST", `{"jsonrpc":"2.0","method":"notifications/roots/list_changed","params":{"roots":[{"uri":"file:///"}]}}`, 400, CodeInvalidRequest},
		{"unknown method", "POST", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`, 400, CodeMethodNotFound},
		{"sampling from client", "POST", `{"jsonrpc":"2.0","id":2,"method":"sampling/createMessage","params":{}}`, 400, CodeMethodNotFound},
		{"request method as notification", "POST", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"write_file"}}`, 400, CodeMethodNotFound},
		{"client response", "POST", `{"jsonrpc":"2.0","id":9,"result":{"roots":[{"uri":"file:///"}]}}`, 400, CodeInvalidRequest},
		{"too large", "POST", `{"jsonrpc":"2.0","id":3,"method":"ping","params":{"pad":"` + strings.Repeat("a", DefaultMaxMessageBytes) + `"}}`, 413, CodeInvalidRequest},
		{"malformed", "POST", `{"jsonrpc":"2.0","id":`, 400, CodeParseError},
		{"not an object", "POST", `"tools/call"`, 400, CodeParseError},
		{"trailing data", "POST", initMsg + `{}`, 400, CodeParseError},
		{"duplicate method", "POST", `{"jsonrpc":"2.0","id":4,"method":"ping","method":"roots/list"}`, 400, CodeParseError},
		{"case-folded member", "POST", `{"jsonrpc":"2.0","id":4,"method":"ping","Method":"roots/list"}`, 400, CodeInvalidRequest},
		{"wrong version", "POST", `{"jsonrpc":"1.0","id":4,"method":"ping"}`, 400, CodeInvalidRequest},
		{"object id", "POST", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, 400, CodeInvalidRequest},
		{"params not an object", "POST", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":["read_file"]}`, 400, CodeInvalidRequest},
		{"GET stream", "GET", ``, 405, CodeInvalidRequest},
		{"PUT", "PUT", initMsg, 405, CodeInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, m := post(tc.method, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d (%v)", status, tc.status, m)
			}
			e, _ := m["error"].(map[string]any)
			if m["jsonrpc"] != "2.0" || e == nil || e["code"] != float64(tc.code) || e["message"] == "" {
				t.Fatalf("not a JSON-RPC error with code %d: %v", tc.code, m)
			}
		})
	}
	// The endpoint still serves after all that.
	status, m := post("POST", initMsg)
	if status != 200 || m["result"] == nil {
		t.Fatalf("initialize after hostile input: %d %v", status, m)
	}
}

func TestCheckMessageAccepts(t *testing.T) {
	for _, msg := range []string{
		initMsg,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{}}`,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"x"}}}`,
		` {"jsonrpc":"2.0","id":8,"method":"ping"} `,
	} {
		if err := CheckMessage([]byte(msg), DefaultMaxMessageBytes); err != nil {
			t.Errorf("%s: refused: %v", msg, err)
		}
	}
}

// FuzzCheckMessage: whatever CheckMessage accepts is one JSON-RPC request
// or notification the SDK decodes, for a method the proxy serves.
func FuzzCheckMessage(f *testing.F) {
	for _, s := range []string{
		initMsg, `[{}]`, `{"jsonrpc":"2.0","id":1,"method":"ping","method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"Method":"ping"}`, `{"jsonrpc":"2.0","id":1,"result":{}}`,
		`{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`, `{"jsonrpc":"2.0","id":null,"method":"ping"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		if CheckMessage(msg, 4096) != nil {
			return
		}
		m, err := jsonrpc.DecodeMessage(msg)
		if err != nil {
			t.Fatalf("accepted but the SDK cannot decode it: %v", err)
		}
		req, ok := m.(*jsonrpc.Request)
		if !ok {
			t.Fatalf("accepted a %T", m)
		}
		if req.IsCall() && !requestMethods[req.Method] || !req.IsCall() && !notificationMethods[req.Method] {
			t.Fatalf("accepted method %q (call=%v)", req.Method, req.IsCall())
		}
	})
}
