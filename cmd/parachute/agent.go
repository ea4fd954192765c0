package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/agentadapt"
)

func init() {
	register(&command{name: "agent", summary: "in the sandbox: answer one turn (JSON request on stdin, reply on stdout)", run: runAgent})
}

// agentExit passes the agent's exit code through; the agent has already
// written its one-line error to stderr.
type agentExit int

func (e agentExit) Error() string { return fmt.Sprintf("agent exited %d", int(e)) }
func (e agentExit) ExitCode() int { return int(e) }

// agentStdin is the agent's stdin; tests replace it.
var agentStdin io.Reader = os.Stdin

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("agent", stderr)
	kind := fs.String("kind", "parachute", "the agent: parachute (the reference agent), "+strings.Join(agentadapt.Kinds, " or ")+" (a real agent's CLI, adapted)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: parachute agent [--kind parachute|claude-code|codex] < request.json\n\nReads one turn request (JSON) on stdin, writes the reply on stdout.\nEnvironment: PARACHUTE_SOCKET, PARACHUTE_MAX_STEPS, PARACHUTE_AGENT_TOOLS (real agents' built-in tools). See docs/agent.md.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *kind != "parachute" {
		if !slices.Contains(agentadapt.Kinds, *kind) {
			return fmt.Errorf("%w: --kind %q: want parachute, %s", errUsage, *kind, strings.Join(agentadapt.Kinds, " or "))
		}
		if code := agentadapt.Run(ctx, agentadapt.Options{Kind: *kind, Getenv: os.Getenv}, agentStdin, stdout, stderr); code != 0 {
			return agentExit(code)
		}
		return nil
	}
	if code := agent.Run(ctx, agentStdin, stdout, stderr, os.Getenv); code != 0 {
		return agentExit(code)
	}
	return nil
}
