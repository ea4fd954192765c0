package config

import (
	"strings"
	"testing"
)

// TestLocalConnectorNeedsAuthToGrantTrust: a local connector that can hand
// out owner role or direct trust must authenticate its callers (token_env
// or socket); a loopback port alone admits every process on the host.
func TestLocalConnectorNeedsAuthToGrantTrust(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string // "" = valid
	}{
		{"owners, no auth", `l: {type: local, owners: [me]}`, "connectors.l.token_env: required: owners is set"},
		{"allow_direct, no auth", `l: {type: local, allowed_users: [me], allow_direct: true}`, "allow_direct is true"},
		{"direct default, no auth", `l: {type: local, owners: [me], allow_direct: true, default_trust_level: direct}`, "connectors.l.token_env"},
		{"default_role owner, no auth", `l: {type: local, allowed_users: [me], default_role: owner}`, "default_role is owner"},
		{"users entry with role owner", `l: {type: local, allowed_users: [me]}
users:
  "local:me": {role: owner}`, `users.local:me has role owner`},
		{"explicit listen, no auth", `l: {type: local, listen: "127.0.0.1:9000", owners: [me]}`, "or replace listen with socket"},
		{"socket and tcp, tcp without token", `l: {type: local, listen: "127.0.0.1:9000", socket: /run/p.sock, owners: [me]}`, "connectors.l.token_env"},
		{"owners with token", `l: {type: local, owners: [me], token_env: LOCAL_TOKEN}`, ""},
		{"owners on a socket only", `l: {type: local, owners: [me], socket: /run/p.sock}`, ""},
		{"sandboxed users only", `l: {type: local, allowed_users: [me, friend]}`, ""},
		{"socket on telegram", `t: {type: telegram, token_env: T, owners: [1], socket: /run/p.sock}`, "connectors.t.socket: only a local connector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "vault: /v\nconnectors:\n  " + tt.yaml + "\n"
			c, err := Parse([]byte(yaml))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v (config %+v), want an error containing %q", err, c, tt.want)
			}
		})
	}
}

func TestLocalSocketOnlyHasNoTCPListener(t *testing.T) {
	c, err := Parse([]byte("vault: /v\nconnectors:\n  l: {type: local, owners: [me], socket: /run/p.sock}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Connectors["l"].Listen; l != "" {
		t.Fatalf("listen defaulted to %q for a socket-only connector", l)
	}
}
