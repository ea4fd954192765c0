// Package sandbox is a stand-in for the containerd runtime in tests that
// are about what surrounds a turn (the gateway's records, the operator's
// commands), not about the sandbox: each turn is answered in-process.
// test/e2e and the runtime tests run the real one.
package sandbox

import (
	"context"
	"encoding/json"
	"io"

	"github.com/parachute-gateway/parachute/runtime"
)

// Runtime starts sandboxes whose turns answer Answer(the turn's text).
type Runtime struct {
	Answer func(text string) string
}

// Echo answers each turn with "echo: " and its text.
func Echo() Runtime { return Runtime{Answer: func(text string) string { return "echo: " + text }} }

// Start implements sessions.Sandboxes.
func (r Runtime) Start(_ context.Context, s runtime.Spec) (runtime.Sandbox, error) {
	return box{id: s.SessionID, answer: r.Answer}, nil
}

type box struct {
	id     string
	answer func(string) string
}

func (b box) ID() string                 { return b.id }
func (b box) Stop(context.Context) error { return nil }

// Exec reads the turn the gateway writes to the agent's stdin and writes
// the answer as the agent's reply.
func (b box) Exec(_ context.Context, t runtime.Turn) (runtime.Result, error) {
	var in struct {
		Text string `json:"text"`
	}
	if err := json.NewDecoder(t.Stdin).Decode(&in); err != nil {
		return runtime.Result{}, err
	}
	_, err := io.WriteString(t.Stdout, b.answer(in.Text))
	return runtime.Result{}, err
}
