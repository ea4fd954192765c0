package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/bridge"
)

func init() {
	register(&command{name: "bridge", summary: "in the sandbox: forward a loopback TCP proxy port to the session socket", run: runBridge})
}

func runBridge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bridge", stderr)
	listen := fs.String("listen", bridge.DefaultListen, "loopback `address` to listen on (HTTPS_PROXY=http://ADDRESS)")
	socket := fs.String("socket", "", "session socket `path` (default $PARACHUTE_SOCKET, else "+agent.DefaultSocket+")")
	maxConns := fs.Int("max-conns", bridge.DefaultMaxConns, "connections held at once; more are closed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *socket == "" {
		*socket = agent.SocketPath(os.Getenv)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("bridge starting", "listen", *listen, "socket", *socket, "max_conns", *maxConns)
	return serveBridge(ctx, *listen, bridge.Options{Socket: *socket, MaxConns: *maxConns, Logger: log})
}

// serveBridge runs the egress bridge on addr until ctx ends (`parachute
// bridge`, and `parachute sandbox init` for sessions with network).
func serveBridge(ctx context.Context, addr string, opts bridge.Options) error {
	b, err := bridge.New(opts)
	if err != nil {
		return err
	}
	ln, err := bridge.Listen(ctx, addr)
	if err != nil {
		return err
	}
	return b.Serve(ctx, ln)
}
