package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/gateway"
)

func init() {
	register(&command{name: "invite create", summary: "print a single-use invite token: --role R [--workspace SLUG] [--expires 24h] [--connector NAME]", run: inviteCreate})
	register(&command{name: "invite list", summary: "list unused, unexpired invites (by hash prefix)", run: inviteList})
	register(&command{name: "invite revoke", summary: "delete an unused invite: invite revoke HASH (as invite list shows it)", run: inviteRevoke})
}

func inviteCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("invite create", stderr)
	sf := addStoreFlags(fs)
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
	t, err := sf.open(ctx)
	if err != nil {
		return err
	}
	if err := t.checkGrant(*role, *ws, *conn); err != nil {
		return err
	}
	var tok string
	until := time.Now().Add(*expires)
	if t.gw != nil {
		if *expires < time.Second {
			return fmt.Errorf("%w: --expires must be at least 1s", errUsage)
		}
		var inv gateway.AdminInvite
		err = t.gw.do(ctx, "POST", "/v1/invites", gateway.AdminInviteRequest{Role: *role, Workspace: *ws, Connector: *conn,
			ExpiresSeconds: int64(*expires / time.Second)}, &inv)
		tok, until = inv.Token, inv.Expires
	} else {
		tok, err = t.store.CreateInvite(ctx, pairing.Invite{Role: *role, Workspace: *ws, Connector: *conn}, *expires)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "single use, valid until %s; the user sends: /start %s\n", until.UTC().Format(time.RFC3339), tok)
	if t.gw == nil {
		fmt.Fprintln(stderr, strings.Replace(heldNote, "kind=pairing", "kind=invite", 1))
	}
	return nil
}

func inviteList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("invite list", stderr)
	sf := addStoreFlags(fs)
	if _, err := parseWithArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	t, err := sf.open(ctx)
	if err != nil {
		return err
	}
	var list []gateway.AdminInviteListed
	if t.gw != nil {
		err = t.gw.do(ctx, "GET", "/v1/invites", nil, &list)
	} else {
		var m map[string]pairing.Invite
		m, err = t.store.Invites(ctx)
		for k, inv := range m {
			list = append(list, gateway.AdminInviteListed{Hash: k, Invite: inv})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Hash < list[j].Hash })
	}
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HASH\tROLE\tWORKSPACE\tCONNECTOR\tEXPIRES")
	for _, l := range list {
		exp := l.Expires.UTC().Format(time.RFC3339)
		if l.Held {
			exp += " (held: not yet recorded by the gateway)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Hash, l.Role, l.Workspace, l.Connector, exp)
	}
	return tw.Flush()
}

func inviteRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("invite revoke HASH", stderr)
	sf := addStoreFlags(fs)
	pos, err := parseWithArgs(fs, args, 1, "HASH")
	if err != nil {
		return err
	}
	t, err := sf.open(ctx)
	if err != nil {
		return err
	}
	var inv pairing.Invite
	if t.gw != nil {
		var l gateway.AdminInviteListed
		err = t.gw.do(ctx, "POST", "/v1/invites/"+url.PathEscape(pos[0])+"/revoke", nil, &l)
		inv = l.Invite
	} else {
		inv, err = t.store.RevokeInvite(ctx, pos[0])
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked invite %s (role %s", pos[0], inv.Role)
	if inv.Workspace != "" {
		fmt.Fprintf(stdout, ", workspace %s", inv.Workspace)
	}
	fmt.Fprintln(stdout, ")")
	return nil
}
