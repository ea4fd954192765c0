package sessions

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/engine"
)

// Evaluator is the pure half of the engine: it asks the policy and spends
// and records nothing. The manager uses it to see, at a reload and at each
// turn, whether a live session's decision still holds.
type Evaluator interface {
	Evaluate(ctx context.Context, in engine.Input) engine.Decision
}

// Shared chat sessions (policy's session_scope "chat", which the router
// turns into a chat session key). One session and one sandbox per chat,
// owned by the chat, not by whoever spoke first:
//
//   - the owner is ChatPrincipal(connector, chat): no user identity, so no
//     member's own session or workspace is ever used for the chat;
//   - the workspace is the chat's own folder, ChatWorkspace;
//   - the sandbox is decided once for the chat with ChatFacts: role
//     ChatRole, trust sandboxed (a chat is never direct: direct trust needs
//     the owner role, which the chat principal never has), network asked
//     for and granted only if the connector and the role allow it;
//   - every turn's tool, model and egress decisions are made on the
//     sender's own facts (identity, role, read-only, network, rate limits,
//     budget), with the chat's workspace and trust sandboxed.
const (
	// ChatRole is the role a shared chat's sandbox is decided under: its
	// limits (memory, CPU, PIDs, turn timeout) and whether it may have a
	// network at all.
	ChatRole = "member"
	// chatKeyPrefix is how connectors.SessionKey starts a chat key.
	chatKeyPrefix = "chat\x00"
)

// ChatPrincipal is the owner of a shared chat's session.
func ChatPrincipal(connector, chatID string) string {
	return "chat:" + connector + ":" + chatID
}

// ChatWorkspace is a shared chat's workspace: the personal folder of its
// principal (users/chat%3A<connector>%3A<chat>). No user identity starts
// with "chat:", so it is nobody's own folder.
func ChatWorkspace(connector, chatID string) string {
	return "users/" + url.QueryEscape(ChatPrincipal(connector, chatID))
}

// sharedChat reports whether the turn belongs to a shared chat session.
func sharedChat(req connectors.TurnRequest) bool {
	return strings.HasPrefix(req.SessionKey, chatKeyPrefix)
}

// ownerOf is who the turn's session belongs to.
func ownerOf(req connectors.TurnRequest) string {
	if sharedChat(req) {
		return ChatPrincipal(req.Message.Connector, req.Message.ChatID)
	}
	return req.Identity
}

// workspaceOf is the workspace the turn's session runs on.
func workspaceOf(req connectors.TurnRequest) string {
	if sharedChat(req) {
		return ChatWorkspace(req.Message.Connector, req.Message.ChatID)
	}
	return req.Result.Workspace
}

// factsOf returns the facts of one turn (what every tool, model and egress
// decision of the turn is made on: always the sender's) and the facts the
// session's sandbox is decided on (the sender's for a personal session,
// the chat's for a shared one).
func factsOf(sess Session, req connectors.TurnRequest, turnID string) (turn, start engine.SessionFacts) {
	turn = engine.SessionFacts{
		ID: sess.ID, TurnID: turnID, Identity: req.Identity,
		Connector: req.Message.Connector, ConnectorType: req.Message.Type,
		Role: req.Result.Role, TrustLevel: req.Result.TrustLevel, Workspace: sess.Workspace,
		ReadOnly: req.Result.ReadOnly, Network: req.Result.Network,
		Unverified: req.Message.Unverified, Binding: req.Binding,
	}
	if !sharedChat(req) {
		return turn, turn
	}
	turn.TrustLevel = "sandboxed"
	start = engine.SessionFacts{
		ID: sess.ID, TurnID: turnID, Identity: sess.Owner,
		Connector: req.Message.Connector, ConnectorType: req.Message.Type,
		Role: ChatRole, TrustLevel: "sandboxed", Workspace: sess.Workspace,
		ReadOnly: false, Network: true,
	}
	return turn, start
}

// changes lists what differs between the decision a live session runs
// under (its start facts and profile) and the one policy makes now; empty
// if nothing that needs a new sandbox changed. Every field of the profile
// counts (read by reflection, so a field added to SessionProfile is
// compared too).
func changes(oldF, newF engine.SessionFacts, oldP, newP engine.SessionProfile) []string {
	var c []string
	add := func(name string, a, b any) {
		if a != b {
			c = append(c, fmt.Sprintf("%s %v→%v", name, a, b))
		}
	}
	add("trust_level", oldF.TrustLevel, newF.TrustLevel)
	add("workspace", oldF.Workspace, newF.Workspace)
	ov, nv := reflect.ValueOf(oldP), reflect.ValueOf(newP)
	for i := range ov.NumField() {
		add(snake(ov.Type().Field(i).Name), ov.Field(i).Interface(), nv.Field(i).Interface())
	}
	return c
}

// snake turns a Go field name into the policy's spelling (ReadOnly →
// read_only, MemoryMB → memory_mb, CPUs → cpus).
func snake(name string) string {
	var b strings.Builder
	runes := []rune(name)
	for i, r := range runes {
		upper := unicode.IsUpper(r)
		if upper && i > 0 && (unicode.IsLower(runes[i-1]) || i+1 < len(runes) && unicode.IsLower(runes[i+1]) && runes[i+1] != 's') {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// recheck evaluates (purely) the session decision for start facts and
// compares it with what l runs under. It returns the changes, or the
// reasons the session is now refused.
func (m *Manager) recheck(ctx context.Context, l *Live, start engine.SessionFacts) (changed, refused []string) {
	ev, ok := m.opts.Decider.(Evaluator)
	if !ok {
		// Without a pure evaluation only the facts can be compared.
		return changes(l.start, start, l.Profile, l.Profile), nil
	}
	d := ev.Evaluate(ctx, engine.SessionInput{Session: start})
	if !d.Allow {
		reasons := d.Reasons
		if len(reasons) == 0 {
			reasons = []string{engine.ReasonNoReason}
		}
		return nil, reasons
	}
	return changes(l.start, start, l.Profile, d.SessionProfile()), nil
}

// Redecision is what a reload found for one live session.
type Redecision struct {
	SessionID string
	Owner     string
	// Changes lists what differs from the decision the session runs under
	// ("trust_level sandboxed→direct", …); the session is ended and
	// restarted under the new decision at its next turn.
	Changes []string
	// Refused holds the reasons policy now refuses the last sender's
	// message or the session: the next message is decided (and refused)
	// afresh; the sandbox is stopped then, or when it idles out.
	Refused []string
}

// Redecide re-evaluates, without spending or recording anything, every live
// session's last message and its session decision under the policy and
// data in force (after a reload), and returns the sessions whose decision
// changed. Nothing is stopped here: a turn may be running; each turn
// re-checks its session before it runs (Turn) and restarts it then.
func (m *Manager) Redecide(ctx context.Context) []Redecision {
	ev, ok := m.opts.Decider.(Evaluator)
	if !ok {
		return nil
	}
	m.mu.Lock()
	lives := make([]*Live, 0, len(m.live))
	for _, l := range m.live {
		lives = append(lives, l)
	}
	m.mu.Unlock()
	var out []Redecision
	for _, l := range lives {
		last := l.last.Load()
		if last == nil {
			continue
		}
		r := Redecision{SessionID: l.Session.ID, Owner: l.Session.Owner}
		req := *last
		d := ev.Evaluate(ctx, req.Input)
		if !d.Allow {
			r.Refused = append([]string{"message"}, d.Reasons...)
			out = append(out, r)
			continue
		}
		req.Result = d.MessageResult()
		sess := l.Session
		if ws := workspaceOf(req); ws != sess.Workspace {
			r.Changes = append(r.Changes, fmt.Sprintf("workspace %s→%s", sess.Workspace, ws))
			out = append(out, r)
			continue
		}
		_, start := factsOf(sess, req, l.start.TurnID)
		changed, refused := m.recheck(ctx, l, start)
		if refused != nil {
			r.Refused = append([]string{"session"}, refused...)
		}
		r.Changes = append(r.Changes, changed...)
		if len(r.Changes) > 0 || len(r.Refused) > 0 {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SessionID < out[j].SessionID })
	return out
}

// restartedNote tells the sender why their session started afresh.
func restartedNote(changed []string) string {
	return "(The operator changed this session's settings (" + strings.Join(changed, ", ") +
		"), so it was restarted under the new settings; earlier messages are not carried over, files in the workspace are kept.)\n"
}

// HasRuntime reports whether the manager runs sandboxes of that runtime
// ("containerd", "direct"): a reload that would need one it lacks is
// refused by the gateway.
func (m *Manager) HasRuntime(name string) bool { return m.opts.Runtimes[name] != nil }

// restart ends the session of key and stops its sandbox because the
// decision it runs under changed; the stop record names the changes.
func (m *Manager) restart(ctx context.Context, key, owner string, l *Live, changed []string) error {
	m.opts.Logger.Info().Str("session_id", l.Session.ID).Str("owner", owner).Strs("changed", changed).
		Msg("session decision changed; ending it, a new session starts under the new decision")
	if _, err := m.opts.Store.End(ctx, key, owner, m.opts.Now()); err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	m.mu.Lock()
	if m.live[l.Session.ID] == l {
		delete(m.live, l.Session.ID)
	}
	m.mu.Unlock()
	if err := l.sandbox.Stop(ctx); err != nil {
		m.opts.Logger.Error().Err(err).Str("session_id", l.Session.ID).Msg("sandbox stop failed")
	}
	l.closeSocket()
	if err := m.event(ctx, l, "session-stop", map[string]string{"why": "policy-changed", "changed": strings.Join(changed, "; ")}); err != nil {
		m.unrecorded.Add(1)
	}
	return nil
}

// endChatKey ends whatever session a shared chat's key names, whoever owns
// it: a chat key is the chat's by construction, and a session under it
// owned by a member (made before chats had their own principal) must not
// lock every other member out.
func (s *Store) endChatKey(ctx context.Context, key string, now time.Time) (string, error) {
	if !strings.HasPrefix(key, chatKeyPrefix) {
		return "", ErrNotOwner
	}
	var owner string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if id := tx.Bucket(bKeys).Get([]byte(key)); id != nil {
			if cur, err := getSession(tx, string(id)); err == nil {
				owner = cur.Owner
			}
		}
		return nil
	})
	if err != nil || owner == "" {
		return "", err
	}
	return s.End(ctx, key, owner, now)
}
