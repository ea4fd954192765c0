package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/parachute-gateway/parachute/audit"
)

// Reasons a console request is refused with (the "reason" of its page
// and of its audit record).
const (
	ReasonHost           = "console-host-mismatch"
	ReasonNoSession      = "console-no-session"
	ReasonCSRF           = "console-csrf"
	ReasonCrossSite      = "console-cross-site"
	ReasonTokenUnknown   = "console-token-unknown"
	ReasonTokenUsed      = "console-token-used"
	ReasonTokenExpired   = "console-token-expired"
	ReasonTokenMissing   = "console-token-missing"
	ReasonNotRecorded    = "audit-unavailable"
	ReasonTooManyTokens  = "console-too-many-tokens"
	ReasonTooManyStreams = "console-too-many-streams"
	// ReasonLoginFlood: more logins were refused in a minute than are
	// recorded one by one; the record counts the rest.
	ReasonLoginFlood = "console-login-flood"
	ReasonTooLarge   = "console-form-too-large"
)

// Audit events (detail "event" of kind=admin records).
const (
	EventToken       = "console-token"
	EventLogin       = "console-login"
	EventLoginRefuse = "console-login-refused"
	EventLogout      = "console-logout"
)

// ErrNotRecorded: the audit record of a login, logout or token could not
// be written, so nothing happened.
var ErrNotRecorded = errors.New("console: the audit log could not record this, so it was not done")

type token struct {
	expires time.Time
	by      string
	used    bool
}

type session struct {
	id      string // SHA-256 hex of the cookie; its first 8 hex name it in records
	csrf    string
	expires time.Time
	by      string // who minted the token it logged in with
	flash   *flash
}

// flash is a one-shot message shown on the next page the session opens.
type flash struct {
	OK      bool
	Message string
	// Copy is a value shown in a read-only field to copy (an invite).
	Copy string
}

func (s *session) actor() string {
	return fmt.Sprintf("operator console session %s (logged in via token minted by %s)", s.id[:8], s.by)
}

func randomHex() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// MintURL makes a one-time login token for by (who asked: "gateway start",
// or the admin socket's operator) and returns the login URL holding it.
// The token is recorded (kind=admin event=console-token, its hash's first
// 12 hex, who asked) before it exists: no record, no token.
func (c *Console) MintURL(ctx context.Context, by string) (string, error) {
	tok := randomHex()
	h := hashHex(tok)
	now := c.now()
	c.mu.Lock()
	if len(c.tokens) >= maxTokens {
		for k, t := range c.tokens {
			if !now.Before(t.expires) {
				delete(c.tokens, k)
			}
		}
	}
	full := len(c.tokens) >= maxTokens
	c.mu.Unlock()
	if full {
		return "", fmt.Errorf("console: %d login tokens are outstanding (%s): %s; wait for them to expire", maxTokens, TokenTTL, ReasonTooManyTokens)
	}
	if err := c.b.Record(ctx, audit.Record{Kind: audit.KindAdmin, Decision: "allow",
		Detail: map[string]string{"event": EventToken, "actor": by, "token_hash": h[:12],
			"expires": now.Add(TokenTTL).UTC().Format(time.RFC3339)}}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	c.mu.Lock()
	c.tokens[h] = &token{expires: now.Add(TokenTTL), by: by}
	c.mu.Unlock()
	return c.origin() + "/console/login?token=" + tok, nil
}

// redeem consumes a token: the reason it is refused, or who minted it.
func (c *Console) redeem(tok string) (by, reason string) {
	if tok == "" {
		return "", ReasonTokenMissing
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tokens[hashHex(tok)]
	switch {
	case !ok:
		return "", ReasonTokenUnknown
	case t.used:
		return t.by, ReasonTokenUsed
	case !c.now().Before(t.expires):
		return t.by, ReasonTokenExpired
	}
	t.used = true
	return t.by, ""
}

// unspend gives back a token whose login did not happen.
func (c *Console) unspend(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.tokens[hashHex(tok)]; t != nil {
		t.used = false
	}
}

// tokenHelp says, for a refused token, what happened and what to do.
func tokenHelp(reason string) string {
	var what string
	switch reason {
	case ReasonTokenUsed:
		what = "This login token was already used: each token signs in once."
	case ReasonTokenExpired:
		what = fmt.Sprintf("This login token expired: a token is valid for %s.", TokenTTL)
	case ReasonTokenMissing:
		what = "No login token was given."
	default:
		what = "This login token is not one this gateway issued (mistyped, or minted before the gateway last restarted: a restart voids every token)."
	}
	return what + " Get a new one with `parachute console url --config FILE` on the gateway's host (as the gateway's user or root)."
}

// loginPage shows the sign-in form. A GET never consumes the token: a
// link preview or a prefetch must not burn it.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "login", nil, map[string]any{"Token": r.URL.Query().Get("token")})
}

// loginPost exchanges a token for a session. A cross-site post is
// refused (login CSRF would sign the operator into someone else's token).
func (c *Console) loginPost(w http.ResponseWriter, r *http.Request) {
	if reason, msg := c.sameOrigin(r); reason != "" {
		refuse(w, http.StatusForbidden, reason, msg)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	by, reason := c.redeem(tok)
	if reason != "" {
		detail := map[string]string{"event": EventLoginRefuse, "actor": "operator console (login page)"}
		if tok != "" {
			detail["token_hash"] = hashHex(tok)[:12]
		}
		if by != "" {
			detail["minted_by"] = by
		}
		c.recordCut(r.Context())
		if !c.countRefusal() {
			// Past refusedPerWindow in this window: counted, and the count
			// is recorded when the window ends (recordCut), so a flood of
			// junk tokens cannot fill the audit log's disk.
			c.render(w, r, http.StatusUnauthorized, "login", nil, map[string]any{"Refused": reason, "Help": tokenHelp(reason)})
			return
		}
		if err := c.b.Record(r.Context(), audit.Record{Kind: audit.KindAdmin, Decision: "deny", Reasons: []string{reason}, Detail: detail}); err != nil {
			c.log.Error().Err(err).Str("reason", reason).Msg("console: refused login not recorded")
		}
		c.render(w, r, http.StatusUnauthorized, "login", nil, map[string]any{"Refused": reason, "Help": tokenHelp(reason)})
		return
	}
	cookie := randomHex()
	s := &session{id: hashHex(cookie), csrf: randomHex(), expires: c.now().Add(SessionTTL), by: by}
	if err := c.b.Record(r.Context(), audit.Record{Kind: audit.KindAdmin, Decision: "allow",
		Detail: map[string]string{"event": EventLogin, "actor": s.actor(), "token_hash": hashHex(tok)[:12],
			"expires": s.expires.UTC().Format(time.RFC3339)}}); err != nil {
		// No session exists, so nothing was signed in: the token is given
		// back, to be used once the log can be written again.
		c.unspend(tok)
		c.render(w, r, http.StatusServiceUnavailable, "login", nil, map[string]any{"Refused": ReasonNotRecorded,
			"Help": "The audit log cannot be written, so the login was not recorded and no session was made (" + err.Error() + "). Fix the audit log (see /readyz), then sign in again with the same link while it is valid, or get a new one with `parachute console url --config FILE`."})
		return
	}
	c.mu.Lock()
	c.pruneLocked()
	if len(c.sessions) >= maxSessions {
		var oldest *session
		for _, o := range c.sessions {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		delete(c.sessions, oldest.id)
	}
	c.sessions[s.id] = s
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: cookie, Path: "/console", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(SessionTTL / time.Second)})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) pruneLocked() {
	now := c.now()
	for k, s := range c.sessions {
		if !now.Before(s.expires) {
			delete(c.sessions, k)
		}
	}
	// A spent or expired token is remembered for a while, so that using
	// it again is refused as used or expired, not as unknown.
	for k, t := range c.tokens {
		if now.After(t.expires.Add(tokenMemory)) {
			delete(c.tokens, k)
		}
	}
}

// maxActionBody is the most an action's form may hold.
const maxActionBody = 512 << 10

// Refused logins are recorded one by one up to refusedPerWindow in each
// refusedWindow; past that they are only counted, and the count is one
// record (reason console-login-flood) when the window ends. A refused
// login changes nothing, so nothing happens unrecorded; what is bounded is
// how much of the log a local process posting junk tokens can fill.
const (
	refusedWindow    = time.Minute
	refusedPerWindow = 20
)

// countRefusal counts one refused login: whether it is to be recorded.
func (c *Console) countRefusal() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.refusedAt.IsZero() || now.Sub(c.refusedAt) >= refusedWindow {
		c.refusedAt, c.refusedN = now, 0
	}
	c.refusedN++
	if c.refusedN > refusedPerWindow {
		if c.refusedCut == 0 {
			c.log.Warn().Int("per_minute", refusedPerWindow).Msg("console: logins refused faster than they are recorded one by one; the rest of this minute's are counted in one record")
		}
		c.refusedCut++
		return false
	}
	return true
}

// recordCut writes the count of the refused logins not recorded one by
// one, once their window has ended. Called by each refused login and by
// Run's ticker.
func (c *Console) recordCut(ctx context.Context) {
	c.mu.Lock()
	n, since := c.refusedCut, c.refusedAt
	if n == 0 || c.now().Sub(since) < refusedWindow {
		c.mu.Unlock()
		return
	}
	c.refusedCut = 0
	c.mu.Unlock()
	if err := c.b.Record(ctx, audit.Record{Kind: audit.KindAdmin, Decision: "deny", Reasons: []string{ReasonLoginFlood},
		Detail: map[string]string{"event": EventLoginRefuse, "actor": "operator console (login page)",
			"not_recorded": strconv.Itoa(n), "since": since.UTC().Format(time.RFC3339),
			"until": since.Add(refusedWindow).UTC().Format(time.RFC3339)}}); err != nil {
		c.log.Error().Err(err).Int("not_recorded", n).Msg("console: the count of refused logins was not recorded")
	}
}

// tokenMemory is how long past its expiry a token is remembered (only the
// login-time pruning; a full table drops expired tokens at once).
const tokenMemory = time.Hour

// sessionOf returns the request's live session, or nil.
func (c *Console) sessionOf(r *http.Request) *session {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[hashHex(ck.Value)]
	if s == nil {
		return nil
	}
	if !c.now().Before(s.expires) {
		delete(c.sessions, s.id)
		return nil
	}
	return s
}

// sameOrigin refuses a request a browser marks as cross-site, or whose
// Origin is not the console's. Origin "null" is what Chromium sends on a
// same-origin form post from a page served with Referrer-Policy:
// no-referrer; it is taken as the console's only when the browser also
// says Sec-Fetch-Site: same-origin (a sandboxed frame or data: page on
// another site sends null too, but with cross-site).
func (c *Console) sameOrigin(r *http.Request) (reason, msg string) {
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" {
		return ReasonCrossSite, fmt.Sprintf("refused: this request came from another site (Sec-Fetch-Site: %s); console actions are taken only from the console's own pages", site)
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && (o != "null" || site != "same-origin") {
		return ReasonCrossSite, fmt.Sprintf("refused: this request came from %q, not from the console (http://%s)", o, r.Host)
	}
	return "", ""
}

// otherSiteSubresource reports a request another site's page made as a
// subresource (an img, a script, a frame, a fetch or an EventSource), by
// the browser's fetch metadata. A page on another port of 127.0.0.1 is
// same-site, so the SameSite=Strict cookie goes with such a request: it
// cannot read the answer, but it would hold a live stream slot or read
// the audit log for it. A top-level navigation (a link the operator
// follows) is not one; a client that sends no fetch metadata is not a
// browser page.
func otherSiteSubresource(r *http.Request) (reason, msg string) {
	site := r.Header.Get("Sec-Fetch-Site")
	if site == "" || site == "same-origin" || site == "none" {
		return "", ""
	}
	if r.Header.Get("Sec-Fetch-Mode") == "navigate" && r.Header.Get("Sec-Fetch-Dest") == "document" {
		return "", ""
	}
	return ReasonCrossSite, fmt.Sprintf("refused: a page on another site or port asked for this (Sec-Fetch-Site: %s, Sec-Fetch-Dest: %s); console pages load only in their own tab. Open http://%s/console/ directly.",
		site, r.Header.Get("Sec-Fetch-Dest"), r.Host)
}

// page guards a GET: another site's subresource request is refused (403)
// and without a session it redirects to the login page.
func (c *Console) page(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reason, msg := otherSiteSubresource(r); reason != "" {
			refuse(w, http.StatusForbidden, reason, msg)
			return
		}
		s := c.sessionOf(r)
		if s == nil {
			http.Redirect(w, r, "/console/login", http.StatusSeeOther)
			return
		}
		h(w, r, s)
	})
}

// action guards a state change: a session cookie (else 401), a same-origin
// request (else 403) and the session's CSRF token in the form (else 403),
// compared in constant time.
func (c *Console) action(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.sessionOf(r)
		if s == nil {
			refuse(w, http.StatusUnauthorized, ReasonNoSession, "refused: no console session (no cookie, or it expired or the gateway restarted). Sign in again: get a token with `parachute console url --config FILE`.")
			return
		}
		if reason, msg := c.sameOrigin(r); reason != "" {
			refuse(w, http.StatusForbidden, reason, msg)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxActionBody)
		err := r.ParseForm()
		if err == nil {
			if err = r.ParseMultipartForm(64 << 10); errors.Is(err, http.ErrNotMultipart) {
				err = nil
			}
		}
		if err != nil {
			if mb := (*http.MaxBytesError)(nil); errors.As(err, &mb) {
				refuse(w, http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("refused: the form is over %d KiB, the most a console action reads (the playground evaluates at most %d KiB of input). Shorten it and try again.", maxActionBody>>10, maxPlaygroundInput>>10))
				return
			}
			refuse(w, http.StatusBadRequest, ReasonCSRF, "refused: the form could not be read ("+err.Error()+"), so its CSRF token could not be checked. Reload the page and try again.")
			return
		}
		got := r.PostFormValue("csrf")
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
			refuse(w, http.StatusForbidden, ReasonCSRF, "refused: the form's CSRF token is missing or is not this session's. Reload the page and try again.")
			return
		}
		h(w, r, s)
	})
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.b.Record(r.Context(), audit.Record{Kind: audit.KindAdmin, Decision: "allow",
		Detail: map[string]string{"event": EventLogout, "actor": s.actor()}}); err != nil {
		c.setFlash(s, false, "The logout could not be recorded in the audit log, so the session stays: "+err.Error())
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	c.mu.Lock()
	delete(c.sessions, s.id)
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/console", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/console/login?"+url.Values{"out": {"1"}}.Encode(), http.StatusSeeOther)
}

func (c *Console) setFlash(s *session, ok bool, msg string) {
	c.mu.Lock()
	s.flash = &flash{OK: ok, Message: msg}
	c.mu.Unlock()
}

func (c *Console) takeFlash(s *session) *flash {
	if s == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := s.flash
	s.flash = nil
	return f
}

// refuse answers a refused request with a short plain page naming the
// reason and the fix.
func refuse(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Parachute-Reasons", reason)
	w.WriteHeader(code)
	fmt.Fprintf(w, "%s\n\nreason: %s\n", msg, reason)
}
