package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSilentMistakesAreRefused: each mistake the issue found passing
// silently is now an error naming its field and the fix.
func TestSilentMistakesAreRefused(t *testing.T) {
	base := `
vault: /v
connectors:
  tg:
    type: telegram
    token_env: TG_TOKEN
`
	tests := []struct {
		name, extra, want string
	}{
		{"public: \"yes\"", "    public: \"yes\"\n", `connectors.tg.public: line 7: "yes" is not a boolean`},
		{"public: yes unquoted", "    public: yes\n", `"yes" is not a boolean`},
		{"public: on", "    network_enabled: on\n", `connectors.tg.network_enabled: line 7: "on" is not a boolean`},
		{"quoted false", "    read_only: \"false\"\n", `"false" is not a boolean`},
		{"role read_only yes", "roles: {member: {read_only: \"yes\"}}\n", `roles.member.read_only: line 7: "yes" is not a boolean`},
		{"telegram @username owner", "    owners: [\"@myname\"]\n", `connectors.tg.owners[0]: "@myname" is not a Telegram user ID`},
		{"telegram name allowed", "    allowed_users: [bob]\n", `connectors.tg.allowed_users[0]: "bob" is not a Telegram user ID`},
		{"undefined user role", "users: {\"telegram:123\": {role: admin}}\n", `users.telegram:123.role: role "admin" is not defined`},
		{"misspelt role", "users: {\"telegram:123\": {role: memeber}}\n", `role "memeber" is not defined`},
		{"undefined default role", "    default_role: staff\n", `connectors.tg.default_role: role "staff" is not defined`},
		{"user key not numeric", "users: {\"telegram:@me\": {role: member}}\n", `users.telegram:@me: "@me" is not a Telegram user ID`},
		{"negative rate", "roles: {member: {messages_per_minute: -5}}\n", "roles.member.messages_per_minute: -5 is negative"},
		{"negative budget", "roles: {guest: {tokens_per_day: -1}}\n", "roles.guest.tokens_per_day: -1 is negative"},
		{"negative audit size", "audit: {max_bytes: -1}\n", "audit.max_bytes: -1 is negative"},
		{"bad egress port", "roles: {member: {egress_ports: [0, 443]}}\n", "roles.member.egress_ports[0]: 0 is not a TCP port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(base + tc.extra))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestOptionalBooleansMayBeNull(t *testing.T) {
	c, err := Parse([]byte("vault: /v\nconnectors:\n  tg: {type: telegram, token_env: T, owners: [1], require_mention: null, pairing: ~}\n"))
	if err != nil || c.Connectors["tg"].RequireMention != nil {
		t.Fatalf("null *bool: %v", err)
	}
	if _, err := Parse([]byte("vault: /v\nconnectors:\n  tg: {type: telegram, token_env: T, owners: [1], public: null}\n")); err == nil || !strings.Contains(err.Error(), "is not a boolean") {
		t.Fatalf("null bool: %v", err)
	}
}

func TestWellFormedIDsAndRolesPass(t *testing.T) {
	c, err := Parse([]byte(`
vault: /v
connectors:
  tg: {type: telegram, token_env: T, owners: [123456789], allowed_users: ["234567890"], public: false, default_role: staff}
  dc: {type: discord, token_env: D, owners: ["111222333444555666"]}
  mx: {type: matrix, homeserver_url: "https://m.example.org", user_id: "@bot:example.org", access_token_env: M, owners: ["@alice:example.org"]}
users:
  "telegram:234567890": {role: staff}
  "matrix:@bob:example.org": {role: guest}
roles:
  staff: {egress_hosts: [api.example.com], egress_ports: [443, 8443], network: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Roles["staff"].EgressPorts; len(got) != 2 || got[1] != 8443 {
		t.Fatalf("egress_ports = %v", got)
	}
	if ports, _ := c.PolicyData()["roles"].(map[string]any)["staff"].(Role); len(ports.EgressPorts) != 2 {
		t.Fatalf("egress_ports do not reach policy data: %+v", ports)
	}
}

func TestHostChecks(t *testing.T) {
	c, err := Parse([]byte(`
vault: /v
connectors:
  tg: {type: telegram, token_env: TG_TOKEN, owners: [1]}
model: {provider: anthropic, model: m, api_key_env: ANTHROPIC_KEY}
`))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TG_TOKEN": "x"}
	got := c.CheckEnv(func(k string) string { return env[k] })
	if len(got) != 1 || got[0].Field != "model.api_key_env" || !strings.Contains(got[0].String(), "ANTHROPIC_KEY is unset") {
		t.Fatalf("CheckEnv = %v", got)
	}
	c.Model.APIKeyEnv = ""
	if got := c.CheckEnv(func(k string) string { return env[k] }); len(got) != 1 || !strings.Contains(got[0].Problem, "no key") {
		t.Fatalf("provider with no key: %v", got)
	}
	c.Model.BaseURL = "http://127.0.0.1:11434"
	if got := c.CheckEnv(func(k string) string { return env[k] }); len(got) != 0 {
		t.Fatalf("keyless local server: %v", got)
	}

	dir := t.TempDir()
	c.Vault = filepath.Join(dir, "vualt")
	if got := c.CheckVault(); len(got) != 1 || !strings.Contains(got[0].String(), "does not exist") {
		t.Fatalf("mistyped vault: %v", got)
	}
	if _, err := os.Stat(c.Vault); !os.IsNotExist(err) {
		t.Fatal("CheckVault created the vault")
	}
	c.Vault = dir
	if got := c.CheckVault(); len(got) != 0 {
		t.Fatalf("vault: %v", got)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c.Admin.Listen = ln.Addr().String()
	if got := c.CheckPorts(); len(got) != 1 || got[0].Field != "admin.listen" || !strings.Contains(got[0].Problem, "address already in use") {
		t.Fatalf("taken port: %v", got)
	}
	c.Admin.Listen = "127.0.0.1:0"
	if got := c.CheckPorts(); len(got) != 0 {
		t.Fatalf("free port: %v", got)
	}
}
