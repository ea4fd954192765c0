package gateway_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/gateway"
)

// findRecord returns the last record whose detail event is event.
func findRecord(t *testing.T, dir, event string) *audit.Record {
	t.Helper()
	var found *audit.Record
	if err := audit.Read(dir, audit.ReadOptions{}, func(e audit.Entry) error {
		if e.Record.Detail["event"] == event {
			r := e.Record
			found = &r
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// TestConsoleEndToEnd: a token minted over the admin socket (recorded with
// the socket's operator as actor) signs a browser in on the admin
// listener, and a console action is the operator API's, recorded with the
// console session as actor.
func TestConsoleEndToEnd(t *testing.T) {
	g, conn, cfg := start(t)
	send(t, conn, "alice", "hi")
	code, body := adminDo(t, g, cfg.StateDir, "POST", "/v1/console/token", "")
	var tok gateway.AdminConsoleToken
	if code != http.StatusOK || json.Unmarshal([]byte(body), &tok) != nil {
		t.Fatalf("POST /v1/console/token: %d %s", code, body)
	}
	u, err := url.Parse(tok.URL)
	if err != nil || u.Host != g.AdminAddr().String() || u.Path != "/console/login" || len(u.Query().Get("token")) != 64 {
		t.Fatalf("console URL %q: want http://%s/console/login?token=<64 hex>", tok.URL, g.AdminAddr())
	}
	if r := findRecord(t, cfg.Audit.Dir, "console-token"); r == nil || !strings.HasPrefix(r.Detail["actor"], "operator uid:") {
		t.Fatalf("token record %+v: want the socket's operator as actor", r)
	}
	// The token the gateway minted at start is recorded too.
	var starts int
	_ = audit.Read(cfg.Audit.Dir, audit.ReadOptions{Filter: audit.Filter{"event": "console-token", "actor": "gateway start"}}, func(audit.Entry) error { starts++; return nil })
	if starts != 1 {
		t.Fatalf("%d start tokens recorded, want 1", starts)
	}

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := hc.PostForm("http://"+u.Host+"/console/login", url.Values{"token": {u.Query().Get("token")}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/console/" || !strings.Contains(string(page), `data-connector="dev"`) {
		t.Fatalf("after login: %s at %s\n%s", resp.Status, resp.Request.URL, page)
	}
	if !strings.Contains(string(page), `data-state="running"`) {
		t.Errorf("the dev connector is not shown running:\n%s", page)
	}
	resp, err = hc.Get("http://" + u.Host + "/console/sessions")
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`data-session="([^"]+)"`).FindStringSubmatch(string(page))
	c := regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`).FindStringSubmatch(string(page))
	if m == nil || c == nil {
		t.Fatalf("sessions page without alice's session or a csrf field:\n%s", page)
	}
	resp, err = hc.PostForm("http://"+u.Host+"/console/sessions/"+m[1]+"/stop", url.Values{"csrf": {c[1]}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "Stopped session "+m[1]) {
		t.Fatalf("stop: %s\n%s", resp.Status, page)
	}
	r := findRecord(t, cfg.Audit.Dir, "session-stop")
	if r == nil || !strings.HasPrefix(r.Detail["actor"], "operator console session ") || !strings.Contains(r.Detail["actor"], "minted by operator uid:") {
		t.Fatalf("stop record %+v: want the console session (and who minted its token) as actor", r)
	}
	if g.Manager.Live(m[1]) != nil {
		t.Fatal("the session still runs")
	}
}

// TestConsoleCannotMintTokens: the operator API as the console calls it
// refuses to mint console tokens; only the socket's operator may.
func TestConsoleCannotMintTokens(t *testing.T) {
	g, _, _ := start(t)
	rec := httptest.NewRecorder()
	g.AdminHandlerAs("operator console session 00000000 (test)").ServeHTTP(rec, httptest.NewRequest("POST", "/v1/console/token", nil))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), gateway.AdminReasonPeerForbidden) {
		t.Fatalf("console minting a token: %d %s", rec.Code, rec.Body)
	}
	// Nor does the socket's handler serve a request that did not come
	// over the socket.
	rec = httptest.NewRecorder()
	g.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/sessions", nil))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("admin handler without a socket peer: %d", rec.Code)
	}
}

// TestConsoleTokenNeedsItsRecord: with the audit log down no token is
// minted, and the CLI is told why.
func TestConsoleTokenNeedsItsRecord(t *testing.T) {
	g, _, cfg := start(t)
	g.Audit.Close() // the audit log cannot be written from here on
	code, body := adminDo(t, g, cfg.StateDir, "POST", "/v1/console/token", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, gateway.AdminReasonNotRecorded) || strings.Contains(body, "token=") {
		t.Fatalf("token with no audit log: %d %s", code, body)
	}
}

// TestConsoleRefusesAForeignHost: on the gateway's own admin listener, a
// request naming another host (DNS rebinding) is refused before anything
// else, and /metrics and /healthz stay as they were.
func TestConsoleRefusesAForeignHost(t *testing.T) {
	g, _, _ := start(t)
	for _, tc := range []struct {
		path, host string
		code       int
	}{
		{"/console/login", "evil.example:" + strconv.Itoa(g.AdminAddr().(*net.TCPAddr).Port), http.StatusMisdirectedRequest},
		{"/console/login", g.AdminAddr().String(), http.StatusOK},
		{"/healthz", "evil.example", http.StatusOK},
	} {
		req, _ := http.NewRequest("GET", "http://"+g.AdminAddr().String()+tc.path, nil)
		req.Host = tc.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s Host %s: %s, want %d", tc.path, tc.host, resp.Status, tc.code)
		}
		if strings.HasPrefix(tc.path, "/console/") && resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: no Content-Security-Policy", tc.path)
		}
	}
}
