package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/agent/agenttest"
)

// turnResult is what one agent process would have produced.
type turnResult struct {
	stdout, stderr string
	code           int
}

// runTurn runs agent.Run in-process with stdin and an environment that
// points at the gateway's socket plus env.
func runTurn(t *testing.T, gw *agenttest.Gateway, stdin string, env map[string]string) turnResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "PARACHUTE_SOCKET" && gw != nil {
			return gw.Socket
		}
		return ""
	}
	var out, errb bytes.Buffer
	code := agent.Run(ctx, strings.NewReader(stdin), &out, &errb, getenv)
	return turnResult{out.String(), errb.String(), code}
}

// request encodes a turn request with the given text and model provider.
func request(t *testing.T, text, provider string, history ...agent.Message) string {
	t.Helper()
	req := agent.Request{
		SessionID: "s1", TurnID: "t1", Identity: "telegram:123", Text: text, History: history,
		Workspace: "/workspace",
	}
	if provider != "" {
		req.Model = agent.Model{Provider: provider, Name: "test-model", MaxTokens: 512}
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantFailure asserts exit 1, nothing on stdout and one stderr line
// containing every want.
func wantFailure(t *testing.T, r turnResult, wants ...string) {
	t.Helper()
	if r.code != 1 {
		t.Errorf("exit code %d; want 1 (stdout %q, stderr %q)", r.code, r.stdout, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q; want nothing on failure", r.stdout)
	}
	if n := strings.Count(r.stderr, "\n"); n != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr %q is not exactly one line", r.stderr)
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q does not mention %q", r.stderr, w)
		}
	}
}

func wantSuccess(t *testing.T, r turnResult) {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q; want 0 and nothing on stderr (stdout %q)", r.code, r.stderr, r.stdout)
	}
}
