package connectors_test

import "github.com/parachute-gateway/parachute/connectors/pairing"

func pairingInvite(role, ws string) pairing.Invite { return pairing.Invite{Role: role, Workspace: ws} }
