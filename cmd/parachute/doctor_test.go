package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors/pairing"
)

// doctorRun writes cfg (with %[1]s the folder, %[2]s the policies) and
// returns the findings of `doctor --config-only --json` and its exit code.
func doctorRun(t *testing.T, cfg string, mode os.FileMode, extra ...string) (int, []finding) {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "vault"), 0o750)
	path := filepath.Join(dir, "parachute.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(cfg, dir, defaultPolicyDirForTest(t))), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
	args := []string{"doctor", "--config", path, "--json"}
	if !strings.Contains(strings.Join(extra, " "), "--env-file") {
		args = append(args, "--env-file", filepath.Join(dir, "no-env-file")) // not this host's
	}
	code, out, errOut := runCLI(t, append(args, extra...)...)
	var fs []finding
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		t.Fatalf("doctor --json: %v\n%s\n%s", err, out, errOut)
	}
	return code, fs
}

func findingOf(fs []finding, check string) *finding {
	for i := range fs {
		if fs[i].Check == check {
			return &fs[i]
		}
	}
	return nil
}

const doctorBase = `
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
admin: {listen: "127.0.0.1:0"}
`

// TestDoctorChecks: one case per check, each asserting its status and
// what it says.
func TestDoctorChecks(t *testing.T) {
	t.Setenv("DOC_TG_TOKEN", "set")
	t.Setenv("DOC_UNSET", "")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tg := "connectors:\n  tg: {type: telegram, token_env: DOC_TG_TOKEN, owners: [123456789]}\n"
	tests := []struct {
		name     string
		cfg      string
		mode     os.FileMode
		check    string
		status   string
		detail   string
		wantExit int
	}{
		{"private sandboxed is safe", doctorBase + tg, 0o600, "connector tg", statusOK, "private + sandboxed: safe", 0},
		{"private direct is risky", doctorBase + "connectors:\n  tg: {type: telegram, token_env: DOC_TG_TOKEN, owners: [123456789], allow_direct: true}\n",
			0o600, "connector tg", statusWarn, "private + direct: risky", 0},
		{"public sandboxed is risky, with what to check", doctorBase + "connectors:\n  tg: {type: telegram, token_env: DOC_TG_TOKEN, public: true, network_enabled: true}\nroles: {guest: {egress_hosts: [a.example]}}\n",
			0o600, "connector tg", statusWarn, "public + sandboxed: risky (demo, non-sensitive vault); check: network_enabled is true", 0},
		{"public direct is never", doctorBase + "connectors:\n  tg: {type: telegram, token_env: DOC_TG_TOKEN, public: true, allow_direct: true}\n",
			0o600, "connector tg", statusFail, "public + direct: never", 1},
		{"unset secret", doctorBase + "connectors:\n  tg: {type: telegram, token_env: DOC_UNSET, owners: [123456789]}\n",
			0o600, "secret connectors.tg.token_env", statusFail, "DOC_UNSET is unset or empty", 1},
		{"provider key unset", doctorBase + tg + "model: {provider: openai, model: m, api_key_env: DOC_UNSET}\n",
			0o600, "secret model.api_key_env", statusFail, "DOC_UNSET is unset", 1},
		{"secrets set", doctorBase + tg, 0o600, "secrets", statusOK, "every *_env variable is set", 0},
		{"telegram @username owner", doctorBase + "connectors:\n  tg: {type: telegram, token_env: DOC_TG_TOKEN, owners: [\"@myname\"]}\n",
			0o600, "config connectors.tg.owners[0]", statusFail, `"@myname" is not a Telegram user ID`, 1},
		{"discord name", doctorBase + "connectors:\n  dc: {type: discord, token_env: DOC_TG_TOKEN, allowed_users: [bob]}\n",
			0o600, "config connectors.dc.allowed_users[0]", statusFail, "not a Discord user ID", 1},
		{"matrix bare name", doctorBase + "connectors:\n  mx: {type: matrix, homeserver_url: \"https://m.example\", user_id: \"@b:m.example\", access_token_env: DOC_TG_TOKEN, owners: [alice]}\n",
			0o600, "config connectors.mx.owners[0]", statusFail, "not a Matrix user ID", 1},
		{"undefined role", doctorBase + tg + "users: {\"telegram:123456789\": {role: admin}}\n",
			0o600, "config users.telegram:123456789.role", statusFail, `role "admin" is not defined`, 1},
		{"non-boolean boolean", doctorBase + "connectors:\n  tg: {type: telegram, token_env: DOC_TG_TOKEN, owners: [123456789], public: \"yes\"}\n",
			0o600, "config booleans", statusFail, `"yes" is not a boolean`, 1},
		{"negative limit", doctorBase + tg + "roles: {member: {tokens_per_day: -1}}\n",
			0o600, "config roles.member.tokens_per_day", statusFail, "-1 is negative", 1},
		{"world-readable config naming secrets", doctorBase + tg, 0o644, "config mode", statusFail, "is 0644", 1},
		{"group-writable config", doctorBase + tg, 0o620, "config mode", statusFail, "is 0620", 1},
		{"config mode ok", doctorBase + tg, 0o600, "config mode", statusOK, "is 0600", 0},
		{"missing vault", strings.Replace(doctorBase, "%[1]s/vault", "%[1]s/vualt", 1) + tg, 0o600, "vault", statusFail, "vualt does not exist", 1},
		{"vault present", doctorBase + tg, 0o600, "vault", statusOK, "is a folder", 0},
		{"state dir not yet made", doctorBase + tg, 0o600, "state_dir", statusWarn, "does not exist yet", 0},
		{"taken port", strings.Replace(doctorBase, "127.0.0.1:0", taken.Addr().String(), 1) + tg, 0o600, "admin.listen", statusFail, "cannot listen on " + taken.Addr().String(), 1},
		{"ports free", doctorBase + tg, 0o600, "ports", statusOK, "free: 127.0.0.1:0", 0},
		{"network with no egress hosts", doctorBase + "connectors:\n  tg: {type: telegram, token_env: DOC_TG_TOKEN, owners: [123456789], network_enabled: true}\n",
			0o600, "network tg", statusWarn, "no role lists egress_hosts", 0},
		{"network with egress hosts", doctorBase + "connectors:\n  tg: {type: telegram, token_env: DOC_TG_TOKEN, owners: [123456789], network_enabled: true}\nroles: {member: {egress_hosts: [api.example.com]}}\n",
			0o600, "network tg", statusOK, "1 egress host(s)", 0},
		{"policy tests pass", doctorBase + tg, 0o600, "policy tests", statusOK, "passed", 0},
		{"policy folder missing", strings.Replace(doctorBase, "policies: %[2]s", "policies: %[1]s/nopolicies", 1) + tg, 0o600, "policy tests", statusFail, "nopolicies", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, fs := doctorRun(t, tc.cfg, tc.mode, "--config-only")
			f := findingOf(fs, tc.check)
			if f == nil {
				t.Fatalf("no %q finding in %+v", tc.check, fs)
			}
			if f.Status != tc.status || !strings.Contains(f.Detail, tc.detail) {
				t.Fatalf("%s = %+v, want %s containing %q", tc.check, *f, tc.status, tc.detail)
			}
			if f.Status != statusOK && f.Fix == "" {
				t.Errorf("%s has no fix", tc.check)
			}
			if code != tc.wantExit {
				t.Errorf("exit %d, want %d; findings %+v", code, tc.wantExit, fs)
			}
		})
	}
}

func TestDoctorStateDirMode(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o755)
	os.Chmod(state, 0o755)
	os.MkdirAll(filepath.Join(dir, "vault"), 0o750)
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(doctorBase+"connectors: {dev: {type: local, allowed_users: [a]}}\n", dir, defaultPolicyDirForTest(t))), 0o600)
	code, out, _ := runCLI(t, "doctor", "--config", path, "--config-only")
	if code != 1 || !strings.Contains(out, "FAIL  state_dir") || !strings.Contains(out, "chmod 700 "+state) {
		t.Fatalf("doctor with a 0755 state dir: %d\n%s", code, out)
	}
}

// TestDoctorUsesTheConfigsRuntime: the host checks dial the config's
// containerd socket, made absolute (a relative one was read by gRPC as
// an authority: "invalid (non-empty) authority"), and look for its image.
func TestDoctorUsesTheConfigsRuntime(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.MkdirAll("vault", 0o750)
	os.WriteFile("parachute.yaml", []byte(fmt.Sprintf(`
vault: vault
state_dir: state
policies: %s
admin: {listen: "127.0.0.1:0"}
connectors: {dev: {type: local, allowed_users: [a]}}
runtime: {containerd_socket: test/ctrd.sock, image: example.local/img:1}
`, defaultPolicyDirForTest(t))), 0o600)
	t.Setenv(EnvConfig, "")
	code, out, _ := runCLI(t, "doctor", "--json")
	var fs []finding
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	c := findingOf(fs, "containerd")
	if code != 1 || c == nil || !strings.Contains(c.Detail, filepath.Join(dir, "test/ctrd.sock")) || strings.Contains(c.Detail, "authority") {
		t.Fatalf("containerd check = %+v (exit %d)", c, code)
	}
}

// Stored grants the config no longer backs: doctor fails on each, and
// serve refuses to start on an unused invite to a workspace that is gone.
func TestStoredGrantsTheConfigDoesNotBack(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "vault"), 0o750)
	state := filepath.Join(dir, "state")
	ctx := context.Background()
	s, err := pairing.Open(ctx, pairing.Options{Path: pairing.PathIn(state), Recorder: nopRecorder{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateInvite(ctx, pairing.Invite{Role: "member", Workspace: "gone"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	p, _ := s.RequestCode(ctx, "dev", "local:bob", "Bob")
	if _, err := s.Approve(ctx, p.Code, "ghost", ""); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(doctorBase+"connectors: {dev: {type: local, allowed_users: [a]}}\n", dir, defaultPolicyDirForTest(t))), 0o600)
	code, out, _ := runCLI(t, "doctor", "--config", path, "--config-only")
	for _, want := range []string{`workspace "gone" is not in workspaces: whoever redeems it is locked out`, "fix: parachute invite revoke ",
		`FAIL  binding dev local:bob`, `role "ghost" is not defined`, "fix: parachute pair revoke dev local:bob"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("doctor: %d, lacks %q:\n%s", code, want, out)
		}
	}
	code, _, errOut := runCLI(t, "serve", "--config", path)
	if code != 1 || !strings.Contains(errOut, `workspace "gone" is not in workspaces`) || !strings.Contains(errOut, `warning: binding dev local:bob: role "ghost" is not defined`) {
		t.Errorf("serve: %d %s", code, errOut)
	}
}

type nopRecorder struct{}

func (nopRecorder) RecordAuth(context.Context, pairing.Event) error { return nil }

// A secret set only in the service's environment file counts as set; the
// file itself must be private.
func TestDoctorReadsTheEnvFile(t *testing.T) {
	t.Setenv("DOC_FILE_TOKEN", "")
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("# secrets\nDOC_FILE_TOKEN=abc\n"), 0o644)
	os.Chmod(envFile, 0o644)
	cfg := doctorBase + "connectors:\n  tg: {type: telegram, token_env: DOC_FILE_TOKEN, owners: [123456789]}\n"
	code, fs := doctorRun(t, cfg, 0o600, "--config-only", "--env-file", envFile)
	if f := findingOf(fs, "secrets"); f == nil || f.Status != statusOK {
		t.Errorf("secret in the env file: %+v", fs)
	}
	if f := findingOf(fs, "env file"); code != 1 || f == nil || f.Status != statusFail || !strings.Contains(f.Fix, "chmod 600") {
		t.Errorf("world-readable env file: %d %+v", code, f)
	}
	os.Chmod(envFile, 0o600)
	if code, fs := doctorRun(t, cfg, 0o600, "--config-only", "--env-file", envFile); code != 0 {
		t.Errorf("private env file: %d %+v", code, fs)
	}
	if _, fs := doctorRun(t, cfg, 0o600, "--config-only", "--env-file", filepath.Join(t.TempDir(), "none")); findingOf(fs, "secret connectors.tg.token_env") == nil {
		t.Errorf("secret set nowhere: %+v", fs)
	}
}
