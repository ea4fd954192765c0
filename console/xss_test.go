package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/parachute-gateway/parachute/audit"
)

// evil is markup a display name, tool argument, file name or policy error
// could carry: every page must show it as text. CSP would stop a script;
// markup (a base, a meta refresh, a form, a javascript: link) would not.
const evil = `"><img src=x onerror=alert(1)><base href="//evil.example/"><meta http-equiv="refresh" content="0;url=//evil.example"><form action="//evil.example"><a href="javascript:alert(1)">x</a><script>alert(1)</script>` + "\u202egnp.sh"

// TestHostileTextIsText: records and query values holding markup are
// rendered on every page as text (html/template) with the bidi override
// escaped, and the live stream carries them as JSON strings the script
// sets with textContent.
func TestHostileTextIsText(t *testing.T) {
	f := newFixture(t)
	hc, csrf := f.login()
	const turn = "0123456789abcdef0123456789abcdef"
	if _, err := f.b.log.Append(context.Background(), audit.Record{Kind: "tool", Decision: "deny", Connector: evil, User: evil,
		TurnID: turn, Tool: evil, Path: evil, Reasons: []string{evil}, Error: evil,
		Detail: map[string]string{"event": evil, "why": evil}, Input: json.RawMessage(`{"paths":[{"raw":` + jsonQuote(evil) + `,"resolved":` + jsonQuote(evil) + `}]}`)}); err != nil {
		t.Fatal(err)
	}
	q := url.QueryEscape(evil)
	pages := []string{
		"/console/trace/" + turn,
		"/console/trace/" + url.PathEscape(evil),
		"/console/audit?connector=" + q + "&more=" + q + "&since=" + q,
		"/console/audit",
		"/console/live?connector=" + q + "&identity=" + q + "&kind=" + q + "&reason=" + q,
		"/console/policy?from=" + q,
		"/console/login?token=" + q,
		"/console/access",
	}
	for _, p := range pages {
		resp, body := f.get(hc, p)
		t.Run(strings.SplitN(p, "?", 2)[0], func(t *testing.T) { checkInert(t, strings.SplitN(p, "%", 2)[0], resp.StatusCode, body) })
	}
	// The playground echoes its entry, input and the evaluation's errors.
	for _, form := range []url.Values{
		{"csrf": {csrf}, "entry": {evil}, "input": {"{}"}},
		{"csrf": {csrf}, "entry": {"tool"}, "input": {evil}},
		{"csrf": {csrf}, "entry": {"tool"}, "input": {`{"tool":{"name":` + jsonQuote(evil) + `},"arguments":{"path":` + jsonQuote(evil) + `}}`}},
		{"csrf": {csrf}, "entry": {"message"}, "input": {"{}"}, "from": {evil}},
	} {
		resp := f.post(hc, "/console/policy/eval", form, nil)
		b := new(strings.Builder)
		_, _ = io_Copy(b, resp)
		t.Run("playground "+form.Get("entry"), func(t *testing.T) { checkInert(t, "playground", resp.StatusCode, b.String()) })
	}
	// A refused action's flash (the operator API's error) is text too.
	if r := f.post(hc, "/console/access/pairings/NOPE", url.Values{"csrf": {csrf}, "action": {"approve"}, "role": {evil}, "workspace": {evil}}, nil); r != nil {
		r.Body.Close()
	}
	_, body := f.get(hc, "/console/access")
	checkInert(t, "flash", 200, body)
}

func jsonQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// checkInert: no element, attribute or URL of the page comes from evil;
// where evil shows, it is text, with U+202E escaped.
func checkInert(t *testing.T, page string, code int, body string) {
	t.Helper()
	if code >= 500 {
		t.Fatalf("%s: status %d", page, code)
	}
	checkStrictHTML(t, page, body)
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		// A form field's value and a textarea's text must round-trip (a
		// filter, the playground's input); anything shown must not carry a
		// raw bidi override.
		if n.Type == html.TextNode && strings.ContainsRune(n.Data, '\u202e') && (n.Parent == nil || n.Parent.Data != "textarea") {
			t.Errorf("%s: a raw U+202E (bidi override) in the text of <%s>: %q", page, n.Parent.Data, n.Data)
		}
		if n.Type == html.ElementNode {
			switch n.Data {
			case "img", "base", "iframe", "object", "embed":
				t.Errorf("%s: injected <%s>", page, n.Data)
			case "meta":
				if attr(n, "http-equiv") != "" {
					t.Errorf("%s: injected <meta http-equiv>", page)
				}
			case "form":
				if a := attr(n, "action"); !strings.HasPrefix(a, "/console/") {
					t.Errorf("%s: a form posting to %q", page, a)
				}
			case "a":
				if h := attr(n, "href"); !strings.HasPrefix(h, "/console/") && !strings.HasPrefix(h, "#") {
					t.Errorf("%s: a link to %q", page, h)
				}
			}
			for _, a := range n.Attr {
				if a.Key != "value" && strings.ContainsRune(a.Val, '\u202e') {
					t.Errorf("%s: a raw U+202E (bidi override) in <%s %s>", page, n.Data, a.Key)
				}
				if strings.Contains(a.Val, "evil.example") && a.Key != "value" && !strings.HasPrefix(a.Key, "data-") && !strings.HasPrefix(a.Val, "/console/") {
					t.Errorf("%s: <%s %s=%q> carries the attacker's URL", page, n.Data, a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
}

func io_Copy(b *strings.Builder, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	return io.Copy(b, resp.Body)
}
