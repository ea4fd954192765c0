package sessions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/agent"
	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/internal/keylock"
	"github.com/parachute-gateway/parachute/runtime"
)

// Decider decides policy inputs; *engine.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in engine.Input) engine.Decision
}

// Sandboxes starts session sandboxes; *runtime.Containerd and
// *runtime.Direct implement it.
type Sandboxes interface {
	Start(ctx context.Context, s runtime.Spec) (runtime.Sandbox, error)
}

// Auditor appends records that are not policy decisions (session start
// and stop, hooks); the gateway's *audit.Emitter implements it.
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// SocketName is the session socket's file name in its folder (mounted
// at runtime.SocketDir inside a sandbox).
const SocketName = "parachute.sock"

// Model is what the agent is told about the model it may use.
type Model struct {
	Provider  string `json:"provider"` // "openai", "anthropic" or "" (tools-only)
	Name      string `json:"name,omitempty"`
	MaxTokens int    `json:"max_tokens,omitempty"`
}

// Options configure a Manager.
type Options struct {
	Store   *Store
	Decider Decider
	// Runtimes by the session decision's runtime name: "containerd" and,
	// only where direct trust is wanted, "direct". A decision naming a
	// runtime that is not here fails closed.
	Runtimes map[string]Sandboxes
	Audit    Auditor
	// Vault is the host folder holding every workspace.
	Vault string
	// SocketRoot holds one folder per live session with its socket (keep
	// the path short: unix socket paths are limited to 107 bytes).
	SocketRoot string
	// Socket returns the handler served on a session's socket (MCP, model
	// and egress routes); the gateway composes it.
	Socket func(l *Live) (http.Handler, error)
	// Agent is the command run for each turn in a containerd sandbox
	// (default /parachute agent); AgentDirect the one run on the host for
	// direct sessions (default: this executable, agent).
	Agent       []string
	AgentDirect []string
	// AgentFor, when set, picks each turn's agent from the session's
	// facts (role, connector); a choice without Args keeps Agent.
	AgentFor func(engine.SessionFacts) AgentChoice
	Image    string
	Model    Model
	// IdleSandbox stops a warm sandbox unused this long (default 10 min);
	// SessionTTL ends a session idle this long (default 24 h).
	IdleSandbox time.Duration
	SessionTTL  time.Duration
	// Hook runs the workspace's pre-session hook on the host; it is called
	// only for direct sessions whose decision allows hooks, and must
	// itself refuse anything else (runtime.RunPreSessionHook). nil: hooks
	// never run.
	Hook        func(ctx context.Context, workspace string, p engine.SessionProfile, timeout time.Duration) (ran bool, out []byte, err error)
	HookTimeout time.Duration // default 30 s
	Logger      zerolog.Logger
	Now         func() time.Time
}

// Manager runs agent turns in owner-bound sessions; it implements
// connectors.Turns.
type Manager struct {
	opts  Options
	locks *keylock.Locks // one turn at a time per session key

	mu   sync.Mutex
	live map[string]*Live // session ID -> running sandbox

	unrecorded atomic.Uint64 // stops and hook outcomes whose record failed
}

// ErrNotRecorded: a session event could not be written to the audit log,
// so what it records (a sandbox start, a pre-session hook) did not happen.
var ErrNotRecorded = errors.New("sessions: the audit record could not be written")

// NotRecordedReply is what the user is told when their session could not
// start because its record could not be written.
const NotRecordedReply = "The bot cannot write its audit log right now, so your session was not started. Please try again later."

// Unrecorded counts the session events that happened without a record:
// a stop (a sandbox is never kept running because its record failed) or
// the outcome of a hook that had already run. Each is also logged.
func (m *Manager) Unrecorded() uint64 { return m.unrecorded.Load() }

// Live is a session whose sandbox is running.
type Live struct {
	Session Session
	Profile engine.SessionProfile
	// ClientRoot is the workspace as the agent sees it: /workspace in a
	// sandbox, the host folder for a direct session.
	ClientRoot string
	// HostRoot is the workspace folder on the host.
	HostRoot string

	facts    atomic.Pointer[engine.SessionFacts]
	start    engine.SessionFacts                    // what the session decision was made on
	last     atomic.Pointer[connectors.TurnRequest] // the last turn's request, for Redecide
	sandbox  runtime.Sandbox
	server   *http.Server
	sockDir  string
	lastUsed atomic.Int64 // when the last turn ended (or the sandbox started)
	// turns is how many turns are running in the sandbox, guarded by
	// Manager.mu: a sandbox with a turn in flight is never idle.
	turns int
}

// Facts returns the session facts of the turn in progress: what every
// tool, model and egress decision on this session's socket is made about.
func (l *Live) Facts() engine.SessionFacts { return *l.facts.Load() }

// SocketPath is the host path of the session's socket.
func (l *Live) SocketPath() string { return filepath.Join(l.sockDir, SocketName) }

// NewManager returns a Manager.
func NewManager(opts Options) (*Manager, error) {
	switch {
	case opts.Store == nil, opts.Decider == nil, opts.Socket == nil:
		return nil, errors.New("sessions: Store, Decider and Socket are required")
	case opts.Vault == "" || opts.SocketRoot == "":
		return nil, errors.New("sessions: Vault and SocketRoot are required")
	case opts.Runtimes["containerd"] == nil && opts.Runtimes["direct"] == nil:
		return nil, errors.New("sessions: no runtime configured")
	}
	if len(opts.Agent) == 0 {
		opts.Agent = []string{"/parachute", "agent"}
	}
	if len(opts.AgentDirect) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("sessions: %w", err)
		}
		opts.AgentDirect = []string{exe, "agent"}
	}
	if opts.IdleSandbox <= 0 {
		opts.IdleSandbox = 10 * time.Minute
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 24 * time.Hour
	}
	if opts.HookTimeout <= 0 {
		opts.HookTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.SocketRoot, 0o700); err != nil {
		return nil, fmt.Errorf("sessions: socket root: %w", err)
	}
	return &Manager{opts: opts, locks: keylock.New(), live: map[string]*Live{}}, nil
}

// turnInput is what the agent reads on stdin (docs/agent.md).
type turnInput struct {
	SessionID string  `json:"session_id"`
	TurnID    string  `json:"turn_id"`
	Identity  string  `json:"identity"`
	Text      string  `json:"text"`
	History   []Entry `json:"history"`
	Model     Model   `json:"model"`
	Workspace string  `json:"workspace"`
}

// Turn implements connectors.Turns: one message of an allowed sender runs
// as one agent process in the sender's session sandbox.
func (m *Manager) Turn(ctx context.Context, req connectors.TurnRequest) (string, error) {
	unlock := m.locks.Lock(req.SessionKey)
	defer unlock()
	now := m.opts.Now()
	owner, ws := ownerOf(req), workspaceOf(req)
	if sharedChat(req) && req.Result.Workspace != ws {
		// Policy names the workspace for /whoami and every decision; a
		// chat's session is bound to the chat's own folder, so the two
		// must agree or nothing runs.
		return "", fmt.Errorf("sessions: policy gave the shared chat %s:%s the workspace %q; a shared chat's session runs only in its own workspace %q (policies/message.rego)",
			req.Message.Connector, req.Message.ChatID, req.Result.Workspace, ws)
	}
	tmpl := Session{Owner: owner, Connector: req.Message.Connector, ChatID: req.Message.ChatID, Workspace: ws}
	sess, _, err := m.opts.Store.Acquire(ctx, req.SessionKey, tmpl, m.opts.SessionTTL, now)
	if errors.Is(err, ErrNotOwner) && sharedChat(req) {
		// A chat session owned by one member, from before chats had a
		// principal of their own: end it, the chat gets its own.
		var old string
		if old, err = m.opts.Store.endChatKey(ctx, req.SessionKey, now); err == nil {
			if old != "" {
				m.stopLive(ctx, old, "shared-chat-owner")
			}
			sess, _, err = m.opts.Store.Acquire(ctx, req.SessionKey, tmpl, m.opts.SessionTTL, now)
		}
	}
	if err == nil && sess.Workspace != ws {
		// Policy moved this identity to another workspace: a session never
		// changes workspace, so end it and start a fresh one.
		if err = m.end(ctx, req.SessionKey, owner); err == nil {
			sess, _, err = m.opts.Store.Acquire(ctx, req.SessionKey, tmpl, m.opts.SessionTTL, now)
		}
	}
	if err != nil {
		return "", fmt.Errorf("sessions: %w", err)
	}
	turnID := req.TurnID
	if turnID == "" {
		turnID = newID()
	}
	facts, start := factsOf(sess, req, turnID)
	note := ""
	if l := m.Live(sess.ID); l != nil {
		// The sandbox runs under the decision made when it started; if
		// policy or data changed since (a reload), and the decision for
		// this turn differs in anything the sandbox is built from, the
		// session ends and a new one starts under the new decision. Never
		// a sandbox running under one decision recorded as another.
		changed, refused := m.recheck(ctx, l, start)
		if refused != nil {
			changed = []string{"session refused: " + strings.Join(refused, ",")}
		}
		if len(changed) > 0 {
			if err := m.restart(ctx, req.SessionKey, owner, l, changed); err != nil {
				return "", err
			}
			if sess, _, err = m.opts.Store.Acquire(ctx, req.SessionKey, tmpl, m.opts.SessionTTL, now); err != nil {
				return "", fmt.Errorf("sessions: %w", err)
			}
			facts, start = factsOf(sess, req, turnID)
			note = restartedNote(changed)
		}
	}
	live, err := m.ensure(ctx, sess, facts, start)
	if err != nil {
		var denied *DeniedError
		if errors.As(err, &denied) {
			return denied.Reply(), nil
		}
		var noClass *runtime.ClassError // the decision's runtime class is not installed
		if errors.As(err, &noClass) {
			return noClass.Reply(), nil
		}
		if errors.Is(err, ErrNotRecorded) {
			m.opts.Logger.Error().Err(err).Str("session_id", sess.ID).Msg("session not started: its record could not be written")
			return NotRecordedReply, nil
		}
		return "", err
	}
	live.last.Store(&req)
	history, err := m.opts.Store.History(ctx, sess.ID)
	if err != nil {
		return "", fmt.Errorf("sessions: %w", err)
	}
	in := turnInput{
		SessionID: sess.ID, TurnID: turnID, Identity: req.Identity, Text: req.Message.Text,
		History: history, Model: m.opts.Model, Workspace: live.ClientRoot,
	}
	reply, err := m.exec(ctx, live, in, req.Progress)
	if errors.Is(err, runtime.ErrUnavailable) || errors.Is(err, runtime.ErrStopped) {
		// The sandbox went away under us (containerd restarted): start a
		// new one once, and say so.
		m.stopLive(context.WithoutCancel(ctx), sess.ID, "sandbox-lost")
		if live, err = m.ensure(ctx, sess, facts, start); err != nil {
			return "", err
		}
		live.last.Store(&req)
		note += "(Your sandbox was restarted; files in your workspace are kept.)\n"
		reply, err = m.exec(ctx, live, in, req.Progress)
	}
	if err != nil {
		return "", err
	}
	t := m.opts.Now()
	if err := m.opts.Store.Record(ctx, sess.ID, t,
		Entry{Role: "user", Content: req.Message.Text, Time: now, TurnID: turnID},
		Entry{Role: "assistant", Content: reply, Time: t, TurnID: turnID}); err != nil {
		return "", fmt.Errorf("sessions: %w", err)
	}
	return note + reply, nil
}

// NewSession implements connectors.Turns: /new ends the current session
// and stops its sandbox.
func (m *Manager) NewSession(ctx context.Context, req connectors.TurnRequest) error {
	unlock := m.locks.Lock(req.SessionKey)
	defer unlock()
	return m.end(ctx, req.SessionKey, ownerOf(req))
}

func (m *Manager) end(ctx context.Context, key, owner string) error {
	id, err := m.opts.Store.End(ctx, key, owner, m.opts.Now())
	if err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	if id != "" {
		m.stopLive(ctx, id, "new-session")
	}
	return nil
}

// WorkspacePreparer is a runtime that must set a workspace up (its disk
// quota) before anything opens it.
type WorkspacePreparer interface {
	PrepareWorkspace(ctx context.Context, workspace string, p engine.SessionProfile) error
}

// DeniedError is a session policy refused to start. It is answered to the
// user, not logged as a failure.
type DeniedError struct{ Decision engine.Decision }

func (e *DeniedError) Error() string {
	return "session denied: " + strings.Join(e.Decision.Reasons, ", ")
}

// Reply is what the user is told.
func (e *DeniedError) Reply() string {
	if e.Decision.Reply != "" {
		return e.Decision.Reply
	}
	return "Your session cannot start (" + strings.Join(e.Decision.Reasons, ", ") + ")."
}

// ensure returns the live sandbox of sess, starting one when there is
// none: the session decision picks the profile, the workspace folder is
// made, the socket is served and the sandbox started.
//
// facts are the turn's (the sender's); start are what the session decision
// is made on (the same, or the chat's for a shared chat session).
func (m *Manager) ensure(ctx context.Context, sess Session, facts, start engine.SessionFacts) (*Live, error) {
	m.mu.Lock()
	l := m.live[sess.ID]
	m.mu.Unlock()
	if l != nil {
		l.lastUsed.Store(m.opts.Now().UnixNano())
		l.facts.Store(&facts)
		return l, nil
	}
	d := m.opts.Decider.Decide(ctx, engine.SessionInput{Session: start})
	if !d.Allow {
		return nil, &DeniedError{Decision: d}
	}
	prof := d.SessionProfile()
	rt := m.opts.Runtimes[prof.Runtime]
	if rt == nil {
		return nil, fmt.Errorf("sessions: policy chose runtime %q, which this gateway does not run", prof.Runtime)
	}
	host, err := m.workspace(sess.Workspace)
	if err != nil {
		return nil, err
	}
	l = &Live{Session: sess, Profile: prof, HostRoot: host, ClientRoot: runtime.WorkspaceDir, start: start}
	if prof.Runtime == "direct" {
		l.ClientRoot = host
	}
	l.facts.Store(&facts)
	l.sockDir = filepath.Join(m.opts.SocketRoot, sess.ID)
	// The start is recorded before anything runs: no hook and no sandbox
	// without a durable record saying so.
	hook := prof.Runtime == "direct" && prof.Hooks && m.opts.Hook != nil
	var detail map[string]string
	if hook {
		detail = map[string]string{"hook": "run"}
	}
	if err := m.event(ctx, l, audit.KindSessionStart, detail); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	// The workspace's disk quota is mounted before the socket's vault
	// tools open the folder (they would write underneath the mount).
	if w, ok := rt.(WorkspacePreparer); ok {
		if err := w.PrepareWorkspace(ctx, host, prof); err != nil {
			m.stopped(ctx, l, "start-failed")
			return nil, fmt.Errorf("sessions: workspace: %w", err)
		}
	}
	if err := m.serve(l); err != nil {
		m.stopped(ctx, l, "start-failed")
		return nil, err
	}
	if hook {
		m.runHook(ctx, l)
	}
	var env []string
	if prof.Network {
		// PID 1 serves the egress bridge on loopback (sandbox init), and
		// every turn finds it through the usual proxy variables.
		env = append(env, "PARACHUTE_BRIDGE_LISTEN=127.0.0.1:3128",
			"PARACHUTE_SOCKET="+runtime.SocketDir+"/"+SocketName,
			"HTTPS_PROXY=http://127.0.0.1:3128", "HTTP_PROXY=http://127.0.0.1:3128",
			"https_proxy=http://127.0.0.1:3128", "http_proxy=http://127.0.0.1:3128")
	}
	sb, err := rt.Start(ctx, runtime.Spec{
		SessionID: sess.ID, Owner: sess.Owner, Image: m.opts.Image,
		Workspace: host, SocketDir: l.sockDir, Profile: prof, Env: env,
	})
	if err != nil {
		l.closeSocket()
		m.stopped(ctx, l, "start-failed")
		return nil, fmt.Errorf("sessions: start sandbox: %w", err)
	}
	l.sandbox = sb
	l.lastUsed.Store(m.opts.Now().UnixNano())
	m.mu.Lock()
	m.live[sess.ID] = l
	m.mu.Unlock()
	return l, nil
}

// workspace returns the host folder of a vault-relative workspace, made
// if missing. The policy already validated the name; this re-checks that
// it stays inside the vault.
func (m *Manager) workspace(rel string) (string, error) {
	clean := filepath.Clean("/" + rel)
	if rel == "" || clean == "/" || clean != "/"+rel || strings.Contains(rel, "\x00") {
		return "", fmt.Errorf("sessions: workspace %q is not a clean vault-relative path", rel)
	}
	host := filepath.Join(m.opts.Vault, rel)
	if err := os.MkdirAll(host, 0o750); err != nil {
		return "", fmt.Errorf("sessions: workspace: %w", err)
	}
	return host, nil
}

// closeSocket stops the session's socket server, releases what its
// handler holds (the session's MCP server) and removes the socket folder.
func (l *Live) closeSocket() {
	l.server.Close()
	if c, ok := l.server.Handler.(io.Closer); ok {
		c.Close()
	}
	os.RemoveAll(l.sockDir)
}

// serve starts the session's socket server.
func (m *Manager) serve(l *Live) error {
	if err := os.RemoveAll(l.sockDir); err != nil {
		return fmt.Errorf("sessions: socket dir: %w", err)
	}
	if err := os.MkdirAll(l.sockDir, 0o755); err != nil {
		return fmt.Errorf("sessions: socket dir: %w", err)
	}
	h, err := m.opts.Socket(l)
	if err != nil {
		return fmt.Errorf("sessions: socket handler: %w", err)
	}
	ln, err := net.Listen("unix", l.SocketPath())
	if err != nil {
		return fmt.Errorf("sessions: socket: %w", err)
	}
	// The sandbox user is not root; the folder is reachable only inside
	// the sandbox it is mounted into (the socket root is 0700 on the host).
	if err := os.Chmod(l.SocketPath(), 0o666); err != nil {
		ln.Close()
		return fmt.Errorf("sessions: socket: %w", err)
	}
	// An agent that opens connections and leaves them idle holds nothing
	// for long: headers must arrive within 10 s and a kept-alive
	// connection is closed after SocketIdleTimeout without a request.
	l.server = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: SocketIdleTimeout}
	go l.server.Serve(ln) //nolint:errcheck // ends with Close
	return nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	max       int
	truncated bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room < len(p) {
		b.truncated = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// exec runs one agent process for the turn. The agent's progress lines
// (docs/agent.md) go to progress, if not nil, as the reply so far.
func (m *Manager) exec(ctx context.Context, l *Live, in turnInput, progress func(string)) (string, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return "", err
	}
	args := m.opts.Agent
	env := []string{"PARACHUTE_SOCKET=" + runtime.SocketDir + "/" + SocketName}
	if l.Profile.Runtime == "direct" {
		args = m.opts.AgentDirect
		env = []string{"PARACHUTE_SOCKET=" + l.SocketPath()}
	}
	args, extra := m.agentFor(l, args)
	env = append(env, extra...)
	if progress != nil {
		env = append(env, ProgressEnv)
	}
	stdout := &limitedBuffer{max: 256 << 10}
	stderr := &limitedBuffer{max: 4 << 10}
	out := newProgressWriter(stdout, progress)
	if !m.beginTurn(l) {
		// The reaper took the sandbox between ensure and here: the caller
		// starts a new one, as for a sandbox containerd lost.
		return "", fmt.Errorf("sessions: turn: sandbox reaped as idle: %w", runtime.ErrStopped)
	}
	res, err := l.sandbox.Exec(ctx, runtime.Turn{
		Args: args, Stdin: bytes.NewReader(body), Stdout: out, Stderr: stderr,
		Timeout: l.Profile.TurnTimeout, Env: env,
	})
	m.endTurn(l)
	out.Close()
	if err != nil {
		return "", fmt.Errorf("sessions: turn: %w", err)
	}
	reply := strings.TrimSpace(stdout.String())
	switch {
	case res.TimedOut:
		return "The agent took too long and was stopped.", nil
	case res.ExitCode == agent.ExitBusy:
		// The proxy answered one of the turn's tool decisions as busy
		// (overloaded) and the agent stopped: the user is told busy.
		return "", &connectors.BusyTurnError{RetryAfter: engine.OverloadRetryAfter}
	case res.ExitCode != 0:
		msg := firstLine(stderr.String())
		if msg == "" {
			msg = fmt.Sprintf("exit code %d", res.ExitCode)
		}
		return "The agent failed: " + msg, nil
	case reply == "":
		return "(The agent gave no reply.)", nil
	}
	if res.Truncated || stdout.truncated {
		reply += "\n[reply truncated]"
	}
	return reply, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// SocketIdleTimeout closes a session socket's kept-alive connection left
// idle this long.
const SocketIdleTimeout = 2 * time.Minute

// runHook runs the workspace's pre-session hook on the host, for a direct
// session whose decision allows hooks, and records what it did. The
// session-start record before it says a hook would run; an outcome that
// cannot be recorded is counted and logged (the hook has run by then).
func (m *Manager) runHook(ctx context.Context, l *Live) {
	ran, out, err := m.opts.Hook(ctx, l.HostRoot, l.Profile, m.opts.HookTimeout)
	if !ran && err == nil {
		return
	}
	detail := map[string]string{"output": firstLine(string(out))}
	if err != nil {
		detail["error"] = err.Error()
	}
	if err := m.event(ctx, l, audit.KindHook, detail); err != nil {
		m.unrecorded.Add(1)
	}
}

// stopped records that l stopped (or never started); the record is best
// effort, counted and logged when it fails, since nothing is left to
// refuse.
func (m *Manager) stopped(ctx context.Context, l *Live, why string) {
	if err := m.event(ctx, l, audit.KindSessionStop, map[string]string{"why": why}); err != nil {
		m.unrecorded.Add(1)
	}
}

// event appends a session record; the caller decides what a failure
// means (logged here).
func (m *Manager) event(ctx context.Context, l *Live, kind audit.Kind, detail map[string]string) error {
	if m.opts.Audit == nil {
		return nil
	}
	f := l.Facts()
	r := audit.Record{
		Kind: kind, Connector: f.Connector, User: f.Identity, SessionID: l.Session.ID,
		TurnID: f.TurnID, TrustLevel: f.TrustLevel, Workspace: f.Workspace, Detail: detail,
	}
	if _, err := m.opts.Audit.Append(ctx, r); err != nil {
		m.opts.Logger.Error().Err(err).Str("session_id", l.Session.ID).Str("kind", string(kind)).Msg("audit append failed")
		return err
	}
	return nil
}

// beginTurn marks a turn in flight in l's sandbox, so the reaper leaves
// it alone; false if l is no longer running (reaped or stopped).
func (m *Manager) beginTurn(l *Live) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live[l.Session.ID] != l {
		return false
	}
	l.turns++
	return true
}

// endTurn ends a turn begun with beginTurn; the idle clock starts now.
func (m *Manager) endTurn(l *Live) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l.turns--
	l.lastUsed.Store(m.opts.Now().UnixNano())
}

// stopLive stops the sandbox and socket of session id, if running.
func (m *Manager) stopLive(ctx context.Context, id, why string) {
	m.mu.Lock()
	l := m.live[id]
	delete(m.live, id)
	m.mu.Unlock()
	if l == nil {
		return
	}
	m.stopSandbox(ctx, l, why)
}

// stopSandbox stops l, already taken out of m.live.
func (m *Manager) stopSandbox(ctx context.Context, l *Live, why string) {
	if err := l.sandbox.Stop(ctx); err != nil {
		m.opts.Logger.Error().Err(err).Str("session_id", l.Session.ID).Msg("sandbox stop failed")
	}
	l.closeSocket()
	m.stopped(ctx, l, why)
}

// Live returns the running session with id, if any.
func (m *Manager) Live(id string) *Live {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live[id]
}

// Active is the number of running sandboxes.
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
}

// Reap stops sandboxes idle longer than IdleSandbox and ends sessions idle
// longer than SessionTTL. The gateway calls it periodically. A sandbox
// with a turn in flight is never idle, however long the turn runs; its
// idle clock starts when the turn ends. The check and the removal from
// the live set are one step under m.mu, so a turn that has not begun yet
// finds the sandbox gone and starts a new one rather than running in one
// being stopped.
func (m *Manager) Reap(ctx context.Context) error {
	now := m.opts.Now()
	m.mu.Lock()
	var idle []*Live
	for id, l := range m.live {
		if l.turns == 0 && now.Sub(time.Unix(0, l.lastUsed.Load())) >= m.opts.IdleSandbox {
			idle = append(idle, l)
			delete(m.live, id)
		}
	}
	m.mu.Unlock()
	for _, l := range idle {
		m.stopSandbox(ctx, l, "idle")
	}
	_, err := m.opts.Store.Expire(ctx, m.opts.SessionTTL, 7*24*time.Hour, now)
	return err
}

// Run reaps idle and expired sessions every interval until ctx ends. It
// stops nothing when ctx ends: the caller calls Close for that.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Reap(ctx); err != nil {
				m.opts.Logger.Error().Err(err).Msg("session reaping failed")
			}
		}
	}
}

// Close stops every sandbox and socket: nothing is left running.
func (m *Manager) Close(ctx context.Context) {
	m.mu.Lock()
	ids := make([]string, 0, len(m.live))
	for id := range m.live {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	for _, id := range ids {
		m.stopLive(ctx, id, "shutdown")
	}
}
