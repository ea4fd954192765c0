package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/audit"
)

func writeAuditLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l, err := audit.Open(dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, r := range []audit.Record{
		{Kind: "message", Decision: "allow", Connector: "telegram-private", User: "telegram:1", SessionID: "s1", TrustLevel: "sandboxed"},
		{Kind: "session", Decision: "allow", Connector: "telegram-private", User: "telegram:1", SessionID: "s2", TrustLevel: "direct"},
		{Kind: "tool", Decision: "deny", Connector: "discord-team", User: "discord:2", SessionID: "s3", TrustLevel: "sandboxed",
			Tool: "write_file", Reasons: []string{"hooks-write-forbidden"}},
	} {
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLogsCommand(t *testing.T) {
	dir := writeAuditLog(t)
	tests := []struct {
		name      string
		args      []string
		wantLines int
		want      string
	}{
		{"all", []string{"logs", "--dir", dir}, 3, "connector="},
		{"guide recipe: trust_level=direct", []string{"logs", "--dir", dir, "trust_level=direct"}, 1, "session_id=s2"},
		{"filters before flags", []string{"logs", "connector=discord-team", "--dir", dir}, 1, "reasons=hooks-write-forbidden"},
		{"two filters", []string{"logs", "--dir", dir, "decision=deny", "kind=tool"}, 1, "tool=write_file"},
		{"json", []string{"logs", "--dir", dir, "--json", "user=telegram:1"}, 2, `"hash":"`},
		{"since the future", []string{"logs", "--dir", dir, "--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, 0, ""},
		{"since an hour", []string{"logs", "--dir", dir, "--since", "1h"}, 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			lines := strings.FieldsFunc(out, func(r rune) bool { return r == '\n' })
			if len(lines) != tt.wantLines {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), tt.wantLines, out)
			}
			if tt.want != "" && !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
	if code, _, _ := runCLI(t, "logs", "--dir", dir, "--since", "yesterday"); code != 2 {
		t.Errorf("bad --since: exit %d, want 2", code)
	}
	if code, _, _ := runCLI(t, "logs", "--dir", dir, "connector"); code != 2 {
		t.Errorf("filter without '=': exit %d, want 2", code)
	}
	if code, _, errOut := runCLI(t, "logs", "--dir", filepath.Join(dir, "none")); code != 1 || !strings.Contains(errOut, "no audit log") {
		t.Errorf("missing log: exit %d, %q", code, errOut)
	}
}

func TestAuditVerifyCommand(t *testing.T) {
	dir := writeAuditLog(t)
	code, out, _ := runCLI(t, "audit", "verify", dir)
	if code != 0 || !strings.Contains(out, "ok: chain intact") || !strings.Contains(out, "3 records") {
		t.Fatalf("verify intact log: exit %d\n%s", code, out)
	}
	path := filepath.Join(dir, audit.CurrentFile)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), `"decision":"deny"`, `"decision":"allow"`, 1)), 0o600)
	code, out, _ = runCLI(t, "audit", "verify", "--dir", dir)
	if code != 1 || !strings.Contains(out, "audit.jsonl:3") || !strings.Contains(out, "edited") {
		t.Fatalf("verify edited log: exit %d\n%s", code, out)
	}
}
