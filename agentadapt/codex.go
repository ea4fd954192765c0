package agentadapt

import (
	"context"
	"errors"

	"github.com/parachute-gateway/parachute/agent"
)

// codex runs `codex exec` against the OpenAI Responses API.
type codex struct{}

func (codex) defaultBinary() string { return lookPath(Codex, "codex") }

func (codex) check(req *agent.Request) error {
	if req.Model.Provider != "openai" || req.Model.Name == "" {
		return errors.New("codex needs an OpenAI model: set model.provider: openai and model.model in the gateway config")
	}
	return nil
}

func (codex) run(context.Context, *turn) (string, error) {
	return "", errors.New("codex is not adapted yet: the model proxy does not serve the OpenAI Responses API (docs/agent.md)")
}
