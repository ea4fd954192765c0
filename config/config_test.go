package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const valid = `
vault: /srv/vault
connectors:
  telegram-private:
    type: telegram
    token_env: TELEGRAM_BOT_TOKEN
    allowed_users: [123456789]
    owners: [123456789]
    network_enabled: true
  discord-team:
    type: discord
    token_env: DISCORD_BOT_TOKEN
    allowed_users: [111222333444555666, 777888999000111222]
  matrix-demo:
    type: matrix
    public: true
    homeserver_url: https://matrix.example.org
    user_id: "@parachute-demo:example.org"
    access_token_env: MATRIX_ACCESS_TOKEN
workspaces:
  team:
    members: ["discord:111222333444555666"]
`

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Connectors["telegram-private"]
	if tg.DefaultTrustLevel != "sandboxed" || tg.AllowedUsers[0] != "123456789" {
		t.Fatalf("telegram connector = %+v", tg)
	}
	// A Discord snowflake written as a YAML number keeps every digit.
	if got := c.Connectors["discord-team"].AllowedUsers[0]; got != "111222333444555666" {
		t.Fatalf("snowflake = %q", got)
	}
	data := c.PolicyData()
	conns := data["connectors"].(map[string]any)
	if _, leaked := conns["telegram-private"].(map[string]any)["token_env"]; leaked {
		t.Fatal("secret names reach policy data")
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"public direct", `
vault: /v
connectors:
  demo: {type: matrix, public: true, default_trust_level: direct, allow_direct: true, homeserver_url: x, user_id: "@a:b", access_token_env: T}`,
			"connectors.demo.default_trust_level: direct trust on a public connector is never allowed"},
		{"matrix encryption without a pickle key", `
vault: /v
connectors:
  m: {type: matrix, homeserver_url: x, user_id: "@a:b", access_token_env: T, owners: ["@o:b"], encryption: true}`,
			"connectors.m.pickle_key_env: required with encryption: true"},
		{"matrix crypto store not absolute", `
vault: /v
connectors:
  m: {type: matrix, homeserver_url: x, user_id: "@a:b", access_token_env: T, encryption: true, pickle_key_env: PK, crypto_store: rel/bot.db}`,
			"connectors.m.crypto_store: \"rel/bot.db\" is not an absolute path"},
		{"matrix recovery key without encryption", `
vault: /v
connectors:
  m: {type: matrix, homeserver_url: x, user_id: "@a:b", access_token_env: T, recovery_key_env: RK}`,
			"connectors.m.recovery_key_env: only for a matrix connector with encryption: true"},
		{"matrix pickle key is a variable name", `
vault: /v
connectors:
  m: {type: matrix, homeserver_url: x, user_id: "@a:b", access_token_env: T, encryption: true, pickle_key_env: "s3cr3t value"}`,
			"connectors.m.pickle_key_env: \"s3cr3t value\" is not an environment variable name"},
		{"encryption on another platform", `
vault: /v
connectors:
  t: {type: telegram, token_env: T, encryption: true}`,
			"connectors.t.encryption: only a matrix connector has end-to-end encryption"},
		{"direct without allow_direct", `
vault: /v
connectors:
  p: {type: telegram, token_env: T, owners: [1], default_trust_level: direct}`, "connectors.p.default_trust_level: direct needs allow_direct"},
		{"unknown trust", `
vault: /v
connectors:
  p: {type: telegram, token_env: T, owners: [1], default_trust_level: root}`, `connectors.p.default_trust_level: "root"`},
		{"token in the file", `
vault: /v
connectors:
  p: {type: telegram, token_env: "123456:ABC-secret", owners: [1]}`, "connectors.p.token_env"},
		{"missing token env", `
vault: /v
connectors:
  p: {type: discord, owners: [1]}`, "connectors.p.token_env: required"},
		{"unknown type", `
vault: /v
connectors:
  p: {type: irc}`, "connectors.p.type"},
		{"typo is an error", `
vault: /v
connectors:
  p: {type: telegram, token_env: T, owners: [1], netwrok_enabled: true}`, "netwrok_enabled"},
		{"top-level typo", `
vault: /v
conectors: {}`, "conectors"},
		{"no vault", `
connectors:
  l: {type: local}`, "vault: required"},
		{"display name as user id", `
vault: /v
connectors:
  p: {type: telegram, token_env: T, allowed_users: ["telegram:1"]}`, "is not a platform user ID"},
		{"bad identity key", `
vault: /v
connectors:
  l: {type: local}
users:
  alice: {role: owner}`, "users.alice: key must be an identity"},
		{"unknown workspace", `
vault: /v
connectors:
  l: {type: local, workspace: nope}`, `connectors.l.workspace: "nope"`},
		{"hooks on public", `
vault: /v
connectors:
  l: {type: local, public: true, allow_hooks: true}`, "connectors.l.allow_hooks: a public connector can never run vault hooks"},
		{"private admits nobody", `
vault: /v
connectors:
  l: {type: local, pairing: false}`, "admits nobody"},
		{"upstream both", `
vault: /v
connectors:
  l: {type: local}
mcp:
  upstreams: [{name: fs, command: [npx], url: "http://x"}]`, "mcp.upstreams[0]: give exactly one"},
		{"bad provider", `
vault: /v
connectors:
  l: {type: local}
model: {provider: skynet}`, "model.provider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestLoadRefusesLoosePermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "parachute.yaml")
	os.WriteFile(path, []byte(valid), 0o644)
	os.Chmod(path, 0o644)
	if _, err := Load(path); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "world-readable") {
		t.Fatalf("world-readable config with secrets: %v", err)
	}
	os.Chmod(path, 0o640)
	if _, err := Load(path); err != nil {
		t.Fatalf("0640 config: %v", err)
	}
	os.Chmod(path, 0o662)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "world-writable") {
		t.Fatalf("world-writable config: %v", err)
	}
	// No secrets named: world-readable is fine.
	local := filepath.Join(dir, "local.yaml")
	os.WriteFile(local, []byte("vault: /v\nconnectors:\n  l: {type: local}\n"), 0o644)
	os.Chmod(local, 0o644)
	if _, err := Load(local); err != nil {
		t.Fatalf("secret-free world-readable config: %v", err)
	}
}

func TestMatrixEncryptionValid(t *testing.T) {
	c, err := Parse([]byte(`
vault: /v
state_dir: /var/lib/p
connectors:
  m: {type: matrix, homeserver_url: https://m.example.org, user_id: "@a:b", access_token_env: T, encryption: true, pickle_key_env: PK, recovery_key_env: RK}
  n: {type: matrix, homeserver_url: https://m.example.org, user_id: "@n:b", access_token_env: T2, encryption: true, pickle_key_env: PK2, crypto_store: /srv/n.db}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CryptoStorePath("m"); got != "/var/lib/p/matrix-crypto/m.db" {
		t.Errorf("default store = %q", got)
	}
	if got := c.CryptoStorePath("n"); got != "/srv/n.db" {
		t.Errorf("store = %q", got)
	}
}
