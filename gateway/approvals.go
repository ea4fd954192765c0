package gateway

import (
	"slices"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors"
)

// chatApprovals lets connector owners answer pairing requests from chat
// (connectors/approvals.go). Who is told and which roles exist follow the
// config in force: the last one reloaded, else the one started with.
func (g *Gateway) chatApprovals() *connectors.Approvals {
	live := func() *config.Config {
		if c := g.applied.Load(); c != nil {
			return c
		}
		return g.cfg
	}
	return &connectors.Approvals{
		Owners: func(name string) []string {
			if k := live().Connectors[name]; k != nil {
				return slices.Clone(k.Owners)
			}
			return nil
		},
		RoleDefined: func(role string) bool {
			if slices.Contains(config.BuiltinRoles, role) {
				return true
			}
			_, ok := live().Roles[role]
			return ok
		},
	}
}
