package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/parachute-gateway/parachute/connectors/pairing"
)

// defaultStateDir is where the store lives unless --store or
// $PARACHUTE_STORE says otherwise (config state_dir's default).
const defaultStateDir = "/var/lib/parachute"

func init() {
	register(&command{name: "pair list", summary: "list pending pairing requests", run: pairList})
	register(&command{name: "pair approve", summary: "approve a pairing code: pair approve CODE [--role R] [--workspace SLUG]", run: pairApprove})
	register(&command{name: "pair deny", summary: "deny a pairing code: pair deny CODE", run: pairDeny})
	register(&command{name: "pair bindings", summary: "list identities bound by pairing or invite", run: pairBindings})
	register(&command{name: "pair revoke", summary: "remove a binding: pair revoke CONNECTOR IDENTITY", run: pairRevoke})
}

func storeFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("PARACHUTE_STORE")
	if def == "" {
		def = pairing.PathIn(defaultStateDir)
	}
	return fs.String("store", def, "pairing store file (default $PARACHUTE_STORE or "+pairing.PathIn(defaultStateDir)+")")
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
const heldNote = "in effect once the gateway has recorded it in its audit log (on its next message, or when it starts); `parachute logs kind=pairing` shows the record"

func pairList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pair list", stderr)
	store := storeFlag(fs)
	if _, err := parseWithArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	s, err := openStore(ctx, *store)
	if err != nil {
		return err
	}
	list, err := s.List(ctx)
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
	store := storeFlag(fs)
	role := fs.String("role", "member", "role to grant")
	ws := fs.String("workspace", "", "shared workspace slug to grant (default: the user's own)")
	pos, err := parseWithArgs(fs, args, 1, "CODE")
	if err != nil {
		return err
	}
	s, err := openStore(ctx, *store)
	if err != nil {
		return err
	}
	p, err := s.Approve(ctx, pos[0], *role, *ws)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "approved %s on %s as %s\n", p.Identity, p.Connector, *role)
	fmt.Fprintln(stderr, heldNote)
	return nil
}

func pairDeny(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pair deny CODE", stderr)
	store := storeFlag(fs)
	pos, err := parseWithArgs(fs, args, 1, "CODE")
	if err != nil {
		return err
	}
	s, err := openStore(ctx, *store)
	if err != nil {
		return err
	}
	p, err := s.Deny(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "denied %s on %s\n", p.Identity, p.Connector)
	return nil
}

func pairBindings(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pair bindings", stderr)
	store := storeFlag(fs)
	if _, err := parseWithArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	s, err := openStore(ctx, *store)
	if err != nil {
		return err
	}
	list, err := s.Bindings(ctx)
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
	store := storeFlag(fs)
	pos, err := parseWithArgs(fs, args, 2, "CONNECTOR IDENTITY")
	if err != nil {
		return err
	}
	s, err := openStore(ctx, *store)
	if err != nil {
		return err
	}
	if err := s.Revoke(ctx, pos[0], pos[1]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s on %s\n", pos[1], pos[0])
	return nil
}
