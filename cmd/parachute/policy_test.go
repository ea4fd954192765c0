package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command line in-process and returns exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const testPolicies = "../../engine/testdata/basic"

func TestPolicyCommands(t *testing.T) {
	input := filepath.Join(t.TempDir(), "in.json")
	os.WriteFile(input, []byte(`{"command": "deny"}`), 0o600)
	broken := filepath.Join(t.TempDir(), "broken.json")
	os.WriteFile(broken, []byte(`{"command": `), 0o600)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"test passes", []string{"policy", "test", testPolicies}, 0, []string{"2 passed, 0 failed"}},
		{"check passes", []string{"policy", "check", testPolicies}, 0, []string{"ok:", "revision"}},
		{"eval prints the decision", []string{"policy", "eval", "--policies", testPolicies, "--entry", "message", "--input", input},
			0, []string{`"allow": false`, `"unknown-user"`, `"decision_id"`}},
		{"eval explains", []string{"policy", "eval", "--policies", testPolicies, "--entry", "message", "--input", input, "--explain"},
			0, []string{"trace:", "Enter data.parachute.message.decision"}},
		{"eval needs a known entry", []string{"policy", "eval", "--policies", testPolicies, "--entry", "nope", "--input", input}, 2, nil},
		{"eval needs an input", []string{"policy", "eval", "--policies", testPolicies, "--entry", "tool"}, 2, nil},
		{"eval rejects bad JSON", []string{"policy", "eval", "--policies", testPolicies, "--entry", "tool", "--input", broken}, 1, nil},
		{"unknown command", []string{"policy", "frobnicate"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestPolicyCheckNamesBrokenFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "message.rego"), []byte("package parachute.message\n\ndecision := {\n"), 0o600)
	code, _, errOut := runCLI(t, "policy", "check", dir)
	if code != 1 || !strings.Contains(errOut, "message.rego:") {
		t.Fatalf("exit %d, stderr %q: want 1 naming message.rego", code, errOut)
	}
	code, _, errOut = runCLI(t, "policy", "test", dir)
	if code != 1 || !strings.Contains(errOut, "message.rego:") {
		t.Fatalf("policy test: exit %d, stderr %q", code, errOut)
	}
}
