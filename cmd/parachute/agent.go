package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/parachute-gateway/parachute/agent"
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
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: parachute agent < request.json\n\nReads one turn request (JSON) on stdin, writes the reply on stdout.\nEnvironment: PARACHUTE_SOCKET, PARACHUTE_MAX_STEPS. See docs/agent.md.")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if code := agent.Run(ctx, agentStdin, stdout, stderr, os.Getenv); code != 0 {
		return agentExit(code)
	}
	return nil
}
