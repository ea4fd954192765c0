// Package browser drives Debian's Chromium headless for tests, through
// chromedp: one browser per New, a fresh profile in the test's temporary
// folder, and three promises a security reviewer can rely on:
//
//   - every wait has a deadline and fails the test loudly when it passes,
//     naming the selector, the page and what the page showed (with a
//     screenshot); nothing sleeps;
//   - every error the page writes to its console, every uncaught exception
//     and every Content-Security-Policy violation fails the test, unless
//     the test said beforehand that it expects that one (Expect);
//   - screenshots are full-page PNGs under $PARACHUTE_ARTIFACTS (default
//     test/.state/artifacts/console/, never committed).
//
// Without /usr/bin/chromium (test/deps/50-chromium.sh installs it) New
// skips the test, except under CI=true, where it fails it: CI must never
// pass by skipping the browser tests.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/parachute-gateway/parachute/test/prereq"
)

// ExecPath is the Chromium the tests drive: Debian's package.
const ExecPath = "/usr/bin/chromium"

// EnvArtifacts names the folder screenshots go to.
const EnvArtifacts = "PARACHUTE_ARTIFACTS"

// StepTimeout bounds every step that has no deadline of its own: a
// navigation, a click, an evaluation.
const StepTimeout = 10 * time.Second

// flushTimeout bounds the wait for the console's messages to catch up.
const flushTimeout = 5 * time.Second

// flushPrefix marks the console message Problems writes to know it has
// seen everything the page wrote before.
const flushPrefix = "parachute-browser-flush-"

// cspProbe runs in every document before the page's own scripts. DevTools
// injects it, so the page's CSP does not apply to it. It writes each
// violation to the console as an error: a violation fails the test even
// where Chromium's own report of it changes wording or level.
const cspProbe = `addEventListener('securitypolicyviolation', function (e) {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') +
    ' at ' + (e.sourceFile || document.URL) + ':' + e.lineNumber);
}, true);`

// Width and Height are the window's size: the console's desktop layout.
// PhoneWidth and PhoneHeight are a phone's viewport in CSS pixels.
const (
	Width       = 1280
	Height      = 900
	PhoneWidth  = 390
	PhoneHeight = 844
)

// Browser is one headless Chromium with one tab, for one test.
type Browser struct {
	// Artifacts is the folder Screenshot writes to.
	Artifacts string
	// Started is how long Chromium took to start and open its tab.
	Started time.Duration

	ctx    context.Context // the tab's; no deadline (chromedp's rule)
	cancel context.CancelFunc

	mu        sync.Mutex
	msgs      []chromedp.ConsoleMessage
	seen      chan struct{} // closed and replaced at each message
	expected  []*regexp.Regexp
	pending   []string // problems found while an expectation ended
	flushes   int
	streamErr error
}

// New starts Chromium for t and stops it when t ends. At t's end it fails t
// with every console error, exception and CSP violation not expected.
func New(t testing.TB) *Browser {
	t.Helper()
	if why := Missing(); why != "" {
		Unavailable(t, why)
	}
	return start(t, ExecPath)
}

// start is New with the browser at path.
func start(t testing.TB, path string) *Browser {
	t.Helper()
	dir := t.TempDir()
	out := &tailBuffer{max: 8 << 10}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.CombinedOutput(out), // Chromium's own complaints, for a start that fails
		chromedp.ExecPath(path),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.WindowSize(Width, Height),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &Browser{Artifacts: ArtifactsDir(), ctx: ctx, seen: make(chan struct{})}
	b.cancel = func() { cancelTab(); cancelAlloc() }

	start := time.Now()
	// The first Run starts the browser; it must not carry a deadline, or
	// the deadline would stop the browser. A start that hangs is bounded
	// by the allocator's own read timeout of the DevTools address. Only one
	// call may try: a second start after a failed one makes chromedp
	// close a channel twice and panic, so the console is subscribed after.
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tgt, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspProbe}); err != nil {
			return err
		}
		// A headless tab is never the focused window; without this, autofocus
		// and :focus do nothing and keyboard use cannot be tested.
		_, err := cdp.Call(ctx, tgt, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
		return err
	})); err != nil {
		b.cancel()
		msg := err.Error()
		if o := strings.TrimSpace(out.String()); o != "" && !strings.Contains(msg, o) {
			msg += "\nits output ended with:\n" + o
		}
		t.Fatalf("browser: starting %s: %s", path, msg)
	}
	b.Started = time.Since(start)
	// Nothing has loaded yet (the tab shows about:blank): no message is
	// lost by subscribing now.
	go b.collect(chromedp.Console(ctx))
	t.Cleanup(func() {
		if problems, err := b.problems(); err != nil {
			t.Errorf("browser: reading the console: %v", err)
		} else if len(problems) > 0 {
			t.Errorf("browser: the page reported %d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
		}
		b.cancel()
	})
	t.Logf("browser: chromium started in %v", b.Started.Round(time.Millisecond))
	return b
}

// Missing says why there can be no browser, or "" when there can.
func Missing() string {
	if _, err := os.Stat(ExecPath); err != nil {
		return ExecPath + " not found (test/deps/50-chromium.sh installs Debian's chromium; `make deps` runs it)"
	}
	if _, err := exec.LookPath(ExecPath); err != nil {
		return ExecPath + " is not executable"
	}
	return ""
}

// Unavailable skips t, or fails it under CI=true.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	prereq.Unavailable(t, "browser", why)
}

// ArtifactsDir is $PARACHUTE_ARTIFACTS, or test/.state/artifacts/console
// in the repository (ignored by git).
func ArtifactsDir() string {
	if d := os.Getenv(EnvArtifacts); d != "" {
		return d
	}
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", ".state", "artifacts", "console")
}

// collect keeps every console message until the browser stops.
func (b *Browser) collect(messages func(func(chromedp.ConsoleMessage, error) bool)) {
	for m, err := range messages {
		b.mu.Lock()
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				b.streamErr = err
			}
			close(b.seen)
			b.seen = make(chan struct{})
			b.mu.Unlock()
			return
		}
		b.msgs = append(b.msgs, m)
		close(b.seen)
		b.seen = make(chan struct{})
		b.mu.Unlock()
	}
}

// Expect lets console errors matching pattern pass until the returned
// stop is called: a test that provokes one (a refused request shows as
// "Failed to load resource: ... 401") says so before, and stops
// expecting it after. stop first waits for every message the page wrote
// until then; the problems among them that were not expected are kept
// for the next Problems (or the end of the test).
func (b *Browser) Expect(pattern string) (stop func(t testing.TB)) {
	re := regexp.MustCompile(pattern)
	b.mu.Lock()
	b.expected = append(b.expected, re)
	b.mu.Unlock()
	return func(t testing.TB) {
		t.Helper()
		p, err := b.problems()
		if err != nil {
			t.Fatalf("browser: reading the console: %v", err)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.pending = append(b.pending, p...)
		for i, e := range b.expected {
			if e == re {
				b.expected = append(b.expected[:i:i], b.expected[i+1:]...)
				break
			}
		}
	}
}

// Problems returns the console errors, exceptions and CSP violations not
// expected since the last call, and forgets them. It first makes sure
// every message the page wrote before the call has arrived.
func (b *Browser) Problems(t testing.TB) []string {
	t.Helper()
	p, err := b.problems()
	if err != nil {
		t.Fatalf("browser: reading the console: %v", err)
	}
	return p
}

func (b *Browser) problems() ([]string, error) {
	b.mu.Lock()
	b.flushes++
	marker := fmt.Sprintf("%s%d", flushPrefix, b.flushes)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, flushTimeout)
	defer cancel()
	// The marker goes through the same stream as the page's messages, after
	// them: once it is read, so is everything before it.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void]("console.debug("+jsString(marker)+")", chromedp.EvalIgnoreExceptions)); err != nil && !errors.Is(err, chromedp.ErrJSUndefined) {
		return nil, fmt.Errorf("writing the flush marker: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for i, m := range b.msgs {
			if m.Text == marker {
				out := append(b.pending, b.classify(b.msgs[:i])...)
				b.pending = nil
				b.msgs = append([]chromedp.ConsoleMessage(nil), b.msgs[i+1:]...)
				return out, nil
			}
		}
		if b.streamErr != nil {
			return nil, b.streamErr
		}
		seen := b.seen
		b.mu.Unlock()
		select {
		case <-seen:
		case <-ctx.Done():
			b.mu.Lock()
			return nil, fmt.Errorf("the console stream did not deliver the flush marker within %v", flushTimeout)
		}
		b.mu.Lock()
	}
}

// classify keeps the messages that are problems: errors, exceptions and
// anything about a Content-Security-Policy, at any level.
func (b *Browser) classify(msgs []chromedp.ConsoleMessage) []string {
	var out []string
next:
	for _, m := range msgs {
		if strings.HasPrefix(m.Text, flushPrefix) {
			continue
		}
		csp := m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") || strings.HasPrefix(m.Text, "CSP violation")
		if !csp && m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
			continue
		}
		for _, re := range b.expected {
			if re.MatchString(m.Text) {
				continue next
			}
		}
		where := m.URL
		if where != "" && m.Line > 0 {
			where = fmt.Sprintf("%s:%d", where, m.Line+1)
		}
		out = append(out, fmt.Sprintf("%s (source %q) at %s", m.String(), m.Source, where))
	}
	return out
}

// step runs a with StepTimeout.
func (b *Browser) step(a chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, StepTimeout)
	defer cancel()
	return chromedp.Do(ctx, a)
}

// Go navigates to url, waits for its load and returns the document's
// response. It fails t when the page does not load within StepTimeout.
func (b *Browser) Go(t testing.TB, url string) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, StepTimeout)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		b.fail(t, "go-failure", "navigating to %s: %v", url, err)
	}
	return b.orLoaded(t, resp)
}

// Submit clicks sel, which must start a navigation (a form's button, a
// link), waits for the new page's load and returns its document's
// response (after redirects).
func (b *Browser) Submit(t testing.TB, sel string) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, StepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.fail(t, "submit-failure", "clicking %s and waiting for the page it opens: %v", sel, err)
	}
	return b.orLoaded(t, resp)
}

// orLoaded returns resp, or when chromedp could not tell the document's
// response among the page's requests (a page holding an EventSource open
// confuses it), the loaded document's address and status as the page's
// own navigation entry gives them.
func (b *Browser) orLoaded(t testing.TB, resp *network.Response) *network.Response {
	t.Helper()
	if resp != nil {
		return resp
	}
	v := Eval[struct {
		URL    string `json:"url"`
		Status int64  `json:"status"`
	}](t, b, `({url: document.URL, status: (performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0})`)
	if v.Status == 0 {
		b.fail(t, "response-failure", "no response status for the document at %s", v.URL)
	}
	return &network.Response{URL: v.URL, Status: v.Status}
}

// Enter presses the Enter key on whatever has the keyboard focus (as a
// keyboard-only operator would), which must start a navigation; it waits
// for the new page's load and returns its document's response.
func (b *Browser) Enter(t testing.TB) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, StepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.KeyEvent(kb.Enter))
	if err != nil {
		b.fail(t, "enter-failure", "pressing Enter on %s (focus on %s) and waiting for the page it opens: %v", b.location(), b.Focused(t), err)
	}
	return b.orLoaded(t, resp)
}

// WaitFocus waits until the element matching sel has the keyboard focus
// (autofocus is applied a moment after the page loads), failing t if it
// does not within d.
func (b *Browser) WaitFocus(t testing.TB, sel string, d time.Duration) {
	t.Helper()
	if err := b.WaitTrueErr("the focus on "+sel, fmt.Sprintf(`document.activeElement !== null && document.activeElement.matches(%s)`, jsString(sel)), d); err != nil {
		b.fail(t, "focus-failure", "%v (the focus is on %s)", err, b.Focused(t))
	}
}

// Focused describes the element with the keyboard focus: its tag, id and
// text, or "body" when nothing has it.
func (b *Browser) Focused(t testing.TB) string {
	t.Helper()
	return Eval[string](t, b, `(() => { const el = document.activeElement; if (!el || el === document.body) return 'body'; return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' ' + JSON.stringify((el.innerText || el.value || '').slice(0, 40)); })()`)
}

// Wait waits until an element matching the CSS selector sel is visible,
// failing t if none is within d.
func (b *Browser) Wait(t testing.TB, sel string, d time.Duration) {
	t.Helper()
	if err := b.WaitErr(sel, d); err != nil {
		b.fail(t, "wait-failure", "%v", err)
	}
}

// WaitErr is Wait returning the failure instead of failing the test.
func (b *Browser) WaitErr(sel string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("no element %s visible within %v on %s", sel, d, b.location())
		}
		return fmt.Errorf("waiting for %s on %s: %w", sel, b.location(), err)
	}
	return nil
}

// WaitTrue waits until the JavaScript expression js is truthy in the page,
// failing t if it is not within d; what names the condition in the
// failure. It re-checks on every change of the DOM, in the page, so it
// sees a row the moment it is added; it evaluates no string (the page's
// CSP forbids eval).
func (b *Browser) WaitTrue(t testing.TB, what, js string, d time.Duration) {
	t.Helper()
	if err := b.WaitTrueErr(what, js, d); err != nil {
		b.fail(t, "waittrue-failure", "%v", err)
	}
}

// WaitTrueErr is WaitTrue returning the failure instead of failing the test.
func (b *Browser) WaitTrueErr(what, js string, d time.Duration) error {
	// Re-checked on every DOM change (at once) and every frame (what no
	// mutation shows, as the focus moving).
	expr := fmt.Sprintf(`new Promise((resolve) => {
  const check = () => { try { return !!(%s); } catch (e) { return false; } };
  if (check()) { resolve(true); return; }
  let done = false;
  const finish = (v) => { if (done) return; done = true; obs.disconnect(); clearTimeout(timer); resolve(v); };
  const obs = new MutationObserver(() => { if (check()) finish(true); });
  obs.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  const frame = () => { if (done) return; if (check()) { finish(true); return; } requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  const timer = setTimeout(() => finish(check()), %d);
})`, js, d.Milliseconds())
	ctx, cancel := context.WithTimeout(b.ctx, d+StepTimeout)
	defer cancel()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr, chromedp.EvalAwaitPromise))
	switch {
	case err != nil:
		return fmt.Errorf("waiting for %s on %s: %w", what, b.location(), err)
	case !ok:
		return fmt.Errorf("%s did not happen within %v on %s", what, d, b.location())
	}
	return nil
}

// Cookies returns the browser's cookies for url, HttpOnly ones included.
func (b *Browser) Cookies(t testing.TB, url string) []*network.Cookie {
	t.Helper()
	var out []*network.Cookie
	err := b.step(chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		r, err := cdp.Call(ctx, tgt, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		out = r.Cookies
		return err
	}))
	if err != nil {
		t.Fatalf("browser: reading the cookies of %s: %v", url, err)
	}
	return out
}

// Phone sizes the tab as a phone held upright (a mobile viewport, touch
// on) until Desktop; the pages that follow lay out as on a phone.
func (b *Browser) Phone(t testing.TB) {
	t.Helper()
	if err := b.step(chromedp.EmulateViewport(PhoneWidth, PhoneHeight, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait, chromedp.EmulateScale(2))); err != nil {
		t.Fatalf("browser: phone viewport: %v", err)
	}
}

// Desktop undoes Phone: the window's own Width x Height again.
func (b *Browser) Desktop(t testing.TB) {
	t.Helper()
	if err := b.step(chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tgt, emulation.ClearDeviceMetricsOverride, cdp.Empty{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tgt, emulation.SetTouchEmulationEnabled, emulation.SetTouchEmulationEnabledParams{})
		return err
	})); err != nil {
		t.Fatalf("browser: desktop viewport: %v", err)
	}
}

// Overflow is how many CSS pixels the page is wider than its viewport (0
// when it fits: nothing to scroll sideways).
func (b *Browser) Overflow(t testing.TB) int {
	t.Helper()
	return Eval[int](t, b, `Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth)`)
}

// Overflowing names the elements (at most 5) that make the page wider
// than its viewport, with their right edge in CSS pixels: where to look
// when Overflow is not 0. An element inside a box that scrolls sideways
// counts only when it escapes that box's clip, as an absolutely
// positioned element whose containing block is outside the box does.
func (b *Browser) Overflowing(t testing.TB) []string {
	t.Helper()
	return Eval[[]string](t, b, `(() => {
  const w = document.documentElement.clientWidth, out = [], hit = new Set();
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.classList.length ? '.' + [...el.classList].join('.') : '');
  // The boxes whose overflow can clip el: its containing blocks, upwards.
  const clipped = (el) => {
    let pos = getComputedStyle(el).position, p = el.parentElement;
    while (p && p !== document.documentElement) {
      const cs = getComputedStyle(p);
      if (pos !== 'absolute' || cs.position !== 'static') {
        if (cs.overflowX !== 'visible') return true;
        pos = cs.position;
      }
      p = p.parentElement;
    }
    return false;
  };
  for (const el of document.body.querySelectorAll('*')) {
    if (out.length >= 5) break;
    if (getComputedStyle(el).position === 'fixed' || el.getBoundingClientRect().right <= w + 0.5 || clipped(el)) continue;
    let a = el.parentElement, inside = false;
    for (; a; a = a.parentElement) if (hit.has(a)) { inside = true; break; }
    if (inside) continue;
    hit.add(el);
    let path = [], p = el;
    while (p && p !== document.body) { path.unshift(name(p)); p = p.parentElement; }
    out.push(path.join(' > ') + ' (position ' + getComputedStyle(el).position + ', right edge ' + Math.round(el.getBoundingClientRect().right) + ' px)');
  }
  if (out.length) return out;
  // No box sticks out: then a box's content does, as a long word that
  // cannot wrap. Name the innermost such boxes.
  const spill = [];
  for (const el of document.body.querySelectorAll('*')) {
    const cs = getComputedStyle(el);
    if (cs.position === 'fixed' || cs.overflowX !== 'visible' || clipped(el)) continue;
    if (el.getBoundingClientRect().left + el.scrollWidth > w + 0.5) spill.push(el);
  }
  for (const el of spill) {
    if (out.length >= 5) break;
    if (spill.some((o) => o !== el && el.contains(o))) continue;
    let path = [], p = el;
    while (p && p !== document.body) { path.unshift(name(p)); p = p.parentElement; }
    out.push(path.join(' > ') + ' (its content reaches ' + Math.round(el.getBoundingClientRect().left + el.scrollWidth) + ' px: ' + JSON.stringify(el.textContent.trim().slice(0, 60)) + ')');
  }
  return out;
})()`)
}

// Click clicks the first visible element matching sel.
func (b *Browser) Click(t testing.TB, sel string) {
	t.Helper()
	if err := b.step(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		b.fail(t, "click-failure", "clicking %s on %s: %v", sel, b.location(), err)
	}
}

// SetValue sets the value of the form field sel (an input, a select, a
// textarea) and fires its input and change events, as typing would.
func (b *Browser) SetValue(t testing.TB, sel, value string) {
	t.Helper()
	js := fmt.Sprintf(`(() => {
  const el = document.querySelector(%s);
  if (!el) return false;
  el.value = %s;
  el.dispatchEvent(new Event('input', {bubbles: true}));
  el.dispatchEvent(new Event('change', {bubbles: true}));
  return el.value === %[2]s;
})()`, jsString(sel), jsString(value))
	var ok bool
	if err := b.step(chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		v, err := chromedp.Evaluate[bool](js)(ctx, tgt)
		ok = v
		return err
	})); err != nil || !ok {
		b.fail(t, "setvalue-failure", "setting %s to %q on %s: found=%v err=%v", sel, value, b.location(), ok, err)
	}
}

// Text returns the visible text of the first element matching sel.
func (b *Browser) Text(t testing.TB, sel string) string {
	t.Helper()
	return Eval[string](t, b, fmt.Sprintf(`(() => { const el = document.querySelector(%s); return el ? el.innerText : null; })()`, jsString(sel)))
}

// Attr returns the attribute name of the first element matching sel, or
// "" when it has none; it fails t when there is no such element.
func (b *Browser) Attr(t testing.TB, sel, name string) string {
	t.Helper()
	v := Eval[*string](t, b, fmt.Sprintf(`(() => { const el = document.querySelector(%s); return el ? (el.getAttribute(%s) ?? '') : null; })()`, jsString(sel), jsString(name)))
	if v == nil {
		b.fail(t, "attr-failure", "no element %s on %s", sel, b.location())
	}
	return *v
}

// Count returns how many elements match sel.
func (b *Browser) Count(t testing.TB, sel string) int {
	t.Helper()
	return Eval[int](t, b, fmt.Sprintf(`document.querySelectorAll(%s).length`, jsString(sel)))
}

// URL returns the tab's current address.
func (b *Browser) URL(t testing.TB) string {
	t.Helper()
	return Eval[string](t, b, `document.URL`)
}

// Eval evaluates the JavaScript expression js in the page (awaiting a
// promise) and decodes its JSON value into T.
func Eval[T any](t testing.TB, b *Browser, js string) T {
	t.Helper()
	var out T
	err := b.step(chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		v, err := chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise)(ctx, tgt)
		out = v
		return err
	}))
	if err != nil {
		b.fail(t, "eval-failure", "evaluating %.80q on %s: %v", js, b.location(), err)
	}
	return out
}

// Screenshot saves a full-page PNG of the tab as Artifacts/name.png and
// returns its path.
func (b *Browser) Screenshot(t testing.TB, name string) string {
	t.Helper()
	path, err := b.screenshot(name)
	if err != nil {
		t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	t.Logf("browser: screenshot %s", path)
	return path
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (b *Browser) screenshot(name string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, StepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(b.Artifacts, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(b.Artifacts, unsafeName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// location names the page for a failure message: its address and the
// start of its text.
func (b *Browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.URL + ' (' + JSON.stringify((document.body ? document.body.innerText : '').slice(0, 300)) + ')'`))
	if err != nil {
		return fmt.Sprintf("an unknown page (%v)", err)
	}
	return v
}

// fail saves a screenshot named after t and what failed, and fails t.
func (b *Browser) fail(t testing.TB, what, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if path, err := b.screenshot(t.Name() + "-" + what); err == nil {
		msg += "\n(screenshot " + path + ")"
	}
	t.Fatalf("browser: %s", msg)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20 || r == 0x2028 || r == 0x2029 || r == '<':
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > w.max {
		w.b = append([]byte(nil), w.b[len(w.b)-w.max:]...)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
