package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/parachute-gateway/parachute/gateway"
)

func init() {
	register(&command{name: "status", summary: "is the config's gateway running; its policy revision, last refused reload and live sessions [--config FILE]", run: status})
}

func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	cfgPath := configFlag(fs)
	if _, err := parseWithArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	op, err := loadOpConfig(*cfgPath)
	if err != nil {
		return err
	}
	gw, err := dialAdmin(ctx, op)
	if err == errNoGateway {
		return fmt.Errorf("no gateway is running with %s (no answer on %s)", op.Path, gateway.AdminSocketPath(op.Cfg.StateDir))
	}
	if err != nil {
		return err
	}
	var p gateway.AdminPolicy
	if err := gw.do(ctx, "GET", "/v1/policy", nil, &p); err != nil {
		return err
	}
	var ss []gateway.AdminSession
	if err := gw.do(ctx, "GET", "/v1/sessions", nil, &ss); err != nil {
		return err
	}
	live := 0
	for _, s := range ss {
		if s.Live {
			live++
		}
	}
	fmt.Fprintf(stdout, "running: %s (config %s)\npolicy revision: %s\nsessions: %d open, %d live\n", gateway.AdminSocketPath(op.Cfg.StateDir), op.Path, p.Revision, len(ss), live)
	if p.Refused != nil {
		fmt.Fprintf(stdout, "last policy reload REFUSED at %s (revision %s kept in force): %s\n", p.Refused.At.UTC().Format(time.RFC3339), p.Refused.Revision, p.Refused.Error)
		return fmt.Errorf("the policy files on disk are not in force; fix them (parachute policy check %s)", op.Cfg.Policies)
	}
	return nil
}
