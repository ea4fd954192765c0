package main

import (
	"context"
	"fmt"
	"os"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors/pairing"
)

// grantProblem is a stored grant (an unused invite, a binding) the config
// no longer backs: a role nobody defines, a workspace or connector that is
// not there. Whoever redeems such an invite, or holds such a binding, is
// locked out or gets guest's settings without anybody having chosen that.
type grantProblem struct {
	What, Problem, Fix string
	Invite             bool // an unused invite (fatal at start), else a binding
}

// storedGrantProblems reads the config's pairing store, if there is one,
// and checks every unused invite and every binding against the config.
func storedGrantProblems(ctx context.Context, cfg *config.Config) ([]grantProblem, error) {
	path := pairing.PathIn(cfg.StateDir)
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil, nil
	}
	s, err := pairing.Open(ctx, pairing.Options{Path: path, Actor: operatorActor()})
	if err != nil {
		return nil, err
	}
	check := func(role, ws, conn string) string {
		switch {
		case !cfg.RoleDefined(role):
			return fmt.Sprintf("role %q is not defined", role)
		case ws != "" && !hasKey(cfg.Workspaces, ws):
			return fmt.Sprintf("workspace %q is not in workspaces", ws)
		case conn != "" && !hasKey(cfg.Connectors, conn):
			return fmt.Sprintf("connector %q is not in connectors", conn)
		}
		return ""
	}
	var out []grantProblem
	invs, err := s.Invites(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range sortedKeys(invs) {
		inv := invs[h]
		if p := check(inv.Role, inv.Workspace, inv.Connector); p != "" {
			out = append(out, grantProblem{What: "invite " + h, Problem: p + ": whoever redeems it is locked out of what it promises",
				Fix: fmt.Sprintf("parachute invite revoke %s, or define it in the config", h), Invite: true})
		}
	}
	bs, err := s.Bindings(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		if p := check(b.Role, b.Workspace, b.Connector); p != "" {
			out = append(out, grantProblem{What: "binding " + b.Connector + " " + b.Identity, Problem: p,
				Fix: fmt.Sprintf("parachute pair revoke %s %s (then approve or invite again), or define it in the config", b.Connector, b.Identity)})
		}
	}
	return out, nil
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// doctorGrants reports stored grants the config does not back.
func doctorGrants(ctx context.Context, cfg *config.Config) []finding {
	ps, err := storedGrantProblems(ctx, cfg)
	if err != nil {
		return []finding{{Check: "stored grants", Status: statusFail, Detail: err.Error(), Fix: "check " + pairing.PathIn(cfg.StateDir)}}
	}
	if len(ps) == 0 {
		return []finding{{Check: "stored grants", Status: statusOK, Detail: "every unused invite and binding names a defined role, workspace and connector"}}
	}
	out := make([]finding, 0, len(ps))
	for _, p := range ps {
		out = append(out, finding{Check: p.What, Status: statusFail, Detail: p.Problem, Fix: p.Fix})
	}
	return out
}
