package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/runtime"
)

// fakeRuntime is a Sandboxes whose sandboxes run turns in-process: the
// "agent" reads the turn from stdin, asks the session socket who it is,
// and replies with what it saw. It stands in for containerd here; the
// end-to-end tests in test/ run the real one.
type fakeRuntime struct {
	mu      sync.Mutex
	started []runtime.Spec
	live    map[string]*fakeSandbox
	failOn  string // session ID whose next Exec fails as if containerd died
	// script, if set, is what the agent writes on stdout instead.
	script func(t runtime.Turn, in turnInput) string
}

type fakeSandbox struct {
	rt      *fakeRuntime
	spec    runtime.Spec
	stopped bool
}

func (f *fakeRuntime) Start(_ context.Context, s runtime.Spec) (runtime.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live == nil {
		f.live = map[string]*fakeSandbox{}
	}
	f.started = append(f.started, s)
	sb := &fakeSandbox{rt: f, spec: s}
	f.live[s.SessionID] = sb
	return sb, nil
}

func (f *fakeRuntime) running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, sb := range f.live {
		if !sb.stopped {
			n++
		}
	}
	return n
}

func (s *fakeSandbox) ID() string { return "fake-" + s.spec.SessionID }

func (s *fakeSandbox) Stop(context.Context) error {
	s.rt.mu.Lock()
	s.stopped = true
	s.rt.mu.Unlock()
	return nil
}

func (s *fakeSandbox) Exec(ctx context.Context, t runtime.Turn) (runtime.Result, error) {
	s.rt.mu.Lock()
	fail := s.rt.failOn == s.spec.SessionID
	if fail {
		s.rt.failOn = ""
		s.stopped = true
	}
	stopped := s.stopped
	s.rt.mu.Unlock()
	if fail || stopped {
		return runtime.Result{}, fmt.Errorf("exec: %w", runtime.ErrStopped)
	}
	var in turnInput
	if err := json.NewDecoder(t.Stdin).Decode(&in); err != nil {
		return runtime.Result{}, err
	}
	if s.rt.script != nil {
		_, err := io.WriteString(t.Stdout, s.rt.script(t, in))
		return runtime.Result{}, err
	}
	// Ask the socket, as a real agent would, over the socket file.
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(s.spec.SocketDir, SocketName))
	}}}
	resp, err := c.Get("http://parachute/whoami")
	if err != nil {
		return runtime.Result{}, err
	}
	who, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var hist []string
	for _, h := range in.History {
		hist = append(hist, h.Role+":"+h.Content)
	}
	fmt.Fprintf(t.Stdout, "text=%s socket=%s history=%s", in.Text, who, strings.Join(hist, "|"))
	return runtime.Result{}, nil
}

func policyDir() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "policies")
}

func newManager(t *testing.T, data map[string]any) (*Manager, *fakeRuntime, *time.Time) {
	t.Helper()
	eng, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: data})
	if err != nil {
		t.Fatal(err)
	}
	store, _ := openStore(t)
	rt := &fakeRuntime{}
	now := time.Unix(1_700_000_000, 0)
	dir := t.TempDir()
	m, err := NewManager(Options{
		Store: store, Decider: eng, Runtimes: map[string]Sandboxes{"containerd": rt},
		Vault: filepath.Join(dir, "vault"), SocketRoot: filepath.Join(dir, "s"),
		Socket: func(l *Live) (http.Handler, error) {
			return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				f := l.Facts()
				fmt.Fprintf(w, "%s/%s/%s", f.Identity, f.ID, f.TurnID)
			}), nil
		},
		IdleSandbox: 10 * time.Minute, SessionTTL: time.Hour,
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m, rt, &now
}

func testData() map[string]any {
	return map[string]any{
		"connectors": map[string]any{
			"dev": map[string]any{"type": "local", "owners": []any{"owner"}, "allowed_users": []any{"alice", "bob"}},
			"pub": map[string]any{"type": "local", "public": true},
		},
	}
}

func turn(connector, user, text string) connectors.TurnRequest {
	msg := &connectors.Message{Connector: connector, Type: "local", UserID: user, ChatID: "dm-" + user,
		ChatKind: connectors.KindDM, Text: text, MessageID: text}
	id := msg.Identity()
	return connectors.TurnRequest{
		SessionKey: connectors.SessionKey(msg, engine.MessageResult{}),
		TurnID:     "turn-" + text, Identity: id, Message: msg,
		Result: engine.MessageResult{Role: "member", TrustLevel: "sandboxed", Workspace: "users/local%3A" + user},
	}
}

func TestTurnsAreOwnerBound(t *testing.T) {
	ctx := context.Background()
	m, rt, _ := newManager(t, testData())

	a1, err := m.Turn(ctx, turn("dev", "alice", "ALICE-ONE"))
	if err != nil {
		t.Fatal(err)
	}
	b1, err := m.Turn(ctx, turn("dev", "bob", "BOB-ONE"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := m.Turn(ctx, turn("dev", "alice", "ALICE-TWO"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a1, "socket=local:alice/") || !strings.HasSuffix(strings.SplitN(a1, " ", 3)[1], "/turn-ALICE-ONE") {
		t.Errorf("alice's socket saw %q, want her identity and turn ID", a1)
	}
	if !strings.Contains(b1, "socket=local:bob/") || strings.Contains(b1, "ALICE") {
		t.Errorf("bob's turn %q shows alice's session or history", b1)
	}
	if !strings.Contains(a2, "history=user:ALICE-ONE|assistant:text=ALICE-ONE") {
		t.Errorf("alice's second turn %q lacks her history", a2)
	}
	if strings.Contains(a2, "BOB") {
		t.Errorf("alice's turn %q shows bob's history", a2)
	}
	if len(rt.started) != 2 {
		t.Fatalf("%d sandboxes started, want one per user (2)", len(rt.started))
	}
	for _, s := range rt.started {
		if !strings.HasPrefix(s.Workspace, m.opts.Vault+string(os.PathSeparator)+"users") {
			t.Errorf("sandbox workspace %q outside the vault's users/", s.Workspace)
		}
		if s.Profile.Seccomp == "" || s.Profile.Runtime != "containerd" {
			t.Errorf("profile %+v not from the session decision", s.Profile)
		}
	}
	if rt.started[0].Workspace == rt.started[1].Workspace {
		t.Error("two users share a workspace")
	}
}

func TestNewSessionStopsSandboxAndForgets(t *testing.T) {
	ctx := context.Background()
	m, rt, _ := newManager(t, testData())
	if _, err := m.Turn(ctx, turn("dev", "alice", "one")); err != nil {
		t.Fatal(err)
	}
	if err := m.NewSession(ctx, turn("dev", "alice", "/new")); err != nil {
		t.Fatal(err)
	}
	if rt.running() != 0 || m.Active() != 0 {
		t.Fatalf("after /new %d sandboxes run", rt.running())
	}
	got, err := m.Turn(ctx, turn("dev", "alice", "two"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, "one") {
		t.Fatalf("fresh session remembers the old one: %q", got)
	}
}

func TestSessionDeniedIsAReply(t *testing.T) {
	ctx := context.Background()
	m, rt, _ := newManager(t, testData())
	req := turn("pub", "stranger", "hi")
	req.Result.TrustLevel = "direct" // the session decision re-checks trust
	got, err := m.Turn(ctx, req)
	if err != nil {
		t.Fatalf("a denied session is an error: %v", err)
	}
	if !strings.Contains(got, "direct-trust-public-bot") && !strings.Contains(strings.ToLower(got), "direct") {
		t.Fatalf("reply %q does not say why", got)
	}
	if len(rt.started) != 0 {
		t.Fatal("a sandbox started for a denied session")
	}
}

func TestLostSandboxIsRestartedOnce(t *testing.T) {
	ctx := context.Background()
	m, rt, _ := newManager(t, testData())
	if _, err := m.Turn(ctx, turn("dev", "alice", "one")); err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	rt.failOn = rt.started[0].SessionID
	rt.mu.Unlock()
	got, err := m.Turn(ctx, turn("dev", "alice", "two"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "restarted") || !strings.Contains(got, "text=two") {
		t.Fatalf("reply %q: want a restart note and the answer", got)
	}
	if len(rt.started) != 2 || rt.started[0].SessionID != rt.started[1].SessionID {
		t.Fatalf("want the same session restarted once, got %d starts", len(rt.started))
	}
}

func TestReapStopsIdleSandboxes(t *testing.T) {
	ctx := context.Background()
	m, rt, now := newManager(t, testData())
	if _, err := m.Turn(ctx, turn("dev", "alice", "one")); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(5 * time.Minute)
	_ = m.Reap(ctx)
	if rt.running() != 1 {
		t.Fatal("a sandbox used 5 minutes ago was reaped")
	}
	*now = now.Add(6 * time.Minute)
	_ = m.Reap(ctx)
	if rt.running() != 0 || m.Active() != 0 {
		t.Fatal("an idle sandbox was not reaped")
	}
	// History survives the sandbox; the session continues.
	got, _ := m.Turn(ctx, turn("dev", "alice", "two"))
	if !strings.Contains(got, "user:one") {
		t.Fatalf("after reaping the sandbox the session lost its history: %q", got)
	}
}

func TestManagerNeedsARuntime(t *testing.T) {
	store, _ := openStore(t)
	_, err := NewManager(Options{Store: store, Decider: nil})
	if err == nil {
		t.Fatal("NewManager without a Decider succeeded")
	}
	eng, _ := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: testData()})
	_, err = NewManager(Options{Store: store, Decider: eng, Socket: func(*Live) (http.Handler, error) { return nil, nil },
		Vault: t.TempDir(), SocketRoot: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "runtime") {
		t.Fatalf("NewManager without runtimes: %v", err)
	}
	_ = errors.New
}

// When policy moves an identity to another workspace, the next turn runs
// in a fresh session bound to the new one (a session never changes
// workspace), and the per-session locks are gone once turns end.
func TestWorkspaceChangeStartsFreshSession(t *testing.T) {
	ctx := context.Background()
	m, rt, _ := newManager(t, testData())
	if _, err := m.Turn(ctx, turn("dev", "alice", "ONE")); err != nil {
		t.Fatal(err)
	}
	moved := turn("dev", "alice", "TWO")
	moved.Result.Workspace = "users/local%3Aalice-moved"
	done := make(chan error, 1)
	go func() {
		_, err := m.Turn(ctx, moved)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a turn after a workspace change hung")
	}
	if len(rt.started) != 2 || rt.started[0].SessionID == rt.started[1].SessionID ||
		!strings.HasSuffix(rt.started[1].Workspace, "alice-moved") {
		t.Fatalf("want a second session in the new workspace, got %+v", rt.started)
	}
	if n := m.locks.Len(); n != 0 {
		t.Fatalf("%d session locks remain after every turn ended", n)
	}
}
