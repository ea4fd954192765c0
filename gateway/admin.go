package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/console"
	"github.com/parachute-gateway/parachute/internal/unixsock"
	"github.com/parachute-gateway/parachute/sessions"
)

// AdminSocketName is the operator API's unix socket in the state dir.
//
// The operator API (pairings, invites, bindings, sessions, policy status)
// listens only there, never on the loopback TCP admin listener: a loopback
// port admits every process and every user of the host, while the socket
// is mode 0600 in the 0700 state dir and each connection's peer uid is read
// with SO_PEERCRED, checked (the gateway's own uid or root) and recorded as
// the actor of what it does. While the gateway runs it is the one writer of
// its stores and of its audit log; the CLI goes through this socket.
const AdminSocketName = "admin.sock"

// AdminSocketPath is the operator API's socket for a state dir.
func AdminSocketPath(stateDir string) string { return filepath.Join(stateDir, AdminSocketName) }

// Reasons an admin request is refused with (the "reason" of the JSON error).
const (
	AdminReasonPeerUnknown   = "peer-unknown"
	AdminReasonPeerForbidden = "peer-forbidden"
	AdminReasonBadRequest    = "bad-request"
	AdminReasonNotFound      = "not-found"
	AdminReasonNotRecorded   = "audit-unavailable"
	AdminReasonStore         = "store-error"
)

// AdminError is the body of every refused admin request.
type AdminError struct {
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// AdminPolicy is GET /v1/policy: the revision in force and the last
// refused reload, if the newest policy files are not in force.
type AdminPolicy struct {
	Revision string        `json:"revision"`
	Refused  *AdminRefusal `json:"refused,omitempty"`
}

// AdminRefusal is a refused policy reload.
type AdminRefusal struct {
	At       time.Time `json:"at"`
	Revision string    `json:"revision"` // the revision kept in force
	Error    string    `json:"error"`
}

// AdminSession is one session as GET /v1/sessions lists it.
type AdminSession struct {
	sessions.Session
	Live       bool   `json:"live"`
	TrustLevel string `json:"trust_level,omitempty"` // of the live session's turn
	Runtime    string `json:"runtime,omitempty"`
	ReadOnly   bool   `json:"read_only,omitempty"`
	Network    bool   `json:"network,omitempty"`
	// TokensToday is the owner's model tokens this UTC day (all sessions).
	TokensToday int64 `json:"tokens_today"`
}

// AdminConsoleToken is the answer of POST /v1/console/token: a one-time
// console login URL (docs/console.md).
type AdminConsoleToken struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

// AdminApprove is the body of POST /v1/pairings/{code}/approve.
type AdminApprove struct {
	Role      string `json:"role"`
	Workspace string `json:"workspace,omitempty"`
}

// AdminInviteRequest is the body of POST /v1/invites.
type AdminInviteRequest struct {
	Role           string `json:"role"`
	Workspace      string `json:"workspace,omitempty"`
	Connector      string `json:"connector,omitempty"`
	ExpiresSeconds int64  `json:"expires_seconds"`
}

// AdminInvite is a created invite; the token is shown this once.
type AdminInvite struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// AdminInviteListed is one unused invite, by hash prefix.
type AdminInviteListed struct {
	Hash string `json:"hash"`
	pairing.Invite
}

// AdminBinding is one binding as listed.
type AdminBinding struct {
	Connector string `json:"connector"`
	Identity  string `json:"identity"`
	Role      string `json:"role"`
	Workspace string `json:"workspace,omitempty"`
	Source    string `json:"source,omitempty"`
	Held      bool   `json:"held,omitempty"`
}

// AdminRevoke is the body of POST /v1/bindings/revoke.
type AdminRevoke struct {
	Connector string `json:"connector"`
	Identity  string `json:"identity"`
}

type adminPeerKey struct{}

// adminPeer is who is on the other end of an admin connection: a socket
// peer by uid and pid, or, in process, a console session by name.
type adminPeer struct {
	UID, PID int
	err      error
	console  string // the console session's actor (AdminHandlerAs)
}

func (p adminPeer) actor() string {
	if p.console != "" {
		return p.console
	}
	return fmt.Sprintf("operator uid:%d pid:%d (admin socket)", p.UID, p.PID)
}

// adminConnContext reads the peer's credentials once, when it connects.
func adminConnContext(ctx context.Context, conn net.Conn) context.Context {
	var p adminPeer
	p.UID, p.PID, p.err = unixsock.PeerCred(conn)
	return context.WithValue(ctx, adminPeerKey{}, p)
}

// startAdminSocket serves the operator API on <state_dir>/admin.sock
// until ctx ends.
func (g *Gateway) startAdminSocket(ctx context.Context, wg *sync.WaitGroup, errc chan<- error) error {
	path := AdminSocketPath(g.cfg.StateDir)
	ln, err := unixsock.Listen(path)
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", path, err)
	}
	srv := &http.Server{Handler: g.AdminHandler(), ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout: 2 * time.Minute, ConnContext: adminConnContext}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin socket: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = os.Remove(path)
	}()
	return nil
}

// AdminHandler is the operator API. Every request must come over the
// admin socket from the gateway's own uid or root; every action is
// recorded in the audit log with that uid as its actor before it takes
// effect (pairing actions through the pairing store's recorder, session
// stops here).
func (g *Gateway) AdminHandler() http.Handler {
	mux := g.adminMux()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(adminPeerKey{}).(adminPeer)
		switch {
		case !ok || p.err != nil || p.console != "":
			adminFail(w, http.StatusForbidden, AdminReasonPeerUnknown, "the peer's uid could not be read; the operator API answers only on its unix socket")
			return
		case p.UID != 0 && p.UID != os.Getuid():
			adminFail(w, http.StatusForbidden, AdminReasonPeerForbidden, fmt.Sprintf("uid %d is neither root nor the gateway's uid %d", p.UID, os.Getuid()))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// AdminHandlerAs is the operator API for the console, in process: the
// same handlers, checks and records as the socket's, with actor (the
// console session, which the console authenticated) as the actor of
// everything it does. It never mints console tokens.
func (g *Gateway) AdminHandlerAs(actor string) http.Handler {
	mux := g.adminMux()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), adminPeerKey{}, adminPeer{console: actor})))
	})
}

func (g *Gateway) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/policy", g.adminPolicy)
	mux.HandleFunc("GET /v1/pairings", g.adminPairings)
	mux.HandleFunc("POST /v1/pairings/{code}/approve", g.adminApprove)
	mux.HandleFunc("POST /v1/pairings/{code}/deny", g.adminDeny)
	mux.HandleFunc("GET /v1/invites", g.adminInvites)
	mux.HandleFunc("POST /v1/invites", g.adminInviteCreate)
	mux.HandleFunc("POST /v1/invites/{hash}/revoke", g.adminInviteRevoke)
	mux.HandleFunc("GET /v1/bindings", g.adminBindings)
	mux.HandleFunc("POST /v1/bindings/revoke", g.adminRevoke)
	mux.HandleFunc("GET /v1/sessions", g.adminSessions)
	mux.HandleFunc("POST /v1/sessions/{id}/stop", g.adminStop)
	mux.HandleFunc("POST /v1/console/token", g.adminConsoleToken)
	return mux
}

func adminActor(r *http.Request) string {
	p, _ := r.Context().Value(adminPeerKey{}).(adminPeer)
	return p.actor()
}

func adminFail(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(AdminError{Reason: reason, Error: msg})
}

func adminJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// adminDecode reads a small JSON body; unknown fields are refused (a
// mistyped "workspace" must not grant the default).
func adminDecode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		adminFail(w, http.StatusBadRequest, AdminReasonBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

// storeFail answers a pairing store error.
func storeFail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, pairing.ErrNotRecorded):
		adminFail(w, http.StatusServiceUnavailable, AdminReasonNotRecorded, err.Error()+": nothing was changed")
	case errors.Is(err, pairing.ErrNoSuchCode), errors.Is(err, pairing.ErrInvalidToken):
		adminFail(w, http.StatusNotFound, AdminReasonNotFound, err.Error())
	case errors.Is(err, pairing.ErrInvalid):
		adminFail(w, http.StatusBadRequest, AdminReasonBadRequest, err.Error())
	default:
		adminFail(w, http.StatusInternalServerError, AdminReasonStore, err.Error())
	}
}

// operatorStore opens the gateway's pairing store as this request's
// operator: events are recorded in the audit log (before the change
// commits) with the peer as actor.
func (g *Gateway) operatorStore(ctx context.Context, r *http.Request) (*pairing.Store, error) {
	return pairing.Open(ctx, pairing.Options{Path: pairing.PathIn(g.cfg.StateDir), Recorder: authRecorder{g.emit}, Actor: adminActor(r)})
}

func (g *Gateway) adminPolicy(w http.ResponseWriter, _ *http.Request) {
	out := AdminPolicy{Revision: g.Engine.Revision()}
	if rf := g.Engine.Refused(); rf != nil {
		out.Refused = &AdminRefusal{At: rf.At, Revision: rf.Revision, Error: fmt.Sprint(rf.Err)}
	}
	adminJSON(w, out)
}

func (g *Gateway) adminPairings(w http.ResponseWriter, r *http.Request) {
	list, err := g.Pairing.List(r.Context())
	if err != nil {
		storeFail(w, err)
		return
	}
	if list == nil {
		list = []pairing.Pending{}
	}
	adminJSON(w, list)
}

// roleKnown reports whether role is built in or defined in the config:
// an undefined role would quietly get guest's settings.
func (g *Gateway) roleKnown(role string) bool {
	switch role {
	case "owner", "member", "guest":
		return true
	}
	_, ok := g.cfg.Roles[role]
	return ok
}

func (g *Gateway) checkGrant(w http.ResponseWriter, role, ws, conn string) bool {
	if !g.roleKnown(role) {
		adminFail(w, http.StatusBadRequest, AdminReasonBadRequest, fmt.Sprintf("role %q is not defined: use owner, member, guest or a role under roles: in the config", role))
		return false
	}
	if _, ok := g.cfg.Workspaces[ws]; ws != "" && !ok {
		adminFail(w, http.StatusBadRequest, AdminReasonBadRequest, fmt.Sprintf("workspace %q is not in the config's workspaces: the user would be locked out of it", ws))
		return false
	}
	if _, ok := g.cfg.Connectors[conn]; conn != "" && !ok {
		adminFail(w, http.StatusBadRequest, AdminReasonBadRequest, fmt.Sprintf("connector %q is not in the config", conn))
		return false
	}
	return true
}

func (g *Gateway) adminApprove(w http.ResponseWriter, r *http.Request) {
	var req AdminApprove
	if !adminDecode(w, r, &req) {
		return
	}
	if req.Role == "" {
		req.Role = "member"
	}
	if !g.checkGrant(w, req.Role, req.Workspace, "") {
		return
	}
	s, err := g.operatorStore(r.Context(), r)
	if err != nil {
		storeFail(w, err)
		return
	}
	p, err := s.Approve(r.Context(), r.PathValue("code"), req.Role, req.Workspace)
	if err != nil {
		storeFail(w, err)
		return
	}
	adminJSON(w, p)
}

func (g *Gateway) adminDeny(w http.ResponseWriter, r *http.Request) {
	s, err := g.operatorStore(r.Context(), r)
	if err != nil {
		storeFail(w, err)
		return
	}
	p, err := s.Deny(r.Context(), r.PathValue("code"))
	if err != nil {
		storeFail(w, err)
		return
	}
	adminJSON(w, p)
}

func (g *Gateway) adminInvites(w http.ResponseWriter, r *http.Request) {
	m, err := g.Pairing.Invites(r.Context())
	if err != nil {
		storeFail(w, err)
		return
	}
	out := make([]AdminInviteListed, 0, len(m))
	for h, inv := range m {
		out = append(out, AdminInviteListed{Hash: h, Invite: inv})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hash < out[j].Hash })
	adminJSON(w, out)
}

func (g *Gateway) adminInviteCreate(w http.ResponseWriter, r *http.Request) {
	var req AdminInviteRequest
	if !adminDecode(w, r, &req) {
		return
	}
	if req.Role == "" {
		adminFail(w, http.StatusBadRequest, AdminReasonBadRequest, "role is required")
		return
	}
	if req.ExpiresSeconds <= 0 {
		adminFail(w, http.StatusBadRequest, AdminReasonBadRequest, "expires_seconds must be positive")
		return
	}
	if !g.checkGrant(w, req.Role, req.Workspace, req.Connector) {
		return
	}
	s, err := g.operatorStore(r.Context(), r)
	if err != nil {
		storeFail(w, err)
		return
	}
	ttl := time.Duration(req.ExpiresSeconds) * time.Second
	tok, err := s.CreateInvite(r.Context(), pairing.Invite{Role: req.Role, Workspace: req.Workspace, Connector: req.Connector}, ttl)
	if err != nil {
		storeFail(w, err)
		return
	}
	adminJSON(w, AdminInvite{Token: tok, Expires: time.Now().Add(ttl).UTC()})
}

func (g *Gateway) adminInviteRevoke(w http.ResponseWriter, r *http.Request) {
	s, err := g.operatorStore(r.Context(), r)
	if err != nil {
		storeFail(w, err)
		return
	}
	inv, err := s.RevokeInvite(r.Context(), r.PathValue("hash"))
	if err != nil {
		storeFail(w, err)
		return
	}
	adminJSON(w, AdminInviteListed{Hash: r.PathValue("hash"), Invite: inv})
}

func (g *Gateway) adminBindings(w http.ResponseWriter, r *http.Request) {
	list, err := g.Pairing.Bindings(r.Context())
	if err != nil {
		storeFail(w, err)
		return
	}
	out := make([]AdminBinding, 0, len(list))
	for _, b := range list {
		out = append(out, AdminBinding{Connector: b.Connector, Identity: b.Identity, Role: b.Role, Workspace: b.Workspace, Source: b.Source, Held: b.Held})
	}
	adminJSON(w, out)
}

func (g *Gateway) adminRevoke(w http.ResponseWriter, r *http.Request) {
	var req AdminRevoke
	if !adminDecode(w, r, &req) {
		return
	}
	if req.Connector == "" || req.Identity == "" {
		adminFail(w, http.StatusBadRequest, AdminReasonBadRequest, "connector and identity are required")
		return
	}
	s, err := g.operatorStore(r.Context(), r)
	if err != nil {
		storeFail(w, err)
		return
	}
	if err := s.Revoke(r.Context(), req.Connector, req.Identity); err != nil {
		storeFail(w, err)
		return
	}
	adminJSON(w, req)
}

func (g *Gateway) adminSessions(w http.ResponseWriter, r *http.Request) {
	list, err := g.Store.List(r.Context(), "")
	if err != nil {
		adminFail(w, http.StatusInternalServerError, AdminReasonStore, err.Error())
		return
	}
	all := r.URL.Query().Get("all") == "1"
	usage := sessions.Usage{Store: g.Store}
	out := make([]AdminSession, 0, len(list))
	for _, s := range list {
		if !all && !s.Ended.IsZero() {
			continue
		}
		a := AdminSession{Session: s}
		if n, err := usage.TokensToday(r.Context(), s.Owner); err == nil {
			a.TokensToday = n
		}
		if l := g.Manager.Live(s.ID); l != nil {
			f := l.Facts()
			a.Live, a.TrustLevel = true, f.TrustLevel
			a.Runtime, a.ReadOnly, a.Network = l.Profile.Runtime, l.Profile.ReadOnly, l.Profile.Network
		}
		out = append(out, a)
	}
	adminJSON(w, out)
}

// adminStop ends a session and stops its sandbox, as /new would for its
// owner. The stop is recorded first, with the operator as actor: no
// record, no stop.
func (g *Gateway) adminStop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	list, err := g.Store.List(r.Context(), "")
	if err != nil {
		adminFail(w, http.StatusInternalServerError, AdminReasonStore, err.Error())
		return
	}
	var sess *sessions.Session
	for i := range list {
		if list[i].ID == id {
			sess = &list[i]
		}
	}
	if sess == nil || !sess.Ended.IsZero() {
		adminFail(w, http.StatusNotFound, AdminReasonNotFound, fmt.Sprintf("no running session %q (parachute sessions list shows them)", id))
		return
	}
	if _, err := g.emit.Append(r.Context(), audit.Record{Kind: audit.KindAdmin, Decision: "allow", Connector: sess.Connector,
		User: sess.Owner, SessionID: sess.ID, Workspace: sess.Workspace,
		Detail: map[string]string{"event": "session-stop", "actor": adminActor(r)}}); err != nil {
		adminFail(w, http.StatusServiceUnavailable, AdminReasonNotRecorded, "the stop could not be recorded in the audit log, so the session was not stopped: "+err.Error())
		return
	}
	if err := g.Manager.NewSession(r.Context(), connectors.TurnRequest{SessionKey: sess.Key, Identity: sess.Owner}); err != nil {
		adminFail(w, http.StatusInternalServerError, AdminReasonStore, err.Error())
		return
	}
	adminJSON(w, AdminSession{Session: *sess})
}

// adminConsoleToken mints a one-time console login URL for the socket's
// operator (`parachute console url`). The token is recorded with the
// operator as actor before it exists; no record, no token. Only a socket
// peer may ask: a console session cannot mint itself more sessions.
func (g *Gateway) adminConsoleToken(w http.ResponseWriter, r *http.Request) {
	if p, _ := r.Context().Value(adminPeerKey{}).(adminPeer); p.console != "" {
		adminFail(w, http.StatusForbidden, AdminReasonPeerForbidden, "console tokens are minted only for the admin socket's operator (parachute console url)")
		return
	}
	c := g.consoleNow()
	if c == nil {
		adminFail(w, http.StatusServiceUnavailable, AdminReasonNotFound, "the console is not running yet (the admin listener starts it)")
		return
	}
	u, err := c.MintURL(r.Context(), adminActor(r))
	switch {
	case errors.Is(err, console.ErrNotRecorded):
		adminFail(w, http.StatusServiceUnavailable, AdminReasonNotRecorded, err.Error()+": no token was made")
		return
	case err != nil:
		adminFail(w, http.StatusServiceUnavailable, AdminReasonStore, err.Error())
		return
	}
	adminJSON(w, AdminConsoleToken{URL: u, Expires: time.Now().Add(console.TokenTTL).UTC()})
}
