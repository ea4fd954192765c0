package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/html"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/console"
	"github.com/parachute-gateway/parachute/engine"
)

// adminCall is one request the console made of the operator API.
type adminCall struct {
	Method, Path, Actor, Body string
}

// fakeBackend is a gateway stand-in: a real audit log and a real engine
// over the repository's policies, and an operator API that answers from
// fixed lists and remembers what it was asked, and by whom.
type fakeBackend struct {
	log    *audit.Log
	dir    string
	eng    *engine.Engine
	reg    *prometheus.Registry
	failRe error // Record fails with this when set

	mu    sync.Mutex
	calls []adminCall
}

func newBackend(t *testing.T) *fakeBackend {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := audit.Open(dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var data struct {
		Parachute struct {
			Config map[string]any `json:"config"`
		} `json:"parachute"`
	}
	b, err := os.ReadFile("../policies/examples/data.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(context.Background(), engine.Options{PolicyDir: "../policies", Data: data.Parachute.Config,
		Recorder: audit.Recorder{Log: l}})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeBackend{log: l, dir: dir, eng: eng, reg: prometheus.NewRegistry()}
}

func (f *fakeBackend) Admin(actor string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls = append(f.calls, adminCall{r.Method, r.URL.Path, actor, string(body)})
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/pairings":
			_, _ = io.WriteString(w, `[{"code":"ABCD1234","connector":"tg","identity":"telegram:42","display_name":"<b>Eve</b>\u202egnp.sh","created":"2026-12-04T10:00:00Z","expires":"2026-12-04T11:00:00Z"}]`)
		case "GET /v1/invites":
			_, _ = io.WriteString(w, `[{"hash":"0123456789abcdef","role":"member","created":"2026-12-04T10:00:00Z","expires":"2026-12-05T10:00:00Z"}]`)
		case "GET /v1/bindings":
			_, _ = io.WriteString(w, `[{"connector":"tg","identity":"telegram:7","role":"owner","source":"pairing"}]`)
		case "GET /v1/sessions":
			_, _ = io.WriteString(w, `[{"id":"s1","owner":"telegram:7","connector":"tg","workspace":"w","created":"2026-12-04T10:00:00Z","last_active":"2026-12-04T10:05:00Z","turns":3,"live":true,"trust_level":"sandboxed","runtime":"containerd","network":true,"tokens_today":1234}]`)
		case "POST /v1/invites":
			_, _ = io.WriteString(w, `{"token":"tok123","expires":"2026-12-05T10:00:00Z"}`)
		case "POST /v1/pairings/NOPE/approve":
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"reason":"not-found","error":"no pending request with code NOPE"}`)
		default:
			_, _ = io.WriteString(w, `{}`)
		}
	})
}

func (f *fakeBackend) Record(ctx context.Context, r audit.Record) error {
	if f.failRe != nil {
		return f.failRe
	}
	_, err := f.log.Append(ctx, r)
	return err
}
func (f *fakeBackend) AuditDir() string                         { return f.dir }
func (f *fakeBackend) VerifyAudit() (audit.VerifyReport, error) { return audit.Verify(f.dir) }
func (f *fakeBackend) Policy() console.PolicyStatus {
	return console.PolicyStatus{Revision: f.eng.Revision(), Dir: "../policies", Refused: f.eng.Refused()}
}
func (f *fakeBackend) Explain(ctx context.Context, e engine.Entry, doc any) (engine.Decision, []*topdown.Event) {
	return f.eng.Explain(ctx, engine.RawInput{For: e, Doc: doc})
}
func (f *fakeBackend) Metrics() prometheus.Gatherer { return f.reg }
func (f *fakeBackend) Health(context.Context) console.Health {
	return console.Health{Connectors: []console.ConnectorHealth{{Name: "tg", State: console.ConnectorBackingOff, Error: "dial tcp: refused"}},
		Sandboxes: map[string]int{"containerd": 2}, PoolSize: 2, PoolReady: 1}
}

func (f *fakeBackend) adminCalls() []adminCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]adminCall(nil), f.calls...)
}

// records returns every record of the log.
func (f *fakeBackend) records(t *testing.T) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := audit.Read(f.dir, audit.ReadOptions{}, func(e audit.Entry) error { out = append(out, e.Record); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t   *testing.T
	b   *fakeBackend
	c   *console.Console
	srv *httptest.Server
	clk *clock
}

// newFixture serves a console on a real loopback listener, as the
// gateway's admin listener does.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	b := newBackend(t)
	srv := httptest.NewUnstartedServer(nil)
	clk := &clock{t: time.Now()}
	c, err := console.New(console.Options{Backend: b, Addr: srv.Listener.Addr().String(), Now: clk.Now, FollowPoll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = c.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return &fixture{t: t, b: b, c: c, srv: srv, clk: clk}
}

// client does not follow redirects: tests look at each answer.
func (f *fixture) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (f *fixture) mint() string {
	f.t.Helper()
	u, err := f.c.MintURL(context.Background(), "test")
	if err != nil {
		f.t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		f.t.Fatal(err)
	}
	if pu.Host != f.c.Addr() || pu.Path != "/console/login" {
		f.t.Fatalf("login URL %q: want http://%s/console/login?token=…", u, f.c.Addr())
	}
	return pu.Query().Get("token")
}

func (f *fixture) post(hc *http.Client, path string, form url.Values, hdr map[string]string) *http.Response {
	f.t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

func (f *fixture) get(hc *http.Client, path string) (*http.Response, string) {
	f.t.Helper()
	resp, err := hc.Get(f.srv.URL + path)
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// login signs a fresh client in and returns it with the session's CSRF
// token (read from a page, as a browser would).
func (f *fixture) login() (*http.Client, string) {
	f.t.Helper()
	hc := f.client()
	resp := f.post(hc, "/console/login", url.Values{"token": {f.mint()}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("login: %s", resp.Status)
	}
	_, body := f.get(hc, "/console/sessions")
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`).FindStringSubmatch(body)
	if m == nil {
		f.t.Fatalf("no csrf field on the sessions page:\n%s", body)
	}
	return hc, m[1]
}

func lastRecord(t *testing.T, b *fakeBackend) audit.Record {
	t.Helper()
	rs := b.records(t)
	if len(rs) == 0 {
		t.Fatal("no record")
	}
	return rs[len(rs)-1]
}

func TestLoginTokenWorksOnceAndGETNeverConsumes(t *testing.T) {
	f := newFixture(t)
	tok := f.mint()
	if r := lastRecord(t, f.b); r.Detail["event"] != console.EventToken || r.Detail["actor"] != "test" {
		t.Fatalf("the token was not recorded before it was handed out: %+v", r)
	}
	hc := f.client()
	// A link preview or prefetch GETs the URL: the token must survive.
	for range 2 {
		resp, body := f.get(hc, "/console/login?token="+tok)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="signin"`) || !strings.Contains(body, `name="token" value="`+tok+`"`) {
			t.Fatalf("login page: %s\n%s", resp.Status, body)
		}
	}
	resp := f.post(hc, "/console/login", url.Values{"token": {tok}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("first use: %s → %q, want 303 → /console/", resp.Status, resp.Header.Get("Location"))
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == console.CookieName {
			ck = c
		}
	}
	switch {
	case ck == nil:
		t.Fatal("no session cookie")
	case !ck.HttpOnly, ck.SameSite != http.SameSiteStrictMode, ck.Path != "/console", ck.MaxAge != int((8 * time.Hour).Seconds()):
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/console, Max-Age 8h", ck)
	case len(ck.Value) != 64 || ck.Value == tok:
		t.Fatalf("cookie value %q: want 32 fresh random bytes in hex", ck.Value)
	}
	r := lastRecord(t, f.b)
	if r.Detail["event"] != console.EventLogin || !strings.HasPrefix(r.Detail["actor"], "operator console session ") ||
		!strings.HasSuffix(r.Detail["actor"], "(logged in via token minted by test)") || strings.Contains(r.Detail["actor"], ck.Value[:8]) {
		t.Fatalf("login record %+v: want the session named by its hash, never the cookie", r)
	}
	if resp, body := f.get(hc, "/console/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connectors") {
		t.Fatalf("signed in health page: %s", resp.Status)
	}

	// The same token again, from another browser: refused, recorded.
	other := f.client()
	resp = f.post(other, "/console/login", url.Values{"token": {tok}}, nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "already used") ||
		!strings.Contains(string(body), "parachute console url --config FILE") || len(resp.Cookies()) != 0 {
		t.Fatalf("second use: %s cookies=%v\n%s", resp.Status, resp.Cookies(), body)
	}
	if r := lastRecord(t, f.b); r.Detail["event"] != console.EventLoginRefuse || len(r.Reasons) != 1 || r.Reasons[0] != console.ReasonTokenUsed || r.Decision != "deny" {
		t.Fatalf("refused login record: %+v", r)
	}
}

func TestLoginRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		token  func(f *fixture) string
		reason string
		says   string
	}{
		{"expired", func(f *fixture) string { tok := f.mint(); f.clk.Add(console.TokenTTL + time.Second); return tok }, console.ReasonTokenExpired, "expired"},
		// Another operator's login prunes the table; an expired token
		// is still refused as expired, not as unknown.
		{"expired, after a prune", func(f *fixture) string {
			tok := f.mint()
			f.clk.Add(console.TokenTTL + time.Minute)
			f.login()
			return tok
		}, console.ReasonTokenExpired, "expired"},
		{"unknown", func(*fixture) string { return strings.Repeat("ab", 32) }, console.ReasonTokenUnknown, "not one this gateway issued"},
		{"empty", func(*fixture) string { return "" }, console.ReasonTokenMissing, "No login token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			hc := f.client()
			resp := f.post(hc, "/console/login", url.Values{"token": {tc.token(f)}}, nil)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), tc.says) || len(resp.Cookies()) != 0 {
				t.Fatalf("%s\n%s", resp.Status, body)
			}
			if r := lastRecord(t, f.b); r.Detail["event"] != console.EventLoginRefuse || r.Reasons[0] != tc.reason {
				t.Fatalf("record %+v, want reason %s", r, tc.reason)
			}
		})
	}
}

func TestNothingWithoutItsRecord(t *testing.T) {
	f := newFixture(t)
	tok := f.mint()
	f.b.failRe = errors.New("disk full")
	if _, err := f.c.MintURL(context.Background(), "test"); !errors.Is(err, console.ErrNotRecorded) {
		t.Fatalf("mint with the audit log down: %v, want ErrNotRecorded", err)
	}
	resp := f.post(f.client(), "/console/login", url.Values{"token": {tok}}, nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || len(resp.Cookies()) != 0 || !strings.Contains(string(body), "disk full") {
		t.Fatalf("login with the audit log down: %s cookies=%v\n%s", resp.Status, resp.Cookies(), body)
	}
	// Nothing was signed in, so the token still works once the log does.
	f.b.failRe = nil
	resp = f.post(f.client(), "/console/login", url.Values{"token": {tok}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login with the same token once the log works: %s", resp.Status)
	}
}

func TestActionGuards(t *testing.T) {
	f := newFixture(t)
	hc, csrf := f.login()
	_, otherCSRF := f.login()
	origin := "http://" + f.c.Addr()
	for _, tc := range []struct {
		name   string
		client *http.Client
		form   url.Values
		hdr    map[string]string
		code   int
		reason string
	}{
		{"no cookie", f.client(), url.Values{"csrf": {csrf}}, nil, http.StatusUnauthorized, console.ReasonNoSession},
		{"missing csrf", hc, url.Values{}, nil, http.StatusForbidden, console.ReasonCSRF},
		{"wrong csrf", hc, url.Values{"csrf": {strings.Repeat("0", 64)}}, nil, http.StatusForbidden, console.ReasonCSRF},
		{"another session's csrf", hc, url.Values{"csrf": {otherCSRF}}, nil, http.StatusForbidden, console.ReasonCSRF},
		{"cross-site", hc, url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, console.ReasonCrossSite},
		{"same-site", hc, url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden, console.ReasonCrossSite},
		{"foreign origin", hc, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden, console.ReasonCrossSite},
		{"null origin", hc, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "null"}, http.StatusForbidden, console.ReasonCrossSite},
		{"null origin from another site", hc, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, console.ReasonCrossSite},
		// What Chromium sends for a form post on a no-referrer page.
		{"null origin, same-origin fetch", hc, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}, http.StatusSeeOther, ""},
		{"rebinding host", hc, url.Values{"csrf": {csrf}}, map[string]string{"Host": "evil.example:" + port(f.c.Addr())}, http.StatusMisdirectedRequest, console.ReasonHost},
		{"other port", hc, url.Values{"csrf": {csrf}}, map[string]string{"Host": "127.0.0.1:1"}, http.StatusMisdirectedRequest, console.ReasonHost},
		{"allowed", hc, url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": origin}, http.StatusSeeOther, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.b.adminCalls())
			resp := f.post(tc.client, "/console/sessions/s1/stop", tc.form, tc.hdr)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || resp.Header.Get("X-Parachute-Reasons") != tc.reason {
				t.Fatalf("%s reason=%q, want %d %q\n%s", resp.Status, resp.Header.Get("X-Parachute-Reasons"), tc.code, tc.reason, body)
			}
			calls := f.b.adminCalls()[before:]
			if tc.code != http.StatusSeeOther {
				if len(calls) != 0 || len(body) == 0 {
					t.Fatalf("refused request reached the operator API (%v) or has no body", calls)
				}
				return
			}
			if len(calls) != 1 || calls[0].Method != "POST" || calls[0].Path != "/v1/sessions/s1/stop" ||
				!strings.HasPrefix(calls[0].Actor, "operator console session ") {
				t.Fatalf("operator API calls %+v", calls)
			}
		})
	}
	// A GET page without a session goes to the login page.
	resp, _ := f.get(f.client(), "/console/sessions")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login" {
		t.Fatalf("page without a session: %s → %q", resp.Status, resp.Header.Get("Location"))
	}
	// The login itself refuses a cross-site post (login CSRF).
	r := f.post(f.client(), "/console/login", url.Values{"token": {f.mint()}}, map[string]string{"Origin": "http://evil.example"})
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site login: %s", r.Status)
	}
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

func TestAccessActionsGoThroughTheOperatorAPI(t *testing.T) {
	f := newFixture(t)
	hc, csrf := f.login()
	resp, body := f.get(hc, "/console/access")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-pairing="ABCD1234"`) || strings.Contains(body, "<b>Eve</b>") ||
		strings.Contains(body, "\u202e") || !strings.Contains(body, `&lt;b&gt;Eve&lt;/b&gt;\u202egnp.sh`) {
		t.Fatalf("access page (display names must be escaped, HTML and bidi alike): %s\n%s", resp.Status, body)
	}
	r := f.post(hc, "/console/access/pairings/ABCD1234", url.Values{"csrf": {csrf}, "action": {"approve"}, "role": {"guest"}, "workspace": {" team "}}, nil)
	r.Body.Close()
	calls := f.b.adminCalls()
	last := calls[len(calls)-1]
	if r.StatusCode != http.StatusSeeOther || last.Path != "/v1/pairings/ABCD1234/approve" || last.Body != `{"role":"guest","workspace":"team"}` {
		t.Fatalf("approve: %s %+v", r.Status, last)
	}
	if _, body := f.get(hc, "/console/access"); !strings.Contains(body, "Approved pairing ABCD1234 as guest") {
		t.Fatalf("no confirmation shown:\n%s", body)
	}
	// A refusal of the operator API is shown with its reason.
	r = f.post(hc, "/console/access/pairings/NOPE", url.Values{"csrf": {csrf}, "action": {"approve"}, "role": {"member"}}, nil)
	r.Body.Close()
	if _, body := f.get(hc, "/console/access"); !strings.Contains(body, "refused (not-found): no pending request with code NOPE") {
		t.Fatalf("refusal not shown:\n%s", body)
	}
	// An invite's token is shown once, to copy.
	r = f.post(hc, "/console/access/invites", url.Values{"csrf": {csrf}, "role": {"member"}, "expires_seconds": {"3600"}}, nil)
	r.Body.Close()
	if _, body := f.get(hc, "/console/access"); !strings.Contains(body, `value="/start tok123"`) {
		t.Fatalf("invite token not shown:\n%s", body)
	}
	if _, body := f.get(hc, "/console/access"); strings.Contains(body, "tok123") {
		t.Fatal("invite token shown twice")
	}
}

// pages are every GET page, signed in.
var pages = []string{"/console/", "/console/sessions", "/console/access", "/console/live", "/console/audit",
	"/console/policy", "/console/policy?from=1", "/console/trace/none", "/console/login"}

// TestEveryPageIsStrict: the security headers on every answer, and no
// inline script, inline style, event handler or external asset in any
// page.
func TestEveryPageIsStrict(t *testing.T) {
	f := newFixture(t)
	hc, _ := f.login()
	weights := map[string]int{}
	for _, p := range append(pages, "/console/static/console.css", "/console/static/console.js", "/console/nope") {
		resp, body := f.get(hc, p)
		for k, want := range map[string]string{"Content-Security-Policy": console.CSP, "X-Content-Type-Options": "nosniff",
			"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", p, k, got, want)
			}
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			weights[p] = len(body)
			continue
		}
		weights[p] = len(body)
		checkStrictHTML(t, p, body)
	}
	if resp, _ := f.get(f.client(), "/console/static/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/console/static/: %s, want 404 (no listing)", resp.Status)
	}
	css, js := weights["/console/static/console.css"], weights["/console/static/console.js"]
	for _, p := range pages {
		total := weights[p] + css + js
		t.Logf("page weight %-26s html %6d + css %d + js %d = %6d bytes", p, weights[p], css, js, total)
		if total > 64<<10 {
			t.Errorf("%s weighs %d bytes: over the 64 KiB budget", p, total)
		}
	}
}

var onAttr = regexp.MustCompile(`^on[a-z]+$`)

func checkStrictHTML(t *testing.T, page, body string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", page, err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				switch {
				case onAttr.MatchString(a.Key):
					t.Errorf("%s: <%s %s>: inline event handler", page, n.Data, a.Key)
				case a.Key == "style":
					t.Errorf("%s: <%s style>: inline style", page, n.Data)
				case (a.Key == "src" || a.Key == "href" || a.Key == "action") && (strings.Contains(a.Val, "//") || strings.HasPrefix(strings.ToLower(a.Val), "javascript:")):
					t.Errorf("%s: <%s %s=%q>: external or script URL", page, n.Data, a.Key, a.Val)
				}
			}
			switch n.Data {
			case "script":
				if src := attr(n, "src"); src == "" || n.FirstChild != nil {
					t.Errorf("%s: inline <script>", page)
				}
			case "style":
				t.Errorf("%s: <style> element", page)
			case "form":
				if attr(n, "method") == "post" && attr(n, "action") != "/console/login" && !hasCSRF(n) {
					t.Errorf("%s: POST form to %s without a csrf field", page, attr(n, "action"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
}

func attr(n *html.Node, k string) string {
	for _, a := range n.Attr {
		if a.Key == k {
			return a.Val
		}
	}
	return ""
}

func hasCSRF(n *html.Node) bool {
	if n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") == "csrf" && len(attr(n, "value")) == 64 {
		return true
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if hasCSRF(c) {
			return true
		}
	}
	return false
}

// TestLiveStreamDeliversNewRecord: a record appended after the stream
// opened arrives within a second, filtered server-side.
func TestLiveStreamDeliversNewRecord(t *testing.T) {
	f := newFixture(t)
	hc, _ := f.login()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/console/live/events?allow=false&connector=tg", nil)
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- data
			}
		}
		close(events)
	}()
	// The stream is open once its first line arrived; records appended now
	// must come through. Ones the filter rejects never do.
	for _, r := range []audit.Record{
		{Kind: "tool", Decision: "allow", Connector: "tg", User: "telegram:1"},
		{Kind: "tool", Decision: "deny", Connector: "other", User: "telegram:1", Reasons: []string{"x"}},
		{Kind: "tool", Decision: "deny", Connector: "tg", User: "telegram:1", TurnID: "turn1", Reasons: []string{"path-outside-workspace"}, Tool: "read_file"},
	} {
		if _, err := f.b.log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	select {
	case data, ok := <-events:
		if !ok {
			t.Fatal("stream closed")
		}
		var got struct {
			Seq     uint64   `json:"seq"`
			Allow   string   `json:"allow"`
			Reasons []string `json:"reasons"`
			Turn    string   `json:"turn"`
		}
		if err := json.Unmarshal([]byte(data), &got); err != nil {
			t.Fatal(err)
		}
		if got.Allow != "false" || got.Turn != "turn1" || got.Reasons[0] != "path-outside-workspace" {
			t.Fatalf("first event %s: want the tg denial only", data)
		}
	case <-time.After(time.Second):
		t.Fatal("the denial did not reach the stream within a second")
	}
	t.Logf("denial delivered %s after its append", time.Since(start))
}

// TestPlaygroundChangesNothing: an evaluation in the playground decides
// as the engine does, takes no rate-limit token and writes no record.
func TestPlaygroundChangesNothing(t *testing.T) {
	f := newFixture(t)
	hc, csrf := f.login()
	input, err := os.ReadFile("../policies/examples/message_owner_direct/input.json")
	if err != nil {
		t.Fatal(err)
	}
	seqBefore := len(f.b.records(t))
	changes := f.b.eng.Limiter().Changes()
	r := f.post(hc, "/console/policy/eval", url.Values{"csrf": {csrf}, "entry": {"message"}, "input": {string(input)}}, nil)
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusOK || !strings.Contains(string(body), `id="pg-result" data-allow="true"`) || !strings.Contains(string(body), `id="pg-trace"`) {
		t.Fatalf("playground: %s\n%s", r.Status, body)
	}
	if n := len(f.b.records(t)); n != seqBefore {
		t.Fatalf("the playground wrote %d audit records", n-seqBefore)
	}
	if c := f.b.eng.Limiter().Changes(); c != changes {
		t.Fatalf("the playground spent rate-limit tokens (%d changes)", c-changes)
	}
	// The control: deciding the same input for real does spend and record.
	var doc any
	_ = json.Unmarshal(input, &doc)
	if d := f.b.eng.Decide(context.Background(), engine.RawInput{For: engine.Message, Doc: doc}); !d.Allow {
		t.Fatalf("the example is not allowed: %v", d.Reasons)
	}
	if f.b.eng.Limiter().Changes() == changes || len(f.b.records(t)) == seqBefore {
		t.Fatal("control: a real decision of this input neither spent nor recorded, so the check above proves nothing")
	}

	// ?from= pre-fills the input from that recorded decision.
	rec := lastRecord(t, f.b)
	_, page := f.get(hc, "/console/policy?from="+rec.DecisionID)
	if !strings.Contains(page, "<option selected>message</option>") || !strings.Contains(page, "telegram-private") {
		t.Fatalf("playground not pre-filled from %s:\n%s", rec.DecisionID, page)
	}

	// Evaluated with that record named, the result is compared with it.
	r = f.post(hc, "/console/policy/eval", url.Values{"csrf": {csrf}, "entry": {"message"}, "input": {string(rec.Input)}, "from": {rec.DecisionID}}, nil)
	body, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(body), `id="pg-same" data-same="true"`) || !strings.Contains(string(body), `id="pg-recorded" data-allow="true"`) {
		t.Fatalf("playground from a record: no comparison with it:\n%s", body)
	}
	if n := len(f.b.records(t)); n != seqBefore+1 {
		t.Fatalf("the playground wrote %d audit records", n-seqBefore-1)
	}

	// Duplicate keys are refused, not resolved: one parse.
	r = f.post(hc, "/console/policy/eval", url.Values{"csrf": {csrf}, "entry": {"message"}, "input": {`{"connector":"a","connector":"b"}`}}, nil)
	body, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "duplicate") {
		t.Fatalf("duplicate keys: %s\n%s", r.Status, body)
	}
}

func TestTraceLinksATurn(t *testing.T) {
	f := newFixture(t)
	hc, _ := f.login()
	ctx := context.Background()
	for _, r := range []audit.Record{
		{Kind: "tool", Decision: "deny", TurnID: "T1", Tool: "read_file", Path: `"../etc/passwd"`, Reasons: []string{"path-outside-workspace"},
			Input: []byte(`{"paths":[{"raw":"../etc/passwd","resolved":""}],"tool":{"name":"read_file"}}`)},
		{Kind: "session", Decision: "allow", TurnID: "T1", SessionID: "s1"},
		{Kind: "message", Decision: "allow", DecisionID: "T1", Connector: "tg", User: "telegram:1"},
		{Kind: "egress", Decision: "deny", TurnID: "T1", Host: "example.com:443", Reasons: []string{"host-not-allowed"}},
		{Kind: "model", Decision: "allow", TurnID: "T1", Model: "m"},
		{Kind: "tool", Decision: "allow", TurnID: "T2"},
	} {
		if _, err := f.b.log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	_, body := f.get(hc, "/console/trace/T1")
	steps := regexp.MustCompile(`data-step="([a-z-]+)"`).FindAllStringSubmatch(body, -1)
	var got []string
	for _, s := range steps {
		got = append(got, s[1])
	}
	if strings.Join(got, ",") != "message,session,tool,model,egress" {
		t.Fatalf("steps %v, want message,session,tool,model,egress", got)
	}
	if !strings.Contains(body, "../etc/passwd") || !strings.Contains(body, "not resolved") || !strings.Contains(body, "path-outside-workspace") {
		t.Fatalf("tool step without its paths and reasons:\n%s", body)
	}
}

// TestLiveStreamsEndWithTheConsole: an open live stream ends when the
// console stops, so it never holds up the admin listener's shutdown.
func TestLiveStreamsEndWithTheConsole(t *testing.T) {
	f := newFixture(t)
	hc, _ := f.login()
	hc.Timeout = 0
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { f.c.Run(ctx); close(ran) }()
	resp, err := hc.Get(f.srv.URL + "/console/live/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, resp.Body); close(ended) }()
	cancel()
	<-ran
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the live stream is still open 5 s after the console stopped")
	}
}

// TestChartsFromTheRegistry: the health charts are drawn from the
// gateway's own counters, sampled on the console's clock.
func TestChartsFromTheRegistry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t)
		decisions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: console.MetricDecisions}, []string{"entry", "result"})
		denials := prometheus.NewCounterVec(prometheus.CounterOpts{Name: console.MetricDenials}, []string{"entry", "reason"})
		b.reg.MustRegister(decisions, denials)
		c, err := console.New(console.Options{Backend: b, Addr: "127.0.0.1:9464"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.Run(ctx)
		synctest.Wait()
		for i, n := range []float64{30, 60} {
			decisions.WithLabelValues("message", "allow").Add(n)
			denials.WithLabelValues("tool", "path-outside-workspace").Add(float64(5 * (i + 1)))
			time.Sleep(console.DefaultSampleEvery)
			synctest.Wait()
		}
		h := c.Handler()
		cookie := signIn(t, c, h)
		req := httptest.NewRequest("GET", "http://127.0.0.1:9464/console/health/charts", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.String()
		// 60 decisions in the last 3 s: 20/s now; 15 denials in the window.
		if !strings.Contains(body, "20.0 now") || !strings.Contains(body, "path-outside-workspace") || !strings.Contains(body, ">15</text>") || !strings.Contains(body, "<polyline") {
			t.Fatalf("charts:\n%s", body)
		}
	})
}

// signIn logs in through h (no network) and returns the session cookie.
func signIn(t *testing.T, c *console.Console, h http.Handler) *http.Cookie {
	t.Helper()
	u, err := c.MintURL(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	req := httptest.NewRequest("POST", "http://"+c.Addr()+"/console/login", strings.NewReader(url.Values{"token": {pu.Query().Get("token")}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == console.CookieName {
			return ck
		}
	}
	t.Fatalf("login: %d %s", rec.Code, rec.Body)
	return nil
}

// TestLiveStreamsAreBounded: past MaxStreams open streams, another is
// refused (503, with its reason) instead of costing one more follower.
func TestLiveStreamsAreBounded(t *testing.T) {
	f := newFixture(t)
	hc, _ := f.login()
	hc.Timeout = 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/console/live/events", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := range console.MaxStreams {
		resp := open()
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %s", i+1, resp.Status)
		}
	}
	resp := open()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Parachute-Reasons") != console.ReasonTooManyStreams {
		t.Fatalf("stream %d: %s %q, want 503 %s", console.MaxStreams+1, resp.Status, resp.Header.Get("X-Parachute-Reasons"), console.ReasonTooManyStreams)
	}
}

// TestEveryRouteIsGuarded: no page, stream or action answers without a
// session: pages send the browser to the login page, actions are 401.
func TestEveryRouteIsGuarded(t *testing.T) {
	f := newFixture(t)
	hc := f.client()
	for _, p := range []string{"/console/", "/console/health/charts", "/console/sessions", "/console/access", "/console/live",
		"/console/live/events", "/console/trace/T1", "/console/audit", "/console/policy"} {
		resp, _ := f.get(hc, p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login" {
			t.Errorf("GET %s without a session: %s → %q", p, resp.Status, resp.Header.Get("Location"))
		}
	}
	for _, p := range []string{"/console/logout", "/console/sessions/s1/stop", "/console/access/pairings/ABCD1234",
		"/console/access/invites", "/console/access/invites/0123456789abcdef/revoke", "/console/access/bindings/revoke", "/console/policy/eval"} {
		resp := f.post(hc, p, url.Values{"csrf": {strings.Repeat("a", 64)}, "action": {"approve"}}, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %s", p, resp.Status)
		}
	}
	if calls := f.b.adminCalls(); len(calls) != 0 {
		t.Fatalf("the operator API was called without a session: %+v", calls)
	}
}
