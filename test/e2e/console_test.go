package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/console"
	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/sessions"
	"github.com/parachute-gateway/parachute/test/browser"
	"github.com/parachute-gateway/parachute/test/fakes/sandbox"
)

// liveBudget is how soon a decision must show on /console/live after the
// message that caused it was sent (the "within a second").
const liveBudget = time.Second

// consoleLoginURL finds the login URL the gateway logs at start.
var consoleLoginURL = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/console/login\?token=[0-9A-Za-z_-]+`)

// consoleGateway starts a gateway with the console on its loopback admin
// listener, a private local connector "dev" with pairing (owners, alice
// allowed, strangers may ask for a code), a workspace "team", the real
// engine and policies, and the in-process stand-in sandbox answering
// "echo: TEXT": the console is about what the gateway decides and
// records, which is the same whichever runtime answers. No containerd.
func consoleGateway(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s/policies
admin: {listen: "127.0.0.1:0"}
workspaces:
  team: {}
connectors:
  dev:
    type: local
    listen: 127.0.0.1:0
    token_env: E2E_LOCAL_TOKEN
    owners: [owner]
    allowed_users: [alice]
`, dir, repoRoot())
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	logs := &syncBuffer{}
	echo := sandbox.Echo()
	g, err := gateway.New(context.Background(), cfg, gateway.Options{
		Logger:   zerolog.New(logs),
		Runtimes: map[string]sessions.Sandboxes{"containerd": echo, "direct": echo},
		Getenv: func(k string) string {
			return map[string]string{"E2E_LOCAL_TOKEN": localToken}[k]
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	e := &env{t: t, g: g, cfg: cfg, conns: map[string]*local.Connector{}, logBuf: logs}
	for _, c := range g.Connectors() {
		if lc, ok := c.(*local.Connector); ok {
			e.conns[c.Name()] = lc
		}
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway Run: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gateway stopped before it was ready: %v\n%s", err, logs.String())
	}
	select {
	case <-e.conns["dev"].Listening():
	case err := <-done:
		done <- err
		t.Fatalf("gateway stopped before connector dev listened: %v", err)
	}
	return e
}

// TestConsoleInBrowser drives the operator console in headless Chromium
// against a gateway the test started, as an operator would: sign in with
// the logged one-time token (a second use is refused), approve a pending
// pairing with a role and a workspace and see the stranger admitted on
// the next chat message, see a denial on the live page within a second
// of the message, open a turn's trace, evaluate a recorded decision's
// input in the playground (same decision, same reason), make and revoke
// invites, stop a session; every page again on a phone. Every page is
// screenshotted and measured; any console error or CSP violation fails
// the test. Then the attacks: without the browser, a state change without
// the session cookie (401), with a missing or bad CSRF token or a foreign
// Origin (403); in it, a page on another local port posting the approve
// form with the operator's cookie, and framing the console. None changes
// anything.
func TestConsoleInBrowser(t *testing.T) {
	if why := browser.Missing(); why != "" {
		browser.Unavailable(t, why) // before anything starts
	}
	e := consoleGateway(t)
	// After the gateway, so that the browser stops first (cleanups run
	// last-in first-out): a live page left open would otherwise report
	// the stopped gateway's refused reconnections as console errors.
	b := browser.New(t)
	admin := "http://" + e.g.AdminAddr().String()
	loginURL := consoleLoginURL.FindString(e.logBuf.String())
	if loginURL == "" {
		t.Fatalf("the gateway logged no console login URL (want %s/console/login?token=...) at start:\n%s", admin, e.logBuf.String())
	}
	if !strings.HasPrefix(loginURL, admin+"/") {
		t.Fatalf("logged login URL %s is not on the admin listener %s", loginURL, admin)
	}

	var timings []browser.Timing
	// visit screenshots the page in the tab and measures it.
	visit := func(t *testing.T, name string) {
		t.Helper()
		b.Screenshot(t, name)
		timings = append(timings, b.Measure(t, name))
	}
	// open navigates to path on the console, which must answer 200.
	open := func(t *testing.T, path, name string) {
		t.Helper()
		if resp := b.Go(t, admin+path); resp.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.Status, resp.StatusText)
		}
		visit(t, name)
	}
	defer func() {
		t.Logf("console pages in Chromium (time from navigation start; bytes of document and assets):\n%s", browser.Table(timings))
	}()

	if !t.Run("login", func(t *testing.T) {
		if resp := b.Go(t, loginURL); resp.Status != http.StatusOK {
			t.Fatalf("GET login URL: %d", resp.Status)
		}
		b.Wait(t, "#signin", 2*time.Second)
		visit(t, "login")
		resp := b.Submit(t, "#signin")
		if resp.Status != http.StatusOK || resp.URL != admin+"/console/" {
			t.Fatalf("after sign-in: %d at %s (reason %q: %q), want 200 at %s/console/", resp.Status, resp.URL, resp.Headers["X-Parachute-Reasons"], b.Text(t, "body"), admin)
		}
		visit(t, "overview")
		var found bool
		for _, c := range b.Cookies(t, admin+"/console/") {
			if c.Name != "parachute_console" {
				continue
			}
			found = true
			if !c.HTTPOnly || c.SameSite != "Strict" || c.Path != "/console" {
				t.Errorf("session cookie: HttpOnly=%v SameSite=%q Path=%q, want HttpOnly, Strict, /console", c.HTTPOnly, c.SameSite, c.Path)
			}
		}
		if !found {
			t.Fatal("no parachute_console cookie after sign-in")
		}
	}) {
		t.FailNow()
	}

	t.Run("token works once", func(t *testing.T) {
		// The refusal is a 401 document, which Chromium also writes to
		// the console: expected here, and only here.
		stop := b.Expect(`Failed to load resource: the server responded with a status of 401`)
		defer stop(t)
		b.Go(t, loginURL)
		b.Wait(t, "#signin", 2*time.Second)
		// This time from the keyboard: the sign-in button has the focus.
		b.WaitFocus(t, "button#signin", 2*time.Second)
		resp := b.Enter(t)
		if resp.Status != http.StatusUnauthorized {
			t.Errorf("second use of the token: %d, want 401", resp.Status)
		}
		b.Wait(t, "#login-refused", 2*time.Second)
		if r := b.Attr(t, "#login-refused", "data-reason"); r != console.ReasonTokenUsed {
			t.Errorf("the refusal's reason is %q, want %s", r, console.ReasonTokenUsed)
		}
		if txt := b.Text(t, "#login-refused"); !strings.Contains(txt, "parachute console url") {
			t.Errorf("the refusal does not say how to get a new token: %q", txt)
		}
		b.Screenshot(t, "login-refused")
		// The refused second use did not end the first sign-in.
		if resp := b.Go(t, admin+"/console/"); resp.URL != admin+"/console/" {
			t.Errorf("after the refused reuse, /console/ went to %s", resp.URL)
		}
	})

	// What `parachute console url --config FILE` does: ask the running
	// gateway over its admin socket for a fresh token. Its URL signs in.
	t.Run("console url token", func(t *testing.T) {
		sock := gateway.AdminSocketPath(e.cfg.StateDir)
		client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
		resp, err := client.Post("http://admin/v1/console/token", "application/json", nil)
		if err != nil {
			t.Fatalf("POST /v1/console/token on %s: %v", sock, err)
		}
		var tok gateway.AdminConsoleToken
		err = json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(tok.URL, admin+"/console/login?token=") {
			t.Fatalf("POST /v1/console/token: %d %+v %v", resp.StatusCode, tok, err)
		}
		b.Go(t, tok.URL)
		b.WaitFocus(t, "button#signin", 2*time.Second)
		if resp := b.Enter(t); resp.Status != http.StatusOK || resp.URL != admin+"/console/" {
			t.Fatalf("signing in with the minted token: %d at %s", resp.Status, resp.URL)
		}
	})

	var carolTurn string
	t.Run("approve pairing", func(t *testing.T) {
		if got := e.send("dev", "carol", "hello"); strings.Contains(got, "echo:") {
			t.Fatalf("an unpaired stranger reached the agent: %q", got)
		}
		m := regexp.MustCompile(`code is ([A-Z0-9-]+)`).FindStringSubmatch(e.send("dev", "carol", "/pair"))
		if m == nil {
			t.Fatal("/pair gave no code")
		}
		code := m[1]
		open(t, "/console/access", "access")
		row := fmt.Sprintf(`tr[data-pairing=%q]`, code)
		b.Wait(t, row, 2*time.Second)
		b.SetValue(t, row+` select[name="role"]`, "member")
		b.SetValue(t, row+` input[name="workspace"]`, "team")
		if resp := b.Submit(t, row+` button[data-action="approve"]`); resp.Status != http.StatusOK {
			t.Fatalf("approve: %d at %s", resp.Status, resp.URL)
		}
		visit(t, "access-approved")
		if ok := b.Attr(t, "#flash", "data-ok"); ok != "true" {
			t.Errorf("after approving, the flash says data-ok=%q: %s", ok, b.Text(t, "#flash"))
		}
		if n := b.Count(t, row); n != 0 {
			t.Errorf("pairing %s still pending after approval", code)
		}
		bind, err := e.g.Pairing.Binding(context.Background(), "dev", "local:carol")
		if err != nil || bind == nil {
			t.Fatalf("no binding for carol after approval: %v", err)
		}
		if bind.Role != "member" || bind.Workspace != "team" {
			t.Errorf("carol bound as %q in %q, want member in team", bind.Role, bind.Workspace)
		}
		if got := e.send("dev", "carol", "hello again"); got != "echo: hello again" {
			t.Fatalf("carol after approval: %q, want the agent's echo", got)
		}
		var approvedBy string
		for _, r := range e.records() {
			if r.Detail["event"] == "pair-approve" {
				approvedBy = r.Detail["actor"]
			}
			if r.Kind == "message" && r.User == "local:carol" && r.Decision == "allow" {
				carolTurn = r.DecisionID
			}
		}
		if !strings.Contains(approvedBy, "console") {
			t.Errorf("the approval's recorded actor is %q, want the console session", approvedBy)
		}
	})

	var deniedFrom, deniedReason string
	t.Run("denial live within a second", func(t *testing.T) {
		open(t, "/console/live", "live")
		b.Wait(t, "#live-rows tr[data-seq]", 2*time.Second) // the backlog
		last := browser.Eval[int](t, b, `Math.max(0, ...[...document.querySelectorAll('#live-rows tr[data-seq]')].map(r => +r.dataset.seq))`)
		sent := time.Now()
		if got := e.send("dev", "mallory", "let me in"); strings.Contains(got, "echo:") {
			t.Fatalf("a stranger reached the agent: %q", got)
		}
		newDenial := fmt.Sprintf(`[...document.querySelectorAll('#live-rows tr[data-seq][data-kind="message"][data-allow="false"]')].some(r => +r.dataset.seq > %d)`, last)
		b.WaitTrue(t, "mallory's denied message on /console/live", newDenial, liveBudget-time.Since(sent))
		t.Logf("denial shown %v after the send (budget %v)", time.Since(sent).Round(time.Millisecond), liveBudget)
		row := browser.Eval[struct {
			Reason     string `json:"reason"`
			Playground string `json:"playground"`
		}](t, b, fmt.Sprintf(`(() => {
  const r = [...document.querySelectorAll('#live-rows tr[data-seq][data-kind="message"][data-allow="false"]')].find(r => +r.dataset.seq > %d);
  const a = r.querySelector('a[data-playground]');
  return {reason: r.dataset.reason || '', playground: a ? a.getAttribute('href') : ''};
})()`, last))
		// A stranger on a private bot: the policy's reason, as recorded.
		if !strings.Contains(row.Reason, "unknown-user") {
			t.Errorf("the denied row's reason is %q, want unknown-user", row.Reason)
		}
		deniedFrom = row.Playground
		deniedReason = row.Reason
		b.Screenshot(t, "live-denial") // the same page as "live": measured once

		// The filters: denials only, from mallory.
		b.SetValue(t, "#f-allow", "false")
		b.SetValue(t, "#f-identity", "local:mallory")
		if resp := b.Submit(t, "#live-filters button"); resp.Status != http.StatusOK {
			t.Fatalf("filtered live page: %d", resp.Status)
		}
		b.WaitTrue(t, "the filtered page's rows", `location.search.includes('allow=false') && document.readyState === 'complete' && document.querySelector('#live-rows tr[data-seq]') !== null`, 2*time.Second)
		got := browser.Eval[[]string](t, b, `[...document.querySelectorAll('#live-rows tr[data-seq]')].map(r => r.dataset.kind + ' ' + r.dataset.allow + ' ' + r.innerText.includes('local:mallory'))`)
		for _, r := range got {
			if r != "message false true" {
				t.Errorf("the filter allow=false identity=local:mallory shows a row %q", r)
			}
		}
		b.Screenshot(t, "live-filtered")
	})

	t.Run("trace", func(t *testing.T) {
		if carolTurn == "" {
			t.Skip("no admitted turn (approve pairing failed)")
		}
		open(t, "/console/live", "live-again")
		link := fmt.Sprintf(`#live-rows tr[data-turn=%q] a[data-trace]`, carolTurn)
		b.Wait(t, link, 2*time.Second)
		if href := b.Attr(t, link, "href"); href != "/console/trace/"+carolTurn {
			t.Errorf("trace link %q, want /console/trace/%s", href, carolTurn)
		}
		if resp := b.Submit(t, link); resp.Status != http.StatusOK {
			t.Fatalf("trace: %d", resp.Status)
		}
		b.Wait(t, "[data-step]", 2*time.Second)
		visit(t, "trace")
		steps := browser.Eval[[]string](t, b, `[...document.querySelectorAll('[data-step]')].map(s => s.dataset.step)`)
		if len(steps) < 2 || steps[0] != "message" || steps[1] != "session" {
			t.Errorf("carol's turn's steps %v, want message, session, ...", steps)
		}
	})

	t.Run("playground from a recorded decision", func(t *testing.T) {
		if deniedFrom == "" {
			t.Skip("no recorded denial (the live step failed)")
		}
		u, err := url.Parse(deniedFrom)
		if err != nil || u.Path != "/console/policy" || u.Query().Get("from") == "" {
			t.Fatalf("playground link %q, want /console/policy?from=...", deniedFrom)
		}
		open(t, deniedFrom, "policy")
		b.Wait(t, "#pg-input", 2*time.Second)
		if entry := browser.Eval[string](t, b, `document.querySelector('select#pg-entry').value`); entry != "message" {
			t.Errorf("playground entry %q, want message", entry)
		}
		if in := browser.Eval[string](t, b, `document.querySelector('textarea#pg-input').value`); !strings.Contains(in, "mallory") {
			t.Errorf("playground input is not mallory's recorded one: %.200s", in)
		}
		if resp := b.Submit(t, "#pg-eval"); resp.Status != http.StatusOK {
			t.Fatalf("evaluate: %d", resp.Status)
		}
		b.Wait(t, "#pg-result[data-allow]", 2*time.Second)
		visit(t, "policy-result")
		// Same input, same policy: the decision the gateway recorded.
		if got := b.Attr(t, "#pg-result", "data-allow"); got != "false" {
			t.Errorf("playground on mallory's denied input: allow=%s, want false", got)
		}
		if txt := b.Text(t, "#pg-result"); deniedReason == "" || !strings.Contains(txt, deniedReason) {
			t.Errorf("playground result does not give the recorded reason %q:\n%s", deniedReason, txt)
		}
		if same := b.Attr(t, "#pg-same", "data-same"); same != "true" {
			t.Errorf("the playground says its decision and the recorded one differ (data-same=%q): %s", same, b.Text(t, "#pg-same"))
		}
	})

	// Invites: one made on the console admits its holder once; a revoked
	// one admits nobody.
	t.Run("invites", func(t *testing.T) {
		open(t, "/console/access", "access-before-invite")
		invite := func(t *testing.T) string {
			t.Helper()
			b.SetValue(t, "#inv-role", "member")
			b.SetValue(t, "#inv-conn", "dev")
			if resp := b.Submit(t, "#invite-submit"); resp.Status != http.StatusOK {
				t.Fatalf("create invite: %d", resp.Status)
			}
			if ok := b.Attr(t, "#flash", "data-ok"); ok != "true" {
				t.Fatalf("creating an invite: %s", b.Text(t, "#flash"))
			}
			v := browser.Eval[string](t, b, `document.querySelector('#copy-value').value`)
			if !strings.HasPrefix(v, "/start ") {
				t.Fatalf("the invite to copy is %q, want /start TOKEN", v)
			}
			return v
		}
		start := invite(t)
		visit(t, "access-invite")
		if got := e.send("dev", "frank", start); !strings.Contains(strings.ToLower(got), "welcome") {
			t.Fatalf("%s from a stranger: %q", start, got)
		}
		if got := e.send("dev", "frank", "hi"); got != "echo: hi" {
			t.Fatalf("the invited user: %q", got)
		}
		if got := e.send("dev", "grace", start); !strings.Contains(got, "not valid") {
			t.Fatalf("a used invite again: %q", got)
		}

		revoked := invite(t)
		if n := b.Count(t, "tr[data-invite]"); n != 1 {
			t.Fatalf("%d unused invites listed, want the new one", n)
		}
		if resp := b.Submit(t, `tr[data-invite] button[data-action="revoke"]`); resp.Status != http.StatusOK {
			t.Fatalf("revoke invite: %d", resp.Status)
		}
		if ok := b.Attr(t, "#flash", "data-ok"); ok != "true" {
			t.Fatalf("revoking the invite: %s", b.Text(t, "#flash"))
		}
		if got := e.send("dev", "grace", revoked); !strings.Contains(got, "not valid") {
			t.Fatalf("a revoked invite admitted grace: %q", got)
		}
	})

	// Stopping carol's session from the console: her next message starts
	// a new one.
	t.Run("stop session", func(t *testing.T) {
		open(t, "/console/sessions", "sessions-before-stop")
		sid := browser.Eval[string](t, b, `(() => { const r = [...document.querySelectorAll('#sessions tr[data-session]')].find(r => r.innerText.includes('local:carol')); return r ? r.dataset.session : ''; })()`)
		if sid == "" {
			t.Fatalf("no session of local:carol on /console/sessions: %s", b.Text(t, "#sessions"))
		}
		row := fmt.Sprintf(`#sessions tr[data-session=%q]`, sid)
		if resp := b.Submit(t, row+` button[data-action="stop"]`); resp.Status != http.StatusOK {
			t.Fatalf("stop: %d", resp.Status)
		}
		if ok := b.Attr(t, "#flash", "data-ok"); ok != "true" {
			t.Fatalf("stopping the session: %s", b.Text(t, "#flash"))
		}
		if got := e.send("dev", "carol", "still there?"); got != "echo: still there?" {
			t.Fatalf("carol after her session was stopped: %q", got)
		}
		var starts []string
		for _, r := range e.records() {
			if r.Kind == "session-start" && r.User == "local:carol" {
				starts = append(starts, r.SessionID)
			}
		}
		if len(starts) < 2 || starts[len(starts)-1] == sid {
			t.Errorf("carol's sessions %v after stopping %s: want a new one", starts, sid)
		}
	})

	t.Run("other pages", func(t *testing.T) {
		for _, p := range []struct{ path, name, want string }{
			{"/console/", "overview-again", `tr[data-connector="dev"][data-state="running"]`},
			{"/console/sessions", "sessions", "main"},
			{"/console/audit", "audit", "main"},
			{"/console/policy", "policy-page", "#pg-eval"},
		} {
			open(t, p.path, p.name)
			b.Wait(t, p.want, 2*time.Second)
		}
	})

	// The issue: "works at 1280 px and on a phone". On a phone nothing
	// may need sideways scrolling of the page itself (a wide table scrolls
	// in its own box).
	t.Run("phone", func(t *testing.T) {
		b.Phone(t)
		defer b.Desktop(t)
		for _, p := range []struct{ path, name string }{
			{"/console/", "overview-phone"},
			{"/console/sessions", "sessions-phone"},
			{"/console/access", "access-phone"},
			{"/console/live", "live-phone"},
			{"/console/audit", "audit-phone"},
			{"/console/policy", "policy-phone"},
		} {
			if resp := b.Go(t, admin+p.path); resp.Status != http.StatusOK {
				t.Fatalf("GET %s on a phone: %d", p.path, resp.Status)
			}
			if o := b.Overflow(t); o > 0 {
				t.Errorf("%s is %d px wider than a %d px phone; what sticks out:\n  %s", p.path, o, browser.PhoneWidth, strings.Join(b.Overflowing(t), "\n  "))
			}
			b.Screenshot(t, p.name)
		}
	})

	t.Run("refused without cookie or with bad csrf", func(t *testing.T) {
		testConsoleRefusals(t, e, b, admin)
	})

	t.Run("another page cannot act or frame", func(t *testing.T) {
		testConsoleCrossSite(t, e, b, admin)
	})

	t.Run("null origin from another port with the real csrf token cannot act", func(t *testing.T) {
		testConsoleNullOrigin(t, e, b, admin)
	})
}

// testConsoleCrossSite: a page on another local port (another origin of
// the same site, so the SameSite=Strict cookie does go with its request)
// posts the approve form with a guessed CSRF token when the signed-in
// operator clicks on it: refused, nothing bound. The same page framing
// the console is refused by its CSP's frame-ancestors (clickjacking).
func testConsoleCrossSite(t *testing.T, e *env, b *browser.Browser, admin string) {
	m := regexp.MustCompile(`code is ([A-Z0-9-]+)`).FindStringSubmatch(e.send("dev", "erin", "/pair"))
	if m == nil {
		t.Fatal("/pair gave no code")
	}
	code := m[1]
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/favicon.ico":
			w.WriteHeader(http.StatusNoContent)
		case "/frame":
			fmt.Fprintf(w, `<!doctype html><html><body><iframe id="f" src="%s/console/access" width="800" height="600"></iframe></body></html>`, admin)
		default:
			fmt.Fprintf(w, `<!doctype html><html><body><form method="post" action="%s/console/access/pairings/%s">
<input type="hidden" name="action" value="approve"><input type="hidden" name="role" value="owner">
<input type="hidden" name="csrf" value="%s"><button id="win">Claim your prize</button></form></body></html>`, admin, code, strings.Repeat("0", 64))
		}
	}))
	defer evil.Close()

	stop := b.Expect(`Failed to load resource: the server responded with a status of 403`)
	b.Go(t, evil.URL+"/")
	resp := b.Submit(t, "#win")
	stop(t)
	if resp.Status != http.StatusForbidden {
		t.Errorf("a cross-origin post with the operator's cookie: %d at %s, want 403", resp.Status, resp.URL)
	}
	if r, _ := resp.Headers["X-Parachute-Reasons"].(string); r != console.ReasonCrossSite {
		t.Errorf("refused with reason %q, want %s (the browser says where the post came from)", r, console.ReasonCrossSite)
	}
	if bind, err := e.g.Pairing.Binding(context.Background(), "dev", "local:erin"); err != nil || bind != nil {
		t.Fatalf("a cross-origin post bound erin: %+v %v", bind, err)
	}

	b.Go(t, evil.URL+"/frame")
	b.Wait(t, "#f", 2*time.Second)
	framed := b.Problems(t) // the refusal is reported on the framing page
	if !strings.Contains(strings.Join(framed, "\n"), "frame-ancestors") {
		t.Errorf("the console in another page's frame was not refused by frame-ancestors; the page reported: %v", framed)
	}
	if got := b.Count(t, "#f"); got != 1 {
		t.Fatalf("no frame on the framing page")
	}
	b.Go(t, admin+"/console/access")
	b.Wait(t, fmt.Sprintf(`tr[data-pairing=%q]`, code), 2*time.Second) // still pending
}

// testConsoleNullOrigin: a page on another port served with
// Referrer-Policy: no-referrer makes Chromium send Origin: null, the value
// the console takes from its own no-referrer pages; the page is same-site
// (another port of 127.0.0.1), so the SameSite=Strict cookie goes with it.
// Even holding the session's real CSRF token (the strongest attacker: it
// leaked), its form post is refused, by Sec-Fetch-Site, and the pairing
// stays pending.
func testConsoleNullOrigin(t *testing.T, e *env, b *browser.Browser, admin string) {
	m := regexp.MustCompile(`code is ([A-Z0-9-]+)`).FindStringSubmatch(e.send("dev", "heidi", "/pair"))
	if m == nil {
		t.Fatal("/pair gave no code")
	}
	code := m[1]
	b.Go(t, admin+"/console/access")
	row := fmt.Sprintf(`tr[data-pairing=%q]`, code)
	b.Wait(t, row, 2*time.Second)
	csrf := b.Attr(t, row+` input[name="csrf"]`, "value")
	action := admin + b.Attr(t, row+` form`, "action")
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Referrer-Policy", "no-referrer")
		fmt.Fprintf(w, `<!doctype html><html><body><form method="post" action="%s">
<input type="hidden" name="action" value="approve"><input type="hidden" name="role" value="owner">
<input type="hidden" name="csrf" value="%s"><button id="win">Claim your prize</button></form></body></html>`, action, csrf)
	}))
	defer evil.Close()
	stop := b.Expect(`status of 403`)
	b.Go(t, evil.URL+"/")
	resp := b.Submit(t, "#win")
	stop(t)
	if resp.Status != http.StatusForbidden {
		t.Errorf("a post from a no-referrer page on another port with the real csrf token: %d at %s, want 403", resp.Status, resp.URL)
	}
	if r, _ := resp.Headers["X-Parachute-Reasons"].(string); r != console.ReasonCrossSite {
		t.Errorf("refused with reason %q, want %s", r, console.ReasonCrossSite)
	}
	if bind, err := e.g.Pairing.Binding(context.Background(), "dev", "local:heidi"); err != nil || bind != nil {
		t.Fatalf("a post from another port's no-referrer page bound heidi: %+v %v", bind, err)
	}
	b.Go(t, admin+"/console/access")
	b.Wait(t, row, 2*time.Second) // still pending
}

// testConsoleRefusals: a state change without the session cookie is 401,
// with the cookie but a missing or wrong CSRF token, or from another
// origin, 403; and none of them changes anything (the pairing stays
// pending, the stranger stays out).
func testConsoleRefusals(t *testing.T, e *env, b *browser.Browser, admin string) {
	m := regexp.MustCompile(`code is ([A-Z0-9-]+)`).FindStringSubmatch(e.send("dev", "dave", "/pair"))
	if m == nil {
		t.Fatal("/pair gave no code")
	}
	code := m[1]
	var cookie string
	for _, c := range b.Cookies(t, admin+"/console/") {
		if c.Name == "parachute_console" {
			cookie = c.Value
		}
	}
	if cookie == "" {
		t.Fatal("no session cookie in the browser")
	}
	// The CSRF token of this session, as the access page carries it.
	b.Go(t, admin+"/console/access")
	row := fmt.Sprintf(`tr[data-pairing=%q]`, code)
	b.Wait(t, row, 2*time.Second)
	csrf := b.Attr(t, row+` input[name="csrf"]`, "value")
	action := admin + b.Attr(t, row+` form`, "action")

	post := func(cookie, csrf, origin string) (int, string) {
		form := url.Values{"action": {"approve"}, "role": {"owner"}, "workspace": {""}}
		if csrf != "" {
			form.Set("csrf", csrf)
		}
		req, _ := http.NewRequest(http.MethodPost, action, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "parachute_console", Value: cookie})
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Parachute-Reasons")
	}
	for _, tc := range []struct {
		name                 string
		cookie, csrf, origin string
		want                 int
	}{
		{"no cookie", "", csrf, "", http.StatusUnauthorized},
		{"unknown cookie", strings.Repeat("0", len(cookie)), csrf, "", http.StatusUnauthorized},
		{"no csrf", cookie, "", "", http.StatusForbidden},
		{"bad csrf", cookie, otherFirst(csrf), "", http.StatusForbidden},
		{"another session's csrf length", cookie, csrf + "00", "", http.StatusForbidden},
		{"foreign origin", cookie, csrf, "http://evil.example", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := post(tc.cookie, tc.csrf, tc.origin)
			if got != tc.want {
				t.Errorf("POST %s: %d, want %d", action, got, tc.want)
			}
			if reason == "" {
				t.Errorf("the refusal names no reason (X-Parachute-Reasons)")
			}
		})
	}
	if bind, err := e.g.Pairing.Binding(context.Background(), "dev", "local:dave"); err != nil || bind != nil {
		t.Fatalf("a refused POST bound dave: %+v %v", bind, err)
	}
	if got := e.send("dev", "dave", "am I in?"); strings.Contains(got, "echo:") {
		t.Fatalf("dave reached the agent after refused approvals: %q", got)
	}
	b.Go(t, admin+"/console/access")
	b.Wait(t, row, 2*time.Second) // still pending
}

// otherFirst is s with its first character changed: a wrong token that is
// never the right one ("0"+s[1:] would be s itself when s starts with 0).
func otherFirst(s string) string {
	if s[0] == '0' {
		return "1" + s[1:]
	}
	return "0" + s[1:]
}
