package browser

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// strictCSP is what the console sends: nothing from elsewhere, no inline
// script or style.
const strictCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// site serves the pages of the smoke test, each under the strict CSP.
func site(t *testing.T) *httptest.Server {
	t.Helper()
	pages := map[string]string{
		"/": `<!doctype html><html><head><title>ok</title>
<link rel="stylesheet" href="/app.css"><script src="/app.js" defer></script></head>
<body><h1 id="title">Hello</h1><button id="more">more</button><ul id="list"></ul>
<form method="post" action="/submit"><input id="name" name="name"><button id="go">go</button></form></body></html>`,
		"/keyboard": `<!doctype html><html><head></head><body><form method="post" action="/submit"><input type="hidden" name="name" value="kb"><button id="go" autofocus>go</button></form></body></html>`,
		"/later":    `<!doctype html><html><head><script src="/later.js" defer></script></head><body><button id="later">later</button><ul id="list"></ul></body></html>`,
		"/wide":     `<!doctype html><html><head><meta name="viewport" content="width=device-width"><link rel="stylesheet" href="/wide.css"></head><body><div id="wide">wide</div></body></html>`,
		// A wide table scrolls in its box; but an absolutely positioned
		// label in its last column escapes the box and widens the page.
		"/scrolls":  `<!doctype html><html><head><meta name="viewport" content="width=device-width"><link rel="stylesheet" href="/wide.css"></head><body><div class="scroll"><table><tr><th>a</th><th>b</th></tr></table></div></body></html>`,
		"/longword": `<!doctype html><html><head><meta name="viewport" content="width=device-width"></head><body><ul><li id="path">/tmp/TestConsoleInBrowser284089033_a_very_long_path/001/state/audit/audit.jsonl:12</li></ul></body></html>`,
		"/escapes":  `<!doctype html><html><head><meta name="viewport" content="width=device-width"><link rel="stylesheet" href="/wide.css"></head><body><div class="scroll"><table><tr><th>a</th><th><span class="sr">b</span></th></tr></table></div></body></html>`,
		"/done":     `<!doctype html><html><head><meta name="viewport" content="width=device-width"></head><body><p id="done" data-name="">done</p></body></html>`,
		// Each hostile page does one thing the console must never do.
		"/inline-script": `<!doctype html><html><head></head><body><script>document.title='x'</script><p id="p">p</p></body></html>`,
		"/inline-style":  `<!doctype html><html><head></head><body><p id="p" style="color:red">p</p></body></html>`,
		"/foreign-img":   `<!doctype html><html><head></head><body><img src="http://127.0.0.1:1/x.png"><p id="p">p</p></body></html>`,
		"/console-error": `<!doctype html><html><head><script src="/error.js"></script></head><body><p id="p">p</p></body></html>`,
		"/exception":     `<!doctype html><html><head><script src="/throw.js"></script></head><body><p id="p">p</p></body></html>`,
		"/missing-asset": `<!doctype html><html><head><link rel="stylesheet" href="/nope.css"></head><body><p id="p">p</p></body></html>`,
	}
	assets := map[string]string{
		"/app.css":  `h1 { color: #123; }`,
		"/wide.css": `#wide { width: 1000px; } .scroll { overflow-x: auto; } .scroll table { width: 1000px; } .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; }`,
		"/app.js":   `document.getElementById('more').addEventListener('click', () => { const li = document.createElement('li'); li.id = 'item'; li.textContent = 'item'; document.getElementById('list').append(li); });`,
		"/later.js": `document.getElementById('later').addEventListener('click', () => setTimeout(() => { const li = document.createElement('li'); li.dataset.n = '2'; document.getElementById('list').append(li); }, 200));`,
		"/error.js": `console.error('something broke');`,
		"/throw.js": `throw new Error('boom');`,
	}
	// Closed by a cleanup registered before the browser's, so it serves
	// until the browser's own end-of-test check has run: a favicon request
	// still in flight met a closed server once in CI.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		switch {
		case r.URL.Path == "/favicon.ico": // Chromium asks for it; a 404 would be a console error
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/submit" && r.Method == http.MethodPost:
			http.Redirect(w, r, "/done?name="+r.FormValue("name"), http.StatusSeeOther)
		case pages[r.URL.Path] != "":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, pages[r.URL.Path])
		case assets[r.URL.Path] != "":
			if strings.HasSuffix(r.URL.Path, ".css") {
				w.Header().Set("Content-Type", "text/css")
			} else {
				w.Header().Set("Content-Type", "text/javascript")
			}
			fmt.Fprint(w, assets[r.URL.Path])
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSmoke drives a clean page the way the console tests drive the
// console: load, wait, click, fill a form, follow its redirect, measure,
// screenshot; nothing may reach the console.
func TestSmoke(t *testing.T) {
	srv := site(t)
	b := New(t)
	b.Artifacts = t.TempDir()

	if resp := b.Go(t, srv.URL+"/"); resp.Status != http.StatusOK {
		t.Fatalf("GET / = %d", resp.Status)
	}
	b.Wait(t, "#title", time.Second)
	if got := b.Text(t, "#title"); got != "Hello" {
		t.Errorf("#title = %q", got)
	}
	b.Click(t, "#more")
	b.Wait(t, "#item", time.Second)
	if n := b.Count(t, "#list li"); n != 1 {
		t.Errorf("%d items after one click", n)
	}
	timing := b.Measure(t, "index")
	if timing.FCP <= 0 || timing.Load <= 0 || timing.Requests < 3 || timing.Weight <= 0 || timing.Transfer <= 0 {
		t.Errorf("timing of / = %+v: want a paint, a load, at least 3 requests and bytes", timing)
	}
	t.Logf("\n%s", Table([]Timing{timing}))
	png := b.Screenshot(t, "smoke/index")
	if data, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot %s is not a PNG (%v)", png, err)
	}

	b.SetValue(t, "#name", `o'brien "<x>"`)
	resp := b.Submit(t, "#go")
	if resp.Status != http.StatusOK || !strings.Contains(resp.URL, "/done?name=o%27brien") {
		t.Errorf("after submit: %d %s", resp.Status, resp.URL)
	}
	b.Wait(t, "#done", time.Second)
	if got := b.Attr(t, "#done", "data-name"); got != "" {
		t.Errorf("data-name = %q", got)
	}

	// From the keyboard: the autofocused button takes Enter.
	b.Go(t, srv.URL+"/keyboard")
	b.WaitFocus(t, "button#go", 2*time.Second)
	if f := b.Focused(t); !strings.HasPrefix(f, "button#go") {
		t.Errorf("Focused says %s, want the autofocused button#go", f)
	}
	if resp := b.Enter(t); !strings.Contains(resp.URL, "/done?name=kb") {
		t.Errorf("Enter on the autofocused button went to %s", resp.URL)
	}

	// On a phone, the page fits the narrower viewport; a wide one does not.
	b.Phone(t)
	b.Go(t, srv.URL+"/done")
	if w := Eval[int](t, b, `innerWidth`); w != PhoneWidth {
		t.Errorf("phone viewport is %d px wide, want %d", w, PhoneWidth)
	}
	if o := b.Overflow(t); o != 0 {
		t.Errorf("a plain page overflows a phone by %d px", o)
	}
	b.Go(t, srv.URL+"/wide")
	if o := b.Overflow(t); o < 500 {
		t.Errorf("a 1000 px page overflows a phone by %d px, want at least 500", o)
	}
	if got := strings.Join(b.Overflowing(t), "; "); !strings.HasPrefix(got, "div#wide (position static") {
		t.Errorf("Overflowing on /wide = %q, want div#wide", got)
	}
	b.Go(t, srv.URL+"/scrolls")
	if o, what := b.Overflow(t), b.Overflowing(t); o != 0 || len(what) != 0 {
		t.Errorf("a table scrolling in its box overflows the page by %d px: %v", o, what)
	}
	b.Go(t, srv.URL+"/escapes")
	if got := strings.Join(b.Overflowing(t), "; "); b.Overflow(t) == 0 || !strings.Contains(got, "span.sr (position absolute") {
		t.Errorf("an escaping absolute label: overflow %d, Overflowing %q, want span.sr named", b.Overflow(t), got)
	}
	b.Go(t, srv.URL+"/longword")
	if got := strings.Join(b.Overflowing(t), "; "); b.Overflow(t) == 0 || !strings.Contains(got, "li#path (its content reaches") {
		t.Errorf("a long word: overflow %d, Overflowing %q, want li#path named", b.Overflow(t), got)
	}
	b.Desktop(t)
	if w := Eval[int](t, b, `innerWidth`); w != Width {
		t.Errorf("desktop viewport is %d px wide, want %d", w, Width)
	}

	// A condition that becomes true later, under the strict CSP.
	b.Go(t, srv.URL+"/later")
	b.Click(t, "#later") // adds the item 200 ms later
	start := time.Now()
	b.WaitTrue(t, "the late item", `document.querySelector('li[data-n="2"]') !== null`, 2*time.Second)
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("WaitTrue returned after %v, before the item was added", took)
	}
	if p := b.Problems(t); len(p) != 0 {
		t.Errorf("a clean page reported problems: %v", p)
	}
}

// TestReportsWhatThePageMustNotDo: each hostile page makes a problem the
// test would fail on, named so a reader sees what went wrong.
func TestReportsWhatThePageMustNotDo(t *testing.T) {
	srv := site(t)
	b := New(t)
	b.Artifacts = t.TempDir()
	for _, tc := range []struct {
		path string
		want string // in the one problem reported
	}{
		{"/inline-script", "script-src"},
		{"/inline-style", "style-src"},
		{"/foreign-img", "img-src"},
		{"/console-error", "something broke"},
		{"/exception", "boom"},
		{"/missing-asset", "nope.css"},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			b.Go(t, srv.URL+tc.path)
			b.Wait(t, "#p", time.Second)
			problems := b.Problems(t)
			if len(problems) == 0 {
				t.Fatalf("%s reported no problem", tc.path)
			}
			if !strings.Contains(strings.Join(problems, "\n"), tc.want) {
				t.Errorf("%s: problems lack %q:\n%s", tc.path, tc.want, strings.Join(problems, "\n"))
			}
		})
	}
	t.Run("expected, then not", func(t *testing.T) {
		stop := b.Expect(`something broke`)
		b.Go(t, srv.URL+"/console-error")
		b.Wait(t, "#p", time.Second)
		b.Go(t, srv.URL+"/exception") // not expected: kept past stop
		b.Wait(t, "#p", time.Second)
		stop(t)
		if p := b.Problems(t); len(p) != 1 || !strings.Contains(p[0], "boom") {
			t.Errorf("while expecting one error, the others: %v, want only boom", p)
		}
		b.Go(t, srv.URL+"/console-error")
		b.Wait(t, "#p", time.Second)
		if p := b.Problems(t); len(p) != 1 || !strings.Contains(p[0], "something broke") {
			t.Errorf("after the expectation stopped: %v, want something broke reported", p)
		}
	})
}

// TestWaitFailsAtItsDeadline: a selector that never appears fails the
// wait at its deadline, not later, naming the selector and the page.
func TestWaitFailsAtItsDeadline(t *testing.T) {
	srv := site(t)
	b := New(t)
	b.Go(t, srv.URL+"/done")
	const budget = 300 * time.Millisecond
	start := time.Now()
	err := b.WaitErr("#never", budget)
	took := time.Since(start)
	if err == nil {
		t.Fatal("waiting for #never succeeded")
	}
	if !strings.Contains(err.Error(), "#never") || !strings.Contains(err.Error(), "/done") {
		t.Errorf("error does not name the selector and page: %v", err)
	}
	if took < budget || took > budget+2*time.Second {
		t.Errorf("the wait took %v with a %v budget", took, budget)
	}
	start = time.Now()
	err = b.WaitTrueErr("a miracle", `document.title === 'never'`, budget)
	took = time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "a miracle") {
		t.Fatalf("WaitTrueErr on a false condition = %v", err)
	}
	if took < budget || took > budget+2*time.Second {
		t.Errorf("WaitTrueErr took %v with a %v budget", took, budget)
	}
}

// fatalTB is a testing.TB whose Fatalf ends the goroutine (as the real
// one does) after keeping the message, to watch a helper fail a test.
type fatalTB struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	cleanups []func()
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fatalTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// TestBrokenBrowserFailsTheTest: a browser that exits at once fails the
// test with what it said, and does not take the test binary down (a
// second start attempt after a failed one made chromedp panic).
func TestBrokenBrowserFailsTheTest(t *testing.T) {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		start(f, "/bin/false")
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	if !strings.Contains(f.fatal, "starting /bin/false") {
		t.Fatalf("a browser that exits at once: Fatalf %q, want it named", f.fatal)
	}
}
