package console_test

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/console"
)

// Attacks on the console by a hostile local process or a hostile page
// (issue 15's review). Each case is what the attacker sends and what must
// come back.

// TestPlaygroundRefusesDeepNestingFast: an input of nested arrays deeper
// than encoding/json accepts is refused, and at once: the strict parser's
// walk was quadratic in the depth (80 KB took 12 s, 240 KB minutes) until
// it refused past strictjson.MaxDepth.
func TestPlaygroundRefusesDeepNestingFast(t *testing.T) {
	f := newFixture(t)
	hc, csrf := f.login()
	for _, tc := range []struct {
		name, input string
		refused     bool
	}{
		{"arrays 40000 deep", `{"a":` + strings.Repeat("[", 40000) + strings.Repeat("]", 40000) + `}`, true},
		{"objects 12000 deep", strings.Repeat(`{"a":`, 12000) + "1" + strings.Repeat("}", 12000), true},
		{"brackets inside a string are text", `{"a":"` + strings.Repeat("[", 40000) + `"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.post(hc, "/console/policy/eval", url.Values{"csrf": {csrf}, "entry": {"message"}, "input": {tc.input}}, nil)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			deep := strings.Contains(string(body), "deep, which the gateway")
			if deep != tc.refused {
				t.Fatalf("%s: refused as too deep = %v, want %v\n%s", resp.Status, deep, tc.refused, snippet(string(body), "pg-input-error"))
			}
			if tc.refused && resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%s, want 400", resp.Status)
			}
		})
	}
}

// TestHostileHosts: DNS rebinding and Host tricks are refused before
// anything is read; only the listener's address and localhost:PORT pass.
func TestHostileHosts(t *testing.T) {
	f := newFixture(t)
	p := port(f.c.Addr())
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{f.c.Addr(), true},
		{"localhost:" + p, true},
		{"LOCALHOST:" + p, true},
		{"127.0.0.1.nip.io:" + p, false},
		{"localhost.:" + p, false},
		{"[::1]:" + p, false},
		{"127.0.0.2:" + p, false},
		{"0x7f.0.0.1:" + p, false},
		{"2130706433:" + p, false},
		{"127.0.0.1", false},
		{"localhost", false},
		{"evil.example:" + p, false},
		{"", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			conn, err := net.Dial("tcp", f.c.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			hdr := "Host: " + tc.host + "\r\n"
			if tc.host == "" {
				hdr = ""
			}
			// HTTP/1.0 allows a request without Host.
			proto := "HTTP/1.1"
			if hdr == "" {
				proto = "HTTP/1.0"
			}
			_, _ = io.WriteString(conn, "GET /console/login "+proto+"\r\n"+hdr+"Connection: close\r\n\r\n")
			b, _ := io.ReadAll(conn)
			ok := strings.HasPrefix(string(b), "HTTP/1.1 200")
			if ok != tc.ok {
				t.Fatalf("Host %q: answered %q, want ok=%v", tc.host, firstLine(b), tc.ok)
			}
		})
	}
	// Absolute-form: the URL's host is what counts, and it is refused.
	conn, err := net.Dial("tcp", f.c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET http://evil.example:"+p+"/console/login HTTP/1.1\r\nHost: "+f.c.Addr()+"\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(b), "HTTP/1.1 421") {
		t.Fatalf("absolute-form URI naming another host: %q, want 421", firstLine(b))
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}

// TestForgedActions: forms a hostile page or process could send to an
// action, beyond TestActionGuards: other encodings, other methods,
// overrides. None reaches the operator API.
func TestForgedActions(t *testing.T) {
	f := newFixture(t)
	hc, csrf := f.login()
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("csrf", "0"+csrf[1:])
	mw.Close()
	if csrf[0] == '0' {
		t.Skip("the csrf token starts with 0; the forged one would be right")
	}
	for _, tc := range []struct {
		name, method, ctype, body string
		hdr                       map[string]string
		code                      int
	}{
		{"text/plain body naming csrf", "POST", "text/plain", "csrf=" + csrf[:10], nil, http.StatusForbidden},
		{"text/plain body, no token", "POST", "text/plain", "x=1", nil, http.StatusForbidden},
		{"multipart with a wrong token", "POST", mw.FormDataContentType(), mp.String(), nil, http.StatusForbidden},
		{"GET to an action", "GET", "", "", nil, http.StatusMethodNotAllowed},
		{"GET with the token in the query", "GET", "", "", nil, http.StatusMethodNotAllowed},
		{"PUT", "PUT", "application/x-www-form-urlencoded", "csrf=" + csrf, nil, http.StatusMethodNotAllowed},
		{"method override header on GET", "GET", "", "", map[string]string{"X-HTTP-Method-Override": "POST"}, http.StatusMethodNotAllowed},
		{"token in the query, not the form", "POST", "application/x-www-form-urlencoded", "", nil, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.b.adminCalls())
			u := f.srv.URL + "/console/sessions/s1/stop"
			if strings.Contains(tc.name, "query") {
				u += "?csrf=" + csrf
			}
			req, _ := http.NewRequest(tc.method, u, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("%s, want %d", resp.Status, tc.code)
			}
			if calls := f.b.adminCalls()[before:]; len(calls) != 0 {
				t.Fatalf("a forged request reached the operator API: %+v", calls)
			}
		})
	}
}

// TestNoCORSAndFixation: the stream and the pages send no CORS header to a
// foreign Origin, and a cookie planted before login is not the session's.
func TestNoCORSAndFixation(t *testing.T) {
	f := newFixture(t)
	hc, _ := f.login()
	for _, p := range []string{"/console/live/events", "/console/sessions", "/console/login"} {
		req, _ := http.NewRequest("GET", f.srv.URL+p, nil)
		req.Header.Set("Origin", "http://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k := range resp.Header {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("GET %s from a foreign origin: header %s: %q", p, k, resp.Header.Get(k))
			}
		}
	}
	// Fixation: a cookie set before the login is replaced, not adopted.
	planted := strings.Repeat("ab", 32)
	c := f.client()
	u, _ := url.Parse(f.srv.URL + "/console/")
	c.Jar.SetCookies(u, []*http.Cookie{{Name: console.CookieName, Value: planted, Path: "/console"}})
	resp := f.post(c, "/console/login", url.Values{"token": {f.mint()}}, nil)
	resp.Body.Close()
	var got string
	for _, ck := range resp.Cookies() {
		if ck.Name == console.CookieName {
			got = ck.Value
		}
	}
	if got == "" || got == planted {
		t.Fatalf("login set cookie %q; want a fresh one, not the planted %q", got, planted)
	}
	planter := f.client()
	planter.Jar.SetCookies(u, []*http.Cookie{{Name: console.CookieName, Value: planted, Path: "/console"}})
	if resp, _ := f.get(planter, "/console/sessions"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the planted cookie opened a page: %s", resp.Status)
	}
}

// TestOversizeFormSaysSo: a form past the action's body limit is refused
// as too large (413), not as a missing CSRF token.
func TestOversizeFormSaysSo(t *testing.T) {
	f := newFixture(t)
	hc, csrf := f.login()
	resp := f.post(hc, "/console/policy/eval", url.Values{"csrf": {csrf}, "entry": {"message"}, "input": {strings.Repeat("x", 600<<10)}}, nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("X-Parachute-Reasons") != console.ReasonTooLarge {
		t.Fatalf("%s %q, want 413 %s\n%s", resp.Status, resp.Header.Get("X-Parachute-Reasons"), console.ReasonTooLarge, body)
	}
}

// TestOtherSitesSubresourcesAreRefused: a page on another port of
// 127.0.0.1 is same-site, so the SameSite=Strict cookie goes with its
// <img>, <script> and no-cors fetch requests. It cannot read the answers,
// but each would hold a live stream slot or read the audit log for it
// (a trace of an unknown ID reads the whole log). Such requests are
// refused; a navigation to a page (a link the operator clicks) and the
// console's own requests are not.
func TestOtherSitesSubresourcesAreRefused(t *testing.T) {
	f := newFixture(t)
	hc, _ := f.login()
	hc.Timeout = 5 * time.Second
	for _, tc := range []struct {
		name, path, site, mode, dest string
		ok                           bool
	}{
		{"stream from another port's no-cors fetch", "/console/live/events", "same-site", "no-cors", "empty", false},
		{"stream from another site's EventSource", "/console/live/events", "cross-site", "cors", "empty", false},
		{"trace as another port's img", "/console/trace/nope", "same-site", "no-cors", "image", false},
		{"audit as another port's script", "/console/audit?more=tool=x", "same-site", "no-cors", "script", false},
		{"page in another port's frame", "/console/sessions", "same-site", "navigate", "iframe", false},
		{"page navigated to from another port", "/console/sessions", "same-site", "navigate", "document", true},
		{"page typed in the address bar", "/console/sessions", "none", "navigate", "document", true},
		{"stream from the console", "/console/live/events", "same-origin", "cors", "empty", true},
		{"charts fetched by the console", "/console/health/charts", "same-origin", "cors", "empty", true},
		{"a client that sends no fetch metadata", "/console/audit", "", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+tc.path, nil)
			for k, v := range map[string]string{"Sec-Fetch-Site": tc.site, "Sec-Fetch-Mode": tc.mode, "Sec-Fetch-Dest": tc.dest} {
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ok := resp.StatusCode == http.StatusOK; ok != tc.ok {
				t.Fatalf("%s %q, want ok=%v", resp.Status, resp.Header.Get("X-Parachute-Reasons"), tc.ok)
			}
			if !tc.ok && resp.Header.Get("X-Parachute-Reasons") != console.ReasonCrossSite {
				t.Fatalf("refused with %q, want %s", resp.Header.Get("X-Parachute-Reasons"), console.ReasonCrossSite)
			}
		})
	}
}
