package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// DefaultMaxSteps bounds the model calls in one turn when
// PARACHUTE_MAX_STEPS is not set.
const DefaultMaxSteps = 8

// toolCall is one tool the model asked for, provider-neutral.
type toolCall struct {
	ID   string
	Name string
	Args json.RawMessage
}

// conversation is one provider's view of the turn's messages.
type conversation interface {
	// ask sends the conversation to the model and records its answer. It
	// returns either the final text or the tool calls wanted.
	ask(ctx context.Context) (text string, calls []toolCall, err error)
	// answer appends the results of the calls the model asked for.
	answer(calls []toolCall, results []ToolResult)
}

// ErrMaxSteps is returned when the model keeps calling tools.
type ErrMaxSteps struct{ Steps int }

func (e *ErrMaxSteps) Error() string {
	return fmt.Sprintf("the model was still calling tools after %d model calls (PARACHUTE_MAX_STEPS); stopped without a final answer", e.Steps)
}

// loop runs the tool loop: ask the model; if it wants tools, call each
// through the gateway and give it the results; repeat. At most maxSteps
// model calls are made. Tools the model asks for in the last allowed call
// are not run, since their results could never reach the model. The
// model's words before its tool calls go to progress, if not nil.
func loop(ctx context.Context, conv conversation, tools *Toolbox, maxSteps int, progress func(string)) (string, error) {
	for step := 1; ; step++ {
		text, calls, err := conv.ask(ctx)
		if err != nil {
			return "", err
		}
		if len(calls) == 0 {
			return text, nil
		}
		if step >= maxSteps {
			return "", &ErrMaxSteps{Steps: step}
		}
		if progress != nil && strings.TrimSpace(text) != "" {
			progress(strings.TrimSpace(text) + "\n\n")
		}
		results := make([]ToolResult, len(calls))
		for i, c := range calls {
			res, err := tools.Call(ctx, c.Name, c.Args)
			if err != nil {
				return "", err
			}
			results[i] = res
		}
		conv.answer(calls, results)
	}
}
