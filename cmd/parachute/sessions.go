package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/sessions"
)

func init() {
	register(&command{name: "sessions list", summary: "list sessions (live ones with their trust and runtime): [--all] [--config FILE]", run: sessionsList})
	register(&command{name: "sessions stop", summary: "end a session and stop its sandbox (recorded with you as actor): sessions stop ID", run: sessionsStop})
}

func sessionsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sessions list", stderr)
	cfgPath := configFlag(fs)
	all := fs.Bool("all", false, "include ended sessions")
	if _, err := parseWithArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	op, err := loadOpConfig(*cfgPath)
	if err != nil {
		return err
	}
	var list []gateway.AdminSession
	gw, err := dialAdmin(ctx, op)
	switch {
	case err == nil:
		path := "/v1/sessions"
		if *all {
			path += "?all=1"
		}
		if err := gw.do(ctx, "GET", path, nil, &list); err != nil {
			return err
		}
	case err == errNoGateway:
		// The gateway holds the store open while it runs; with none
		// running, the file is read directly (nothing is live).
		if err := op.mustExist("session store", op.sessionStore()); err != nil {
			return err
		}
		st, err := sessions.OpenStore(sessions.StoreOptions{Path: op.sessionStore()})
		if err != nil {
			return err
		}
		defer st.Close()
		ss, err := st.List(ctx, "")
		if err != nil {
			return err
		}
		for _, s := range ss {
			if *all || s.Ended.IsZero() {
				list = append(list, gateway.AdminSession{Session: s})
			}
		}
		fmt.Fprintln(stderr, "no gateway is running: no session is live")
	default:
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no sessions")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONNECTOR\tOWNER\tWORKSPACE\tSTATE\tTRUST\tRUNTIME\tTURNS\tLAST ACTIVE")
	for _, s := range list {
		state := "idle"
		switch {
		case !s.Ended.IsZero():
			state = "ended"
		case s.Live:
			state = "live"
			if s.ReadOnly {
				state += ",read-only"
			}
			if s.Network {
				state += ",network"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.ID, s.Connector, s.Owner, s.Workspace, state,
			or(s.TrustLevel, "-"), or(s.Runtime, "-"), s.Turns, s.LastActive.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func sessionsStop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sessions stop ID", stderr)
	cfgPath := configFlag(fs)
	pos, err := parseWithArgs(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	op, err := loadOpConfig(*cfgPath)
	if err != nil {
		return err
	}
	gw, err := dialAdmin(ctx, op)
	if err == errNoGateway {
		return fmt.Errorf("no gateway is running with %s (no answer on %s), so no session's sandbox runs; "+
			"a stop is recorded by the gateway, so start it first (parachute serve --config %s)", op.Path, gateway.AdminSocketPath(op.Cfg.StateDir), op.Path)
	}
	if err != nil {
		return err
	}
	var s gateway.AdminSession
	if err := gw.do(ctx, "POST", "/v1/sessions/"+url.PathEscape(pos[0])+"/stop", nil, &s); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stopped session %s of %s on %s\n", s.ID, s.Owner, s.Connector)
	return nil
}
