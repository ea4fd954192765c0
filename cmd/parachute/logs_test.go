package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

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
	if code != 0 || !strings.Contains(out, "hash chain intact, but NOT tamper-evident: no public key") || !strings.Contains(out, "3 records") ||
		strings.Contains(out, "ok:") {
		t.Fatalf("verify intact unsigned log: exit %d\n%s", code, out)
	}
	path := filepath.Join(dir, audit.CurrentFile)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), `"decision":"deny"`, `"decision":"allow"`, 1)), 0o600)
	code, out, _ = runCLI(t, "audit", "verify", "--dir", dir)
	if code != 1 || !strings.Contains(out, "audit.jsonl:3") || !strings.Contains(out, "edited") {
		t.Fatalf("verify edited log: exit %d\n%s", code, out)
	}
}

// A gateway-like state dir: state/audit-key{,.pub}, state/audit-checkpoint
// and the log in state/audit, with checkpoints every 5 records.
func writeSignedLog(t *testing.T) (state, dir string) {
	t.Helper()
	state = t.TempDir()
	dir = filepath.Join(state, "audit")
	key, err := audit.OpenKey(filepath.Join(state, audit.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(dir, audit.Options{Signer: key, CheckpointEvery: 5, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		r := audit.Record{Kind: "tool", Decision: "deny", User: fmt.Sprintf("telegram:%d", i)}
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return state, dir
}

func TestAuditVerifySigned(t *testing.T) {
	otherState, _ := writeSignedLog(t)
	tests := []struct {
		name     string
		tamper   func(path string, lines []string) []string
		args     func(state string) []string
		wantCode int
		want     []string
	}{
		{name: "intact: the state dir's key and checkpoint are found", wantCode: 0,
			want: []string{"key: ", "audit-key.pub", "anchor: ", "checkpoints; last at seq 16", "ok: chain intact and signed by key"}},
		{name: "last 5 lines cut", tamper: func(_ string, ls []string) []string { return ls[:len(ls)-5] }, wantCode: 1,
			want: []string{"audit.jsonl:11 (seq 11): truncated: the log ends at seq 11", "holds the checkpoint at seq 16"}},
		{name: "last 5 lines cut, checkpoint file gone too: a tail, not intact-signed",
			tamper: func(path string, ls []string) []string {
				os.Remove(filepath.Join(filepath.Dir(filepath.Dir(path)), audit.CheckpointFileName))
				return ls[:len(ls)-5]
			}, wantCode: 0,
			want: []string{"warning: ", "unsigned tail: 4 records after checkpoint at seq 7", "signed by key", "up to seq 7; 4 newer records not yet signed"}},
		{name: "deny edited into allow and re-hashed", tamper: func(_ string, ls []string) []string {
			ls[4] = strings.Replace(ls[4], `"decision":"deny"`, `"decision":"allow"`, 1)
			return rehash(t, ls)
		}, wantCode: 1, want: []string{"checkpoint signs a head hash the chain does not have"}},
		{name: "another key", args: func(string) []string {
			return []string{"--pubkey", filepath.Join(otherState, audit.PublicKeyFileName), "--checkpoint", filepath.Join(otherState, audit.CheckpointFileName)}
		}, wantCode: 1, want: []string{"checkpoint signature does not verify: signed by key parachute-audit+"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, dir := writeSignedLog(t)
			path := filepath.Join(dir, audit.CurrentFile)
			if tt.tamper != nil {
				b, _ := os.ReadFile(path)
				lines := tt.tamper(path, strings.Split(strings.TrimRight(string(b), "\n"), "\n"))
				os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
			}
			args := []string{"audit", "verify", dir}
			if tt.args != nil {
				args = append(args, tt.args(state)...)
			}
			code, out, errOut := runCLI(t, args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.wantCode, out, errOut)
			}
			if code != 0 && !strings.Contains(errOut, "is not intact") {
				t.Errorf("stderr lacks the verdict: %s", errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// rehash recomputes every line's hash and prev, as anyone who can write the
// folder can.
func rehash(t *testing.T, lines []string) []string {
	t.Helper()
	prev := audit.Genesis
	for i, line := range lines {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		r.Prev = prev
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(r)
		body := bytes.TrimRight(buf.Bytes(), "\n")
		sum := sha256.Sum256(body)
		prev = hex.EncodeToString(sum[:])
		lines[i] = string(body[:len(body)-1]) + `,"hash":"` + prev + `"}`
	}
	return lines
}

// File names are chosen by the agent: nothing in them may reach the
// operator's terminal as a control, bidi or invisible character.
func TestLogsEscapesHostileFields(t *testing.T) {
	tests := []struct {
		name, path, wantText string
	}{
		{"ANSI colour and clear screen", "notes/\x1b[31mred\x1b[2J.md", `path=notes/\x1b[31mred\x1b[2J.md`},
		{"right-to-left override", "notes/\u202egnp.sh", `path=notes/\u202egnp.sh`},
		{"isolates and marks", "a\u2066b\u2069c\u200ed\u200fe\u061cf", `path=a\u2066b\u2069c\u200ed\u200fe\u061cf`},
		{"newline forging a second record", "x\n2026-01-01T00:00:00Z decision=allow", `path="x\n2026-01-01T00:00:00Z decision=allow"`},
		{"carriage return and tab", "a\rb\tc", `path=a\rb\tc`},
		{"DEL and C1 CSI", "a\x7fb\u009b31mc", `path=a\x7fb\u009b31mc`},
		{"line and paragraph separators", "a\u2028b\u2029c", `path=a\u2028b\u2029c`},
		{"zero width and BOM", "a\u200bb\ufeffc", `path=a\u200bb\ufeffc`},
		{"tag characters", "a\U000e0041b", `path=a\U000e0041b`},
		{"invalid UTF-8 (the writer stores U+FFFD)", "a\xffb", "path=a\ufffdb"},
		{"a literal backslash escape is not mistaken for one", `a\x1bb`, `path=a\\x1bb`},
		{"quote inside a quoted value", `a "b"`, `path="a \"b\""`},
		{"harmless unicode stays", "notes/café-日本.md", "path=notes/café-日本.md"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := audit.Open(dir, audit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.Append(context.Background(), audit.Record{Kind: "tool", Decision: "deny", Tool: "write_file",
				Path: tt.path, Error: tt.path, Detail: map[string]string{"name": tt.path}}); err != nil {
				t.Fatal(err)
			}
			l.Close()
			code, out, _ := runCLI(t, "logs", "--dir", dir)
			if code != 0 || !strings.Contains(out, tt.wantText) {
				t.Fatalf("text output lacks %s:\n%s", tt.wantText, out)
			}
			if strings.Count(out, "\n") != 1 {
				t.Errorf("one record printed as %d lines", strings.Count(out, "\n"))
			}
			assertTerminalSafe(t, "text", out)
			code, out, _ = runCLI(t, "logs", "--dir", dir, "--json")
			if code != 0 {
				t.Fatalf("--json: exit %d", code)
			}
			assertTerminalSafe(t, "json", out)
			line := strings.TrimSuffix(out, "\n")
			var r audit.Record
			if !json.Valid([]byte(line)) || json.Unmarshal([]byte(line), &r) != nil {
				t.Fatalf("--json printed invalid JSON: %q", line)
			}
			want := strings.ToValidUTF8(tt.path, "\ufffd")
			if r.Path != want || r.Error != want || r.Detail["name"] != want {
				t.Errorf("--json changed the value: %q, want %q", r.Path, want)
			}
		})
	}
}

func assertTerminalSafe(t *testing.T, form, out string) {
	t.Helper()
	for i, r := range strings.TrimSuffix(out, "\n") {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) ||
			(r == utf8.RuneError && !strings.HasPrefix(out[i:], "\ufffd")) {
			t.Fatalf("%s output has %U at byte %d: %q", form, r, i, out)
		}
	}
}
