package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/parachute-gateway/parachute/gateway"
)

func init() {
	register(&command{name: "console url", summary: "print a one-time operator console login URL (valid 10 minutes, single use): [--config FILE]", run: consoleURL})
}

// consoleURL asks the running gateway, over its admin socket, for a fresh
// console login token and prints the URL holding it. The gateway records
// the token with this operator's uid as actor before it exists.
func consoleURL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("console url", stderr)
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
		return fmt.Errorf("no gateway is running with %s (no answer on %s); the console is served by the running gateway: start it (parachute serve --config %s)",
			op.Path, gateway.AdminSocketPath(op.Cfg.StateDir), op.Path)
	}
	if err != nil {
		return err
	}
	var t gateway.AdminConsoleToken
	if err := gw.do(ctx, "POST", "/v1/console/token", nil, &t); err != nil {
		return err
	}
	fmt.Fprintln(stdout, t.URL)
	fmt.Fprintf(stderr, "single use, valid until %s; open it in a browser on this host (the console listens on loopback only)\n", t.Expires.UTC().Format(time.RFC3339))
	return nil
}
