package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/parachute-gateway/parachute/audit"
)

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"login", "health", "sessions", "access", "live", "trace", "audit", "policy"}

// navItems is the navigation on every page.
var navItems = []struct{ Page, Path, Label string }{
	{"health", "/console/", "Health"},
	{"sessions", "/console/sessions", "Sessions"},
	{"access", "/console/access", "Access"},
	{"live", "/console/live", "Live"},
	{"audit", "/console/audit", "Audit"},
	{"policy", "/console/policy", "Policy"},
}

// funcs are the templates' helpers. esc shows invisible, control and
// bidi characters as escapes (audit.Escape): a display name or a file
// name cannot reorder or hide what the operator reads.
var funcs = template.FuncMap{
	"esc": audit.Escape,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"join": strings.Join,
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// pageData is what every template gets.
type pageData struct {
	Page   string
	Title  string
	Nav    any
	CSRF   string
	Actor  string
	Flash  *flash
	Now    time.Time
	Data   any
	Signed bool
}

var titles = map[string]string{
	"login": "Sign in", "health": "Health", "sessions": "Sessions", "access": "Access",
	"live": "Live decisions", "trace": "Turn trace", "audit": "Audit log", "policy": "Policy",
}

// render writes page name with data for session s (nil on the login page).
func (c *Console) render(w http.ResponseWriter, _ *http.Request, code int, name string, s *session, data any) {
	pd := pageData{Page: name, Title: titles[name], Nav: navItems, Now: c.now(), Data: data}
	if s != nil {
		pd.Signed, pd.CSRF, pd.Actor, pd.Flash = true, s.csrf, s.actor(), c.takeFlash(s)
	}
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, pd); err != nil {
		c.log.Error().Err(err).Str("page", name).Msg("console: page not rendered")
		http.Error(w, "console: the page could not be rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// done ends an action: a one-shot message and a 303 back to the page.
func (c *Console) done(w http.ResponseWriter, r *http.Request, s *session, back string, err error, ok string) {
	if err != nil {
		c.setFlash(s, false, err.Error())
	} else {
		c.setFlash(s, true, ok)
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// --- sessions ---

// adminSession mirrors the operator API's GET /v1/sessions rows.
type adminSession struct {
	ID          string    `json:"id"`
	Owner       string    `json:"owner"`
	Connector   string    `json:"connector"`
	ChatID      string    `json:"chat_id"`
	Workspace   string    `json:"workspace"`
	Created     time.Time `json:"created"`
	LastActive  time.Time `json:"last_active"`
	Ended       time.Time `json:"ended"`
	Turns       int       `json:"turns"`
	Live        bool      `json:"live"`
	TrustLevel  string    `json:"trust_level"`
	Runtime     string    `json:"runtime"`
	ReadOnly    bool      `json:"read_only"`
	Network     bool      `json:"network"`
	TokensToday int64     `json:"tokens_today"`
}

func (c *Console) sessionsPage(w http.ResponseWriter, r *http.Request, s *session) {
	var list []adminSession
	err := c.admin(r.Context(), s.actor(), "GET", "/v1/sessions", nil, &list)
	c.render(w, r, http.StatusOK, "sessions", s, map[string]any{"Sessions": list, "Err": errString(err)})
}

func (c *Console) sessionStop(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	err := c.admin(r.Context(), s.actor(), "POST", "/v1/sessions/"+url.PathEscape(id)+"/stop", nil, nil)
	c.done(w, r, s, "/console/sessions", err, "Stopped session "+id+" (recorded with you as actor).")
}

// --- access ---

type adminPending struct {
	Code        string    `json:"code"`
	Connector   string    `json:"connector"`
	Identity    string    `json:"identity"`
	DisplayName string    `json:"display_name"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
}

type adminInvite struct {
	Hash      string    `json:"hash"`
	Role      string    `json:"role"`
	Workspace string    `json:"workspace"`
	Connector string    `json:"connector"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
}

type adminBinding struct {
	Connector string `json:"connector"`
	Identity  string `json:"identity"`
	Role      string `json:"role"`
	Workspace string `json:"workspace"`
	Source    string `json:"source"`
	Held      bool   `json:"held"`
}

// Roles offered by the approve and invite forms (others can be typed in
// the CLI; the operator API refuses an undefined one either way).
var builtinRoles = []string{"member", "guest", "owner"}

func (c *Console) accessPage(w http.ResponseWriter, r *http.Request, s *session) {
	var (
		pending  []adminPending
		invites  []adminInvite
		bindings []adminBinding
		errs     []string
	)
	for _, q := range []struct {
		path string
		out  any
	}{{"/v1/pairings", &pending}, {"/v1/invites", &invites}, {"/v1/bindings", &bindings}} {
		if err := c.admin(r.Context(), s.actor(), "GET", q.path, nil, q.out); err != nil {
			errs = append(errs, q.path+": "+err.Error())
		}
	}
	c.render(w, r, http.StatusOK, "access", s, map[string]any{
		"Pending": pending, "Invites": invites, "Bindings": bindings, "Roles": builtinRoles, "Errs": errs,
		"Expiries": []struct {
			Label string
			Secs  int64
		}{{"1 hour", 3600}, {"1 day", 86400}, {"7 days", 7 * 86400}},
	})
}

func (c *Console) pairingAction(w http.ResponseWriter, r *http.Request, s *session) {
	code := r.PathValue("code")
	var err error
	var msg string
	switch a := r.PostFormValue("action"); a {
	case "approve":
		body := map[string]string{"role": r.PostFormValue("role"), "workspace": strings.TrimSpace(r.PostFormValue("workspace"))}
		err = c.admin(r.Context(), s.actor(), "POST", "/v1/pairings/"+url.PathEscape(code)+"/approve", body, nil)
		msg = fmt.Sprintf("Approved pairing %s as %s.", code, body["role"])
	case "deny":
		err = c.admin(r.Context(), s.actor(), "POST", "/v1/pairings/"+url.PathEscape(code)+"/deny", nil, nil)
		msg = "Denied pairing " + code + "."
	default:
		err = fmt.Errorf("action %q is neither approve nor deny", a)
	}
	c.done(w, r, s, "/console/access", err, msg)
}

func (c *Console) inviteCreate(w http.ResponseWriter, r *http.Request, s *session) {
	secs, err := strconv.ParseInt(r.PostFormValue("expires_seconds"), 10, 64)
	if err != nil {
		c.done(w, r, s, "/console/access", fmt.Errorf("expires_seconds %q is not a number of seconds", r.PostFormValue("expires_seconds")), "")
		return
	}
	body := map[string]any{"role": r.PostFormValue("role"), "workspace": strings.TrimSpace(r.PostFormValue("workspace")),
		"connector": strings.TrimSpace(r.PostFormValue("connector")), "expires_seconds": secs}
	var out struct {
		Token   string    `json:"token"`
		Expires time.Time `json:"expires"`
	}
	if err := c.admin(r.Context(), s.actor(), "POST", "/v1/invites", body, &out); err != nil {
		c.done(w, r, s, "/console/access", err, "")
		return
	}
	c.mu.Lock()
	s.flash = &flash{OK: true, Message: fmt.Sprintf("Invite created, single use, valid until %s. It is shown this once: the user sends", out.Expires.UTC().Format(time.RFC3339)),
		Copy: "/start " + out.Token}
	c.mu.Unlock()
	http.Redirect(w, r, "/console/access", http.StatusSeeOther)
}

func (c *Console) inviteRevoke(w http.ResponseWriter, r *http.Request, s *session) {
	h := r.PathValue("hash")
	err := c.admin(r.Context(), s.actor(), "POST", "/v1/invites/"+url.PathEscape(h)+"/revoke", nil, nil)
	c.done(w, r, s, "/console/access", err, "Revoked invite "+h+".")
}

func (c *Console) bindingRevoke(w http.ResponseWriter, r *http.Request, s *session) {
	body := map[string]string{"connector": r.PostFormValue("connector"), "identity": r.PostFormValue("identity")}
	err := c.admin(r.Context(), s.actor(), "POST", "/v1/bindings/revoke", body, nil)
	c.done(w, r, s, "/console/access", err, fmt.Sprintf("Revoked the binding of %s on %s.", body["identity"], body["connector"]))
}

// --- health ---

func (c *Console) healthPage(w http.ResponseWriter, r *http.Request, s *session) {
	h := c.b.Health(r.Context())
	classes := make([]string, 0, len(h.Sandboxes))
	for k := range h.Sandboxes {
		classes = append(classes, k)
	}
	sort.Strings(classes)
	auditErr := ""
	if h.Audit != nil {
		auditErr = h.Audit.Error()
	}
	c.render(w, r, http.StatusOK, "health", s, map[string]any{
		"H": h, "Classes": classes, "AuditErr": auditErr, "Charts": c.charts(),
	})
}

// chartsFragment is the charts alone, for the script to refresh in place.
func (c *Console) chartsFragment(w http.ResponseWriter, _ *http.Request, _ *session) {
	var buf bytes.Buffer
	if err := c.pages["health"].ExecuteTemplate(&buf, "charts", c.charts()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	var ar *AdminRefusal
	if errors.As(err, &ar) {
		return ar.Error()
	}
	return err.Error()
}
