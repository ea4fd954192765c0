// Package testkit holds what the platform connectors' tests share: the real
// policy engine over the repository's policies/ folder, operator config as
// the engine sees it, a Turns that counts agent runs, and a log sink the
// tests search for leaked secrets. It is internal: test support only.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/engine"
)

// PolicyDir is the repository's real policy folder.
func PolicyDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "policies")
}

// Data is operator config for one connector named name of type typ, as the
// gateway hands it to the engine (data.parachute.config). owners and allowed
// are platform user IDs. mut may change the connector entry.
func Data(name, typ string, owners, allowed []string, mut ...func(conn map[string]any)) map[string]any {
	conn := map[string]any{
		"type":                typ,
		"public":              false,
		"owners":              anys(owners),
		"allowed_users":       anys(allowed),
		"default_trust_level": "sandboxed",
		"network_enabled":     false,
		"require_mention":     true,
		"pairing":             true,
	}
	for _, f := range mut {
		f(conn)
	}
	return map[string]any{"connectors": map[string]any{name: conn}}
}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// Recorder encodes every decision as JSON, as an audit log would, and
// counts them.
type Recorder struct{ n atomic.Int64 }

// Record implements engine.Recorder.
func (r *Recorder) Record(_ context.Context, in engine.Input, d *engine.Decision) error {
	r.n.Add(1)
	return json.NewEncoder(io.Discard).Encode(map[string]any{"id": d.ID, "allow": d.Allow, "reasons": d.Reasons, "input": in.Value().String()})
}

// N is the number of decisions recorded.
func (r *Recorder) N() int64 { return r.n.Load() }

// Engine is the real engine over the real policies with data, recording
// every decision (as the gateway does).
func Engine(t testing.TB, data map[string]any) *engine.Engine {
	t.Helper()
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: PolicyDir(), Data: data, Recorder: &Recorder{}})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	return e
}

// Router is a Router over the real engine with turns and no pairing store.
func Router(t testing.TB, data map[string]any, turns connectors.Turns, log zerolog.Logger) *connectors.Router {
	t.Helper()
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: Engine(t, data), Turns: turns, Logger: log, MaxText: 8000})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Turns echoes ("echo: <text>") and records every agent turn. Reply, if
// set, replaces the echo.
type Turns struct {
	Reply func(req connectors.TurnRequest) string

	mu    sync.Mutex
	turns []connectors.TurnRequest
}

// Turn implements connectors.Turns.
func (c *Turns) Turn(_ context.Context, req connectors.TurnRequest) (string, error) {
	c.mu.Lock()
	c.turns = append(c.turns, req)
	c.mu.Unlock()
	if c.Reply != nil {
		return c.Reply(req), nil
	}
	return "echo: " + req.Message.Text, nil
}

// NewSession implements connectors.Turns.
func (c *Turns) NewSession(context.Context, connectors.TurnRequest) error { return nil }

// All returns the turns run so far.
func (c *Turns) All() []connectors.TurnRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]connectors.TurnRequest(nil), c.turns...)
}

// Texts returns the texts of the turns run so far.
func (c *Turns) Texts() []string {
	var out []string
	for _, t := range c.All() {
		out = append(out, t.Message.Text)
	}
	return out
}

// Log is a concurrency-safe buffer for zerolog output.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String is everything logged so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Logger logs everything (debug and up) into l.
func (l *Log) Logger() zerolog.Logger { return zerolog.New(l).Level(zerolog.DebugLevel) }

// RequireCI fails the test when env CI=true and skips it otherwise: for a
// missing prerequisite (a homeserver binary) that CI must provide.
func RequireCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but "+format, args...)
	}
	t.Skipf(format, args...)
}

// Discard is a logger that drops everything.
func Discard() zerolog.Logger { return zerolog.Nop() }
