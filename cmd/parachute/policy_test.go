package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/engine"
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

// policyConfig writes a gateway config over the repository's policies in
// dir whose dev connector admits users (YAML list) and gives alice the
// role role.
func policyConfig(t *testing.T, dir, users, role string) string {
	t.Helper()
	pol, err := filepath.Abs("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "parachute.yaml")
	cfg := "vault: " + dir + "/vault\nstate_dir: " + dir + "/state\npolicies: " + pol + "\n" +
		"connectors:\n  dev:\n    type: local\n    listen: 127.0.0.1:0\n    allowed_users: [" + users + "]\n" +
		"users:\n  local:alice: {role: " + role + "}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func aliceMessage(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.json")
	os.WriteFile(p, []byte(`{"connector": "dev", "connector_type": "local", "sender": {"id": "local:alice", "platform_id": "alice", "display_name": "Alice"},
		"chat": {"id": "dm-alice", "kind": "dm"}, "mentioned": false, "unverified": false, "command": "", "text_length": 5}`), 0o600)
	return p
}

// TestPolicyEvalUsesTheConfig: eval reads the gateway's YAML config (its
// users, roles and policy folder), and --explain prints the decision of
// the traced evaluation itself.
func TestPolicyEvalUsesTheConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := policyConfig(t, dir, "alice", "guest")
	in := aliceMessage(t)
	for _, explain := range []bool{false, true} {
		args := []string{"policy", "eval", "--config", cfg, "--entry", "message", "--input", in}
		if explain {
			args = append(args, "--explain")
		}
		code, out, errOut := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		for _, w := range []string{`"allow": true`, `"role": "guest"`, `"workspace": "users/local%3Aalice"`} {
			if !strings.Contains(out, w) {
				t.Errorf("explain=%v: output lacks %s (the config's user and role):\n%.2000s", explain, w, out)
			}
		}
		if explain && (strings.Count(out, `"decision_id"`) != 1 || !strings.Contains(out, "Exit data.parachute.message.decision")) {
			t.Errorf("--explain: want one decision and the trace of its evaluation:\n%.3000s", out)
		}
		if !strings.Contains(errOut, "operator data from "+cfg) {
			t.Errorf("stderr %q does not say which config was read", errOut)
		}
	}
	if code, _, _ := runCLI(t, "policy", "eval", "--config", cfg, "--data", cfg, "--entry", "message", "--input", in); code != 2 {
		t.Errorf("--config with --data: exit %d, want a usage error", code)
	}
	t.Setenv(EnvConfig, cfg)
	if code, out, _ := runCLI(t, "policy", "eval", "--entry", "message", "--input", in); code != 0 || !strings.Contains(out, `"role": "guest"`) {
		t.Errorf("$%s not used: exit %d\n%s", EnvConfig, code, out)
	}
}

// TestPolicyReplay: a recorded decision is decided again against the
// current policy and config: by decision_id or seq; a record without an
// input, or not a decision, is refused with the reason.
func TestPolicyReplay(t *testing.T) {
	dir := t.TempDir()
	cfgPath := policyConfig(t, dir, "alice", "member")
	op, err := loadOpConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(op.Cfg.Audit.Dir, audit.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	eng, err := engine.New(ctx, engine.Options{PolicyDir: op.Cfg.Policies, Data: op.Cfg.PolicyData(), Recorder: audit.Recorder{Log: log}})
	if err != nil {
		t.Fatal(err)
	}
	in := engine.MessageInput{Connector: "dev", ConnectorType: "local", Sender: engine.Sender{ID: "local:alice", PlatformID: "alice"},
		Chat: engine.Chat{ID: "dm-alice", Kind: "dm"}, TextLength: 5}
	d := eng.Decide(ctx, in)
	if !d.Allow {
		t.Fatalf("alice denied: %v", d.Reasons)
	}
	old, err := log.Append(ctx, audit.Record{Kind: "message", Decision: "allow", DecisionID: "old-record"})
	if err != nil {
		t.Fatal(err)
	}
	start, err := log.Append(ctx, audit.Record{Kind: "session-start", User: "local:alice"})
	if err != nil {
		t.Fatal(err)
	}
	log.Close()

	// Unchanged config: the same decision.
	code, out, errOut := runCLI(t, "policy", "replay", "--config", cfgPath, d.ID)
	if code != 0 || !strings.Contains(out, `"changed": false`) {
		t.Fatalf("replay unchanged: exit %d\n%s\n%s", code, out, errOut)
	}
	// Alice removed from the config: the replay says it would now deny.
	policyConfig(t, dir, "bob", "member")
	for _, id := range []string{d.ID, "1"} {
		code, out, errOut = runCLI(t, "policy", "replay", "--config", cfgPath, id)
		if code != 0 || !strings.Contains(out, `"changed": true`) || !strings.Contains(out, `"unknown-user"`) {
			t.Fatalf("replay %s after the edit: exit %d\n%s\n%s", id, code, out, errOut)
		}
	}
	for _, tc := range []struct{ id, want string }{
		{"old-record", "no stored input"},
		{itoaSeq(start.Seq), "not a policy decision"},
		{"nope", "no record"},
	} {
		code, _, errOut := runCLI(t, "policy", "replay", "--config", cfgPath, tc.id)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("replay %s: exit %d, stderr %q; want %q", tc.id, code, errOut, tc.want)
		}
	}
	_ = old
}

func itoaSeq(n uint64) string { return strconv.FormatUint(n, 10) }
