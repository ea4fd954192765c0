package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/gateway"
)

func init() {
	register(&command{name: "pair list", summary: "list pending pairing requests [--config FILE]", run: pairList})
	register(&command{name: "pair approve", summary: "approve a pairing code: pair approve CODE [--role R] [--workspace SLUG]", run: pairApprove})
	register(&command{name: "pair deny", summary: "deny a pairing code: pair deny CODE", run: pairDeny})
	register(&command{name: "pair bindings", summary: "list identities bound by pairing or invite", run: pairBindings})
	register(&command{name: "pair revoke", summary: "remove a binding: pair revoke CONNECTOR IDENTITY", run: pairRevoke})
}

// storeFlags are the flags of every pairing and invite command: the
// gateway's config (whose running gateway, or whose store, is used) or,
// for a store file away from any config, --store.
type storeFlags struct{ config, store *string }

func addStoreFlags(fs *flag.FlagSet) storeFlags {
	return storeFlags{
		config: configFlag(fs),
		store:  fs.String("store", "", "a pairing store file to use directly, without a config or a running gateway"),
	}
}

// pairTarget is where a pairing command acts: the running gateway's
// operator API (it records the action with this operator as actor), or,
// with no gateway running, the store file itself (actions are queued in
// its outbox; grants take effect once the gateway has recorded them).
type pairTarget struct {
	gw    *adminClient
	store *pairing.Store
	op    *opConfig // nil with --store
}

func (f storeFlags) open(ctx context.Context) (*pairTarget, error) {
	if *f.store != "" {
		if _, err := os.Stat(*f.store); err != nil {
			return nil, fmt.Errorf("--store %s: %w (the gateway creates it in its state_dir; nothing is created here)", *f.store, err)
		}
		s, err := openStore(ctx, *f.store)
		return &pairTarget{store: s}, err
	}
	op, err := loadOpConfig(*f.config)
	if err != nil {
		return nil, err
	}
	gw, err := dialAdmin(ctx, op)
	switch {
	case err == nil:
		return &pairTarget{gw: gw, op: op}, nil
	case err != errNoGateway:
		return nil, err
	}
	if err := op.mustExist("pairing store", op.pairingStore()); err != nil {
		return nil, err
	}
	s, err := openStore(ctx, op.pairingStore())
	return &pairTarget{store: s, op: op}, err
}

// checkGrant refuses, before anything is queued, a role or workspace the
// config does not define (the running gateway checks the same).
func (t *pairTarget) checkGrant(role, ws, conn string) error {
	if t.op == nil {
		return nil
	}
	c := t.op.Cfg
	if _, ok := c.Roles[role]; !ok && role != "owner" && role != "member" && role != "guest" {
		return fmt.Errorf("role %q is not defined: use owner, member, guest or a role under roles: in %s", role, t.op.Path)
	}
	if _, ok := c.Workspaces[ws]; ws != "" && !ok {
		return fmt.Errorf("workspace %q is not in the workspaces of %s: the user would be locked out of it", ws, t.op.Path)
	}
	if _, ok := c.Connectors[conn]; conn != "" && !ok {
		return fmt.Errorf("connector %q is not in %s", conn, t.op.Path)
	}
	return nil
}

// parseWithArgs parses flags that may come before or after the positional
// arguments and checks their number.
func parseWithArgs(fs *flag.FlagSet, args []string, want int, names string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != want {
		return nil, fmt.Errorf("%w: want %s, got %d argument(s)", errUsage, names, len(pos))
	}
	return pos, nil
}

// openStore opens the store as the operator: no Recorder, so every action
// is queued in the store for the gateway to record (the CLI never writes
// the gateway's audit log behind its back), with the operator's uid as
// the actor. Grants wait for their record; see pairing's package doc.
func openStore(ctx context.Context, path string) (*pairing.Store, error) {
	return pairing.Open(ctx, pairing.Options{Path: path, Actor: operatorActor()})
}

// operatorActor names who runs the command by uid (and, under sudo, the
// uid sudo was run from, as sudo reports it).
func operatorActor() string {
	a := fmt.Sprintf("operator uid:%d", os.Getuid())
	if su := os.Getenv("SUDO_UID"); su != "" && os.Getuid() == 0 {
		if _, err := strconv.Atoi(su); err == nil {
			a += " sudo-from uid:" + su
		}
	}
	return a
}

// heldNote says when a grant made from the CLI takes effect.
const heldNote = "no gateway is running: in effect once the gateway has recorded it in its audit log (when it starts); `parachute logs kind=pairing` shows the record"

func pairList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pair list", stderr)
	sf := addStoreFlags(fs)
	if _, err := parseWithArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	t, err := sf.open(ctx)
	if err != nil {
		return err
	}
	var list []pairing.Pending
	if t.gw != nil {
		err = t.gw.do(ctx, "GET", "/v1/pairings", nil, &list)
	} else {
		list, err = t.store.List(ctx)
	}
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no pending pairing requests")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CODE\tCONNECTOR\tIDENTITY\tDISPLAY NAME (unverified)\tEXPIRES")
	for _, p := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%q\t%s\n", p.Code, p.Connector, p.Identity, p.DisplayName, p.Expires.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func pairApprove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pair approve CODE", stderr)
	sf := addStoreFlags(fs)
	role := fs.String("role", "member", "role to grant")
	ws := fs.String("workspace", "", "shared workspace slug to grant (default: the user's own)")
	pos, err := parseWithArgs(fs, args, 1, "CODE")
	if err != nil {
		return err
	}
	t, err := sf.open(ctx)
	if err != nil {
		return err
	}
	if err := t.checkGrant(*role, *ws, ""); err != nil {
		return err
	}
	var p pairing.Pending
	if t.gw != nil {
		err = t.gw.do(ctx, "POST", "/v1/pairings/"+url.PathEscape(pairing.NormalizeCode(pos[0]))+"/approve", gateway.AdminApprove{Role: *role, Workspace: *ws}, &p)
	} else {
		p, err = t.store.Approve(ctx, pos[0], *role, *ws)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "approved %s on %s as %s\n", p.Identity, p.Connector, *role)
	if t.gw == nil {
		fmt.Fprintln(stderr, heldNote)
	}
	return nil
}

func pairDeny(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pair deny CODE", stderr)
	sf := addStoreFlags(fs)
	pos, err := parseWithArgs(fs, args, 1, "CODE")
	if err != nil {
		return err
	}
	t, err := sf.open(ctx)
	if err != nil {
		return err
	}
	var p pairing.Pending
	if t.gw != nil {
		err = t.gw.do(ctx, "POST", "/v1/pairings/"+url.PathEscape(pairing.NormalizeCode(pos[0]))+"/deny", nil, &p)
	} else {
		p, err = t.store.Deny(ctx, pos[0])
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "denied %s on %s\n", p.Identity, p.Connector)
	return nil
}

func pairBindings(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pair bindings", stderr)
	sf := addStoreFlags(fs)
	if _, err := parseWithArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	t, err := sf.open(ctx)
	if err != nil {
		return err
	}
	var list []gateway.AdminBinding
	if t.gw != nil {
		err = t.gw.do(ctx, "GET", "/v1/bindings", nil, &list)
	} else {
		var bs []pairing.BoundIdentity
		bs, err = t.store.Bindings(ctx)
		for _, b := range bs {
			list = append(list, gateway.AdminBinding{Connector: b.Connector, Identity: b.Identity, Role: b.Role, Workspace: b.Workspace, Source: b.Source, Held: b.Held})
		}
	}
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTOR\tIDENTITY\tROLE\tWORKSPACE\tSOURCE")
	for _, b := range list {
		src := b.Source
		if b.Held {
			src += " (held: not yet recorded by the gateway)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Connector, b.Identity, b.Role, b.Workspace, src)
	}
	return tw.Flush()
}

func pairRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pair revoke CONNECTOR IDENTITY", stderr)
	sf := addStoreFlags(fs)
	pos, err := parseWithArgs(fs, args, 2, "CONNECTOR IDENTITY")
	if err != nil {
		return err
	}
	t, err := sf.open(ctx)
	if err != nil {
		return err
	}
	if t.gw != nil {
		err = t.gw.do(ctx, "POST", "/v1/bindings/revoke", gateway.AdminRevoke{Connector: pos[0], Identity: pos[1]}, nil)
	} else {
		err = t.store.Revoke(ctx, pos[0], pos[1])
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s on %s\n", pos[1], pos[0])
	return nil
}
