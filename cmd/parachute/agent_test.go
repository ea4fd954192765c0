package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/agent/agenttest"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

// buildParachute builds this command into a temp dir and returns its path.
func buildParachute(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "parachute")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestAgentBinaryEndToEnd runs the built `parachute agent` as the gateway
// would: request on stdin, env naming the socket, reply on stdout.
func TestAgentBinaryEndToEnd(t *testing.T) {
	bin := buildParachute(t)
	tests := []struct {
		name       string
		stdin      string
		script     []model.Step
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"tools-only command", `{"text":"/cat notes.md","identity":"telegram:1"}`, nil, 0, "buy milk", ""},
		{"openai tool loop", `{"text":"notes?","model":{"provider":"openai","name":"m"}}`,
			[]model.Step{model.Call("read_file", map[string]any{"path": "/workspace/notes.md"}), model.Reply("They say buy milk.")},
			0, "They say buy milk.", ""},
		{"anthropic budget refusal", `{"text":"hi","model":{"provider":"anthropic","name":"m"}}`,
			[]model.Step{model.Fail(429, "token budget exhausted")}, 1, "", "HTTP 429: token budget exhausted"},
		{"malformed stdin", `{"text":`, nil, 1, "", "not a valid JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := agenttest.New(t, map[string]string{"notes.md": "buy milk"}, model.Script{Steps: tc.script})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "agent")
			cmd.Stdin = strings.NewReader(tc.stdin)
			cmd.Env = []string{"PARACHUTE_SOCKET=" + gw.Socket, "PATH=" + os.Getenv("PATH")}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode || stdout.String() != tc.wantStdout {
				t.Errorf("exit %d stdout %q; want %d %q (stderr %q)", code, stdout.String(), tc.wantCode, tc.wantStdout, stderr.String())
			}
			if tc.wantStderr == "" && stderr.Len() != 0 {
				t.Errorf("stderr %q; want nothing", stderr.String())
			}
			if tc.wantStderr != "" {
				if !strings.Contains(stderr.String(), tc.wantStderr) || strings.Count(stderr.String(), "\n") != 1 {
					t.Errorf("stderr %q; want one line containing %q", stderr.String(), tc.wantStderr)
				}
			}
		})
	}
}
