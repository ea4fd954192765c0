package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestConsoleURL: `parachute console url` prints a login URL from the
// running gateway that signs in once; with no gateway it says how to
// start one.
func TestConsoleURL(t *testing.T) {
	path, _ := operatorConfig(t)
	if c, _, errOut := runCLI(t, "console", "url"); c != 1 || !strings.Contains(errOut, "no gateway is running with "+path) || !strings.Contains(errOut, "parachute serve --config") {
		t.Fatalf("console url with no gateway: %d %q", c, errOut)
	}
	g, _, _ := runGateway(t, path)
	c, out, errOut := runCLI(t, "console", "url", "--config", path)
	if c != 0 || !strings.Contains(errOut, "single use") {
		t.Fatalf("console url: %d %q %q", c, out, errOut)
	}
	u, err := url.Parse(strings.TrimSpace(out))
	if err != nil || u.Host != g.AdminAddr().String() || u.Path != "/console/login" {
		t.Fatalf("console url printed %q, want http://%s/console/login?token=…", out, g.AdminAddr())
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, want := range []int{http.StatusSeeOther, http.StatusUnauthorized} {
		resp, err := hc.PostForm("http://"+u.Host+"/console/login", url.Values{"token": {u.Query().Get("token")}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("login %d with the printed token: %s, want %d", i+1, resp.Status, want)
		}
	}
	op, err := loadOpConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	var actor string
	for _, r := range auditRecords(t, op.Cfg.Audit.Dir) {
		if r.Detail["event"] == "console-token" {
			actor = r.Detail["actor"]
		}
	}
	if !strings.HasPrefix(actor, "operator uid:") {
		t.Fatalf("the token's record names %q, want the CLI's uid", actor)
	}
}
