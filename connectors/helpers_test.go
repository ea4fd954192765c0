package connectors_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/engine"
)

// policyDir is the repository's real policy folder.
func policyDir(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "policies")
}

// testData is operator config as the gateway hands it to the engine
// (policy sees it as data.parachute.config).
func testData(mut ...func(conn map[string]any)) map[string]any {
	conn := map[string]any{
		"type":                "local",
		"public":              false,
		"owners":              []any{"owner"},
		"allowed_users":       []any{"alice", "bob"},
		"default_trust_level": "sandboxed",
		"network_enabled":     false,
		"require_mention":     true,
		"pairing":             true,
	}
	for _, f := range mut {
		f(conn)
	}
	return map[string]any{
		"connectors": map[string]any{"dev": conn},
		"workspaces": map[string]any{"team": map[string]any{"members": []any{"local:alice"}}},
	}
}

// jsonRecorder encodes every decision, as an audit log would.
type jsonRecorder struct {
	n atomic.Int64
}

func (r *jsonRecorder) Record(_ context.Context, in engine.Input, d *engine.Decision) error {
	r.n.Add(1)
	return json.NewEncoder(io.Discard).Encode(map[string]any{"id": d.ID, "allow": d.Allow, "reasons": d.Reasons, "input": in.Value().String()})
}

func newEngine(t testing.TB, data map[string]any) (*engine.Engine, *jsonRecorder) {
	t.Helper()
	rec := &jsonRecorder{}
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(t), Data: data, Recorder: rec})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	return e, rec
}

// authLog records pairing events; while fail is set it refuses them, as
// a full audit disk does.
type authLog struct {
	mu   sync.Mutex
	fail bool
	ev   []pairing.Event
}

func (a *authLog) RecordAuth(_ context.Context, e pairing.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return errors.New("audit log unavailable: no space left on device")
	}
	a.ev = append(a.ev, e)
	return nil
}

func (a *authLog) setFail(v bool) { a.mu.Lock(); a.fail = v; a.mu.Unlock() }

func (a *authLog) count(kind, reason string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, e := range a.ev {
		if e.Kind == kind && e.Reason == reason {
			n++
		}
	}
	return n
}

// newStore is the gateway's pairing store, recording on rec (default: a
// fresh authLog).
func newStore(t testing.TB, rec pairing.Recorder) *pairing.Store {
	t.Helper()
	if rec == nil {
		rec = &authLog{}
	}
	s, err := pairing.Open(context.Background(), pairing.Options{Path: filepath.Join(t.TempDir(), "state", "parachute.db"), Recorder: rec})
	if err != nil {
		t.Fatalf("pairing.Open: %v", err)
	}
	return s
}

// chat is a Replier that keeps what was sent.
type chat struct {
	mu   sync.Mutex
	sent []string
}

func (c *chat) SendText(_ context.Context, _ string, text string) error {
	c.mu.Lock()
	c.sent = append(c.sent, text)
	c.mu.Unlock()
	return nil
}
func (c *chat) Typing(context.Context, string) error { return nil }
func (c *chat) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.sent...)
}

// countingTurns echoes and counts turns and new sessions by key.
type countingTurns struct {
	mu    sync.Mutex
	turns []connectors.TurnRequest
	news  int
}

func (c *countingTurns) Turn(_ context.Context, req connectors.TurnRequest) (string, error) {
	c.mu.Lock()
	c.turns = append(c.turns, req)
	c.mu.Unlock()
	return "echo: " + req.Message.Text, nil
}

func (c *countingTurns) NewSession(context.Context, connectors.TurnRequest) error {
	c.mu.Lock()
	c.news++
	c.mu.Unlock()
	return nil
}

func (c *countingTurns) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.turns)
}

var msgSeq atomic.Int64

func msg(user, text string) *connectors.Message {
	return &connectors.Message{
		Connector: "dev", Type: "local", UserID: user, ChatID: "dm:" + user, ChatKind: connectors.KindDM,
		Text: text, MessageID: "m" + itoa(msgSeq.Add(1)),
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
