package gateway

import (
	"os"
	"strings"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/sessions"
)

// agentFor returns the sessions' per-turn agent choice from the config:
// the role's agent, else the connector's, else runtime.agent
// (config.AgentFor). The real agents run as `parachute agent --kind K`,
// the adapter in the image (docs/agent.md).
func agentFor(cfg *config.Config) func(engine.SessionFacts) sessions.AgentChoice {
	exe, err := os.Executable()
	if err != nil {
		exe = "parachute"
	}
	tools := "PARACHUTE_AGENT_TOOLS=" + strings.Join(cfg.Runtime.AgentBuiltinTools, ",")
	return func(f engine.SessionFacts) sessions.AgentChoice {
		switch kind := cfg.AgentFor(f.Connector, f.Role); kind {
		case config.AgentParachute:
			return sessions.AgentChoice{Args: []string{"/parachute", "agent"}, Direct: []string{exe, "agent"}}
		case config.AgentClaudeCode, config.AgentCodex:
			return sessions.AgentChoice{
				Args:   []string{"/parachute", "agent", "--kind", kind},
				Direct: []string{exe, "agent", "--kind", kind},
				Env:    []string{tools},
			}
		}
		return sessions.AgentChoice{} // command: runtime.agent_command
	}
}
