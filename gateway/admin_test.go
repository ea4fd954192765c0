package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/gateway"
)

// adminDo sends one request to the gateway's operator API over its socket.
func adminDo(t *testing.T, g *gateway.Gateway, stateDir, method, path, body string) (int, string) {
	t.Helper()
	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", gateway.AdminSocketPath(stateDir))
	}}}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://parachute"+path, rd)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminSocketIsPrivate(t *testing.T) {
	_, _, cfg := start(t)
	st, err := os.Lstat(gateway.AdminSocketPath(cfg.StateDir))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %v, want a 0600 socket", st.Mode())
	}
	// The TCP admin listener serves no operator action.
	g, _, _ := start(t)
	resp, err := http.Get("http://" + g.AdminAddr().String() + "/v1/pairings")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("operator API on the loopback TCP listener: %d", resp.StatusCode)
	}
}

func TestAdminAPIRefusals(t *testing.T) {
	g, conn, cfg := start(t)
	send(t, conn, "alice", "hi")
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"policy status", "GET", "/v1/policy", "", 200, `"revision":"` + g.Engine.Revision() + `"`},
		{"undefined role", "POST", "/v1/pairings/ABCDEFGH/approve", `{"role":"admin"}`, 400, `role \"admin\" is not defined`},
		{"unknown field", "POST", "/v1/pairings/ABCDEFGH/approve", `{"role":"member","worksapce":"team"}`, 400, "unknown field"},
		{"no such code", "POST", "/v1/pairings/ABCDEFGH/approve", `{"role":"member"}`, 404, "not-found"},
		{"invite to a missing workspace", "POST", "/v1/invites", `{"role":"member","workspace":"nope","expires_seconds":60}`, 400, `workspace \"nope\"`},
		{"invite without expiry", "POST", "/v1/invites", `{"role":"member"}`, 400, "expires_seconds"},
		{"stop no such session", "POST", "/v1/sessions/nope/stop", "", 404, "no running session"},
		{"revoke without identity", "POST", "/v1/bindings/revoke", `{"connector":"dev"}`, 400, "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := adminDo(t, g, cfg.StateDir, tc.method, tc.path, tc.body)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%s %s: %d %s, want %d containing %q", tc.method, tc.path, code, body, tc.code, tc.want)
			}
		})
	}
}

// A session stop whose record cannot be written does not happen.
func TestAdminStopNeedsItsRecord(t *testing.T) {
	g, conn, cfg := start(t)
	send(t, conn, "alice", "hi")
	_, body := adminDo(t, g, cfg.StateDir, "GET", "/v1/sessions", "")
	var list []gateway.AdminSession
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list) != 1 || !list[0].Live {
		t.Fatalf("sessions: %v %s", err, body)
	}
	g.Audit.Close() // the audit log cannot be written from here on
	code, body := adminDo(t, g, cfg.StateDir, "POST", "/v1/sessions/"+list[0].ID+"/stop", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "audit-unavailable") {
		t.Fatalf("stop with no audit log: %d %s", code, body)
	}
	if g.Manager.Live(list[0].ID) == nil {
		t.Fatal("the session was stopped without its record")
	}
}
