package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/parachute-gateway/parachute/connectors/pairing"
)

// gatewayLog stands in for the gateway's audit log.
type gatewayLog struct {
	mu sync.Mutex
	ev []pairing.Event
}

func (g *gatewayLog) RecordAuth(_ context.Context, e pairing.Event) error {
	g.mu.Lock()
	g.ev = append(g.ev, e)
	g.mu.Unlock()
	return nil
}

func TestPairAndInviteCommands(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	rec := &gatewayLog{}
	s, err := pairing.Open(ctx, pairing.Options{Path: path, Recorder: rec}) // the gateway's side
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := s.RequestCode(ctx, "tg", "telegram:111", "Mallory <owner>")
	p2, _ := s.RequestCode(ctx, "tg", "telegram:222", "Bob")

	code, out, _ := runCLI(t, "pair", "list", "--store", path)
	if code != 0 || !strings.Contains(out, p1.Code) || !strings.Contains(out, "telegram:222") {
		t.Fatalf("pair list: %d %q", code, out)
	}
	steps := []struct {
		args    []string
		code    int
		out     string // substring of stdout, or of stderr when code != 0
		errPart string
	}{
		{[]string{"pair", "approve", strings.ToLower(p1.Code), "--role", "member", "--store", path}, 0, "approved telegram:111 on tg as member", ""},
		{[]string{"pair", "approve", p1.Code, "--store", path}, 1, "", "no pending pairing request"},
		{[]string{"pair", "deny", "--store", path, p2.Code}, 0, "denied telegram:222", ""},
		{[]string{"pair", "approve", "--store", path}, 2, "", "want CODE"},
		{[]string{"pair", "approve", "XXXX", "--role", "Owner!", "--store", path}, 1, "", "role"},
		{[]string{"pair", "bindings", "--store", path}, 0, "telegram:111", ""},
		{[]string{"invite", "create", "--store", path}, 2, "", "--role is required"},
		{[]string{"invite", "create", "--role", "member", "--expires", "-1h", "--store", path}, 1, "", "expiry"},
		{[]string{"pair", "revoke", "tg", "telegram:111", "--store", path}, 0, "revoked", ""},
	}
	for _, st := range steps {
		code, out, errOut := runCLI(t, st.args...)
		if code != st.code || !strings.Contains(out, st.out) || !strings.Contains(errOut, st.errPart) {
			t.Fatalf("%v: exit %d stdout %q stderr %q", st.args, code, out, errOut)
		}
	}
	if b, _ := s.Binding(ctx, "tg", "telegram:111"); b != nil {
		t.Fatal("binding survived revoke")
	}

	code, out, _ = runCLI(t, "invite", "create", "--role", "member", "--workspace", "team", "--expires", "2h", "--store", path)
	tok := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(tok, "pi_") {
		t.Fatalf("invite create: %d %q", code, out)
	}
	if _, out, _ := runCLI(t, "invite", "list", "--store", path); strings.Contains(out, tok) || !strings.Contains(out, "team") {
		t.Fatalf("invite list shows the token or misses the invite: %q", out)
	}
	b, err := s.RedeemInvite(ctx, "tg", "telegram:333", tok)
	if err != nil || b.Role != "member" || b.Workspace != "team" || b.Source != "invite" {
		t.Fatalf("redeem: %+v %v", b, err)
	}
	// Every operator action reached the gateway's record, with the
	// operator's uid as the actor.
	want := operatorActor()
	seen := map[string]bool{}
	rec.mu.Lock()
	for _, e := range rec.ev {
		if e.Actor == want && e.OK {
			seen[e.Kind] = true
		}
	}
	rec.mu.Unlock()
	for _, k := range []string{pairing.KindPairApprove, pairing.KindPairDeny, pairing.KindRevoke, pairing.KindInviteCreate} {
		if !seen[k] {
			t.Errorf("no %s record with actor %q: %+v", k, want, rec.ev)
		}
	}
}
