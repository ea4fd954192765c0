package config

import (
	"errors"
	"strings"
	"testing"
)

const agentBase = `
vault: /srv/vault
model: {provider: anthropic, model: claude-x, api_key_env: KEY}
connectors:
  tg:
    type: telegram
    token_env: TG
    allowed_users: [1]
`

// Each turn's agent: the role's, else the connector's, else the
// runtime's; a kind the gateway cannot run, or an agent whose API is not
// the model's, is refused with the field and the fix.
func TestAgentFor(t *testing.T) {
	tests := []struct {
		name, extra, connector, role, want, wantErr string
	}{
		{"default", "", "tg", "member", AgentParachute, ""},
		{"runtime", "runtime: {agent: claude-code}", "tg", "member", AgentClaudeCode, ""},
		{"agent_command alone", "runtime: {agent_command: [/my-agent]}", "tg", "member", AgentCommand, ""},
		{"role over runtime", "runtime: {agent: claude-code}\nroles: {member: {agent: parachute}}", "tg", "member", AgentParachute, ""},
		{"other role keeps runtime", "runtime: {agent: claude-code}\nroles: {member: {agent: parachute}}", "tg", "owner", AgentClaudeCode, ""},
		{"unknown kind", "runtime: {agent: aider}", "", "", "", `runtime.agent: "aider" is not parachute, claude-code, codex or command`},
		{"codex on anthropic", "roles: {member: {agent: codex}}", "", "", "", "roles.member.agent: codex speaks the OpenAI Responses API: set model.provider: openai"},
		{"command without a command", "runtime: {agent: command}", "", "", "", "runtime.agent: command needs runtime.agent_command"},
		{"bad builtin tool", "runtime: {agent: claude-code, agent_builtin_tools: [\"Bash;rm\"]}", "", "", "", "runtime.agent_builtin_tools[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(agentBase + tt.extra + "\n"))
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v; want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.AgentFor(tt.connector, tt.role); got != tt.want {
				t.Fatalf("AgentFor = %q; want %q", got, tt.want)
			}
		})
	}
	c, err := Parse([]byte(agentBase + "runtime: {agent: claude-code}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Connectors["tg"].Agent = AgentParachute
	if got := c.AgentFor("tg", "member"); got != AgentParachute {
		t.Fatalf("connector's agent not used: %q", got)
	}
}
