package mcpproxy

import (
	"testing"

	"github.com/parachute-gateway/parachute/audit"
)

// The listing's record kind is the registry's: the gateway's emitter
// would refuse (and fail every tools/list) if the two drifted apart.
func TestToolListKindIsRegistered(t *testing.T) {
	info, ok := audit.LookupKind(audit.Kind(EntryToolList))
	if !ok || info.Kind != audit.KindToolList || info.Decision {
		t.Fatalf("%q in the audit registry: %+v %v; want audit.KindToolList, not a policy decision", EntryToolList, info, ok)
	}
}
