package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/gateway"
)

func init() {
	register(&command{name: "serve", summary: "run the gateway (connectors, sessions, sandboxes, audit)", run: runServe})
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	flagPath := configFlag(fs)
	pretty := fs.Bool("pretty", false, "human-readable log lines instead of JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	found, err := findConfig(*flagPath)
	if err != nil {
		return err
	}
	path := &found
	withUnits()
	var out io.Writer = stderr
	if *pretty {
		out = zerolog.ConsoleWriter{Out: stderr, TimeFormat: "15:04:05"}
	}
	log := zerolog.New(out).With().Timestamp().Logger()
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if err := preflight(ctx, *path, cfg, stderr); err != nil {
		return err
	}
	g, err := gateway.New(ctx, cfg, gateway.Options{Logger: log})
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				next, err := config.Load(*path)
				if err == nil {
					err = g.Reload(ctx, next)
				}
				if err != nil {
					log.Error().Err(err).Msg("config reload refused; the running config stays")
				}
			}
		}
	}()
	go func() {
		<-g.Ready()
		fmt.Fprintf(stdout, "parachute: serving; metrics on http://%s/metrics\n", g.AdminAddr())
		for _, c := range g.Connectors() {
			fmt.Fprintf(stdout, "parachute: connector %s running\n", c.Name())
		}
	}()
	return g.Run(ctx)
}

// preflight refuses to start what could only fail later or silently: a
// secret's variable unset, a vault that is not there (it would be
// created empty), a listen address another process holds (a connector
// would retry it forever). Each problem names its field and the fix;
// `parachute doctor` reports the same and more.
func preflight(ctx context.Context, path string, cfg *config.Config, stderr io.Writer) error {
	var problems []config.HostProblem
	problems = append(problems, cfg.CheckEnv(os.Getenv)...)
	problems = append(problems, cfg.CheckVault()...)
	problems = append(problems, cfg.CheckPorts()...)
	// An unused invite the config no longer backs (its workspace removed,
	// its role renamed) would lock out whoever redeems it: fatal. A binding
	// in that state is said (its holder gets guest's settings for a role
	// nobody defines, or a workspace that is not there) and left to fix.
	grants, err := storedGrantProblems(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: pairing store: %w", path, err)
	}
	for _, g := range grants {
		if g.Invite {
			problems = append(problems, config.HostProblem{Field: g.What, Problem: g.Problem, Fix: g.Fix})
		} else {
			fmt.Fprintf(stderr, "parachute serve: warning: %s: %s; %s\n", g.What, g.Problem, g.Fix)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: the gateway cannot start:", path)
	for _, p := range problems {
		b.WriteString("\n  " + p.String())
	}
	return errors.New(b.String())
}

// withUnits makes every duration in the process log a string with its
// unit ("retry_in":"15m10.8s"), not a bare number of milliseconds
// ("retry_in":910800) that reads as seconds or nothing at all.
func withUnits() { zerolog.DurationFieldFormat = zerolog.DurationFormatString }
