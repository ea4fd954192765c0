package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parachute-gateway/parachute/connectors/pairing"
)

func init() {
	register(&command{name: "invite create", summary: "print a single-use invite token: --role R [--workspace SLUG] [--expires 24h] [--connector NAME]", run: inviteCreate})
	register(&command{name: "invite list", summary: "list unused, unexpired invites (by hash prefix)", run: inviteList})
}

func inviteCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("invite create", stderr)
	store := storeFlag(fs)
	role := fs.String("role", "", "role the invite grants (required)")
	ws := fs.String("workspace", "", "shared workspace slug the invite grants")
	conn := fs.String("connector", "", "only this connector may redeem it (default: any)")
	expires := fs.Duration("expires", 24*time.Hour, "how long the invite is valid")
	if _, err := parseWithArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	if *role == "" {
		return fmt.Errorf("%w: --role is required", errUsage)
	}
	s, err := openStore(ctx, *store)
	if err != nil {
		return err
	}
	tok, err := s.CreateInvite(ctx, pairing.Invite{Role: *role, Workspace: *ws, Connector: *conn}, *expires)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "single use, valid until %s; the user sends: /start %s\n", time.Now().Add(*expires).UTC().Format(time.RFC3339), tok)
	fmt.Fprintln(stderr, strings.Replace(heldNote, "kind=pairing", "kind=invite", 1))
	return nil
}

func inviteList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("invite list", stderr)
	store := storeFlag(fs)
	if _, err := parseWithArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	s, err := openStore(ctx, *store)
	if err != nil {
		return err
	}
	m, err := s.Invites(ctx)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HASH\tROLE\tWORKSPACE\tCONNECTOR\tEXPIRES")
	for _, k := range keys {
		inv := m[k]
		exp := inv.Expires.UTC().Format(time.RFC3339)
		if inv.Held {
			exp += " (held: not yet recorded by the gateway)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k, inv.Role, inv.Workspace, inv.Connector, exp)
	}
	return tw.Flush()
}
