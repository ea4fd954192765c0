package gateway

import (
	"slices"
	"testing"

	"github.com/parachute-gateway/parachute/config"
)

// Chat approvals follow the config in force: after a reload, the new
// owners are told and the new roles may be granted; the old ones not.
func TestChatApprovalsFollowTheLiveConfig(t *testing.T) {
	started := &config.Config{
		Connectors: map[string]*config.Connector{"tg": {Owners: []string{"1001"}}},
		Roles:      map[string]config.Role{"ops": {}},
	}
	g := &Gateway{cfg: started}
	a := g.chatApprovals()
	if got := a.Owners("tg"); !slices.Equal(got, []string{"1001"}) {
		t.Fatalf("owners at start: %q", got)
	}
	for role, want := range map[string]bool{"owner": true, "member": true, "guest": true, "ops": true, "admin": false, "": false} {
		if got := a.RoleDefined(role); got != want {
			t.Fatalf("RoleDefined(%q) = %t at start, want %t", role, got, want)
		}
	}
	g.applied.Store(&config.Config{
		Connectors: map[string]*config.Connector{"tg": {Owners: []string{"2002"}}},
		Roles:      map[string]config.Role{"admin": {}},
	})
	if got := a.Owners("tg"); !slices.Equal(got, []string{"2002"}) {
		t.Fatalf("owners after the reload: %q", got)
	}
	if a.RoleDefined("ops") || !a.RoleDefined("admin") {
		t.Fatal("roles do not follow the reload")
	}
	if got := a.Owners("nope"); got != nil {
		t.Fatalf("owners of an unknown connector: %q", got)
	}
}
