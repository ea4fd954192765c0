package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/rs/zerolog"
)

// copyPolicies copies engine/testdata/basic into a temp folder the test may
// edit.
func copyPolicies(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir("testdata/basic")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata/basic", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, e.Name()), string(b))
	}
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newEngine(t *testing.T, opts Options) *Engine {
	t.Helper()
	if opts.PolicyDir == "" {
		opts.PolicyDir = "testdata/basic"
	}
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func msg(command, sender string) MessageInput {
	return MessageInput{Connector: "local", ConnectorType: "local", Command: command,
		Sender: Sender{ID: "local:" + sender, PlatformID: sender}}
}

func TestDecide(t *testing.T) {
	e := newEngine(t, Options{Data: map[string]any{"greeting": "hello"}, Timeout: 200 * time.Millisecond})
	tests := []struct {
		command     string
		wantAllow   bool
		wantReasons []string
		wantErr     string // substring of Decision.Err
		wantReply   string
	}{
		{command: "allow", wantAllow: true, wantReasons: []string{}},
		{command: "deny", wantReasons: []string{"unknown-user"}, wantReply: "Send /pair to ask for access."},
		{command: "deny-silent", wantReasons: []string{"no-reason-given"}},
		{command: "undefined-command", wantReasons: []string{ReasonPolicyError}, wantErr: "undefined"},
		{command: "conflict", wantReasons: []string{ReasonPolicyError}, wantErr: "conflict"},
		{command: "builtin-error", wantReasons: []string{ReasonPolicyError}, wantErr: "to_number"},
		{command: "not-object", wantReasons: []string{ReasonPolicyError}, wantErr: "not an object"},
		{command: "allow-string", wantReasons: []string{ReasonPolicyError}, wantErr: "not a boolean"},
		{command: "reason-number", wantReasons: []string{ReasonPolicyError}, wantErr: "reasons holds"},
		{command: "bad-bucket", wantReasons: []string{ReasonPolicyError}, wantErr: "rate_limits[0]"},
		{command: "slow", wantReasons: []string{ReasonOverloaded}, wantErr: "deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			d := e.Decide(context.Background(), msg(tt.command, tt.command))
			if d.Allow != tt.wantAllow {
				t.Fatalf("Allow = %v, want %v (reasons %v, err %v)", d.Allow, tt.wantAllow, d.Reasons, d.Err)
			}
			if strings.Join(d.Reasons, ",") != strings.Join(tt.wantReasons, ",") {
				t.Errorf("Reasons = %q, want %q", d.Reasons, tt.wantReasons)
			}
			if tt.wantErr == "" && d.Err != nil {
				t.Errorf("Err = %v, want none", d.Err)
			}
			if tt.wantErr != "" && (d.Err == nil || !strings.Contains(d.Err.Error(), tt.wantErr)) {
				t.Errorf("Err = %v, want it to mention %q", d.Err, tt.wantErr)
			}
			if d.Reply != tt.wantReply {
				t.Errorf("Reply = %q, want %q", d.Reply, tt.wantReply)
			}
			if d.ID == "" || len(d.ID) != 32 || d.Revision != e.Revision() || d.Latency <= 0 || d.Entry != Message {
				t.Errorf("bookkeeping: id %q revision %q latency %v entry %q", d.ID, d.Revision, d.Latency, d.Entry)
			}
		})
	}
}

// An evaluation cut by the engine's deadline is an overloaded deny with a
// retry delay, not a policy-error: the policy is not at fault, the gateway
// is busy. One cut by the caller's own context is still a policy-error.
func TestDeadlineIsOverloaded(t *testing.T) {
	e := newEngine(t, Options{Timeout: time.Millisecond})
	rec := &countingRecorder{}
	e.recorder = rec
	for _, tt := range []struct {
		name        string
		ctx         func() context.Context
		wantReason  string
		wantRetry   bool
		wantErrText string
	}{
		{"engine deadline", context.Background, ReasonOverloaded, true, "decision deadline of 1ms passed"},
		{"caller cancelled", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, ReasonPolicyError, false, "cancel"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := rec.n.Load()
			d := e.Decide(tt.ctx(), msg("slow", "mallory"))
			if d.Allow || !slices.Equal(d.Reasons, []string{tt.wantReason}) {
				t.Fatalf("decision = allow %v reasons %v (err %v), want a deny for %s", d.Allow, d.Reasons, d.Err, tt.wantReason)
			}
			if d.Err == nil || !strings.Contains(d.Err.Error(), tt.wantErrText) {
				t.Errorf("Err = %v, want it to say %q", d.Err, tt.wantErrText)
			}
			if got := d.RetryAfter > 0; got != tt.wantRetry {
				t.Errorf("RetryAfter = %s, want set: %v", d.RetryAfter, tt.wantRetry)
			}
			if rec.n.Load() != before+1 {
				t.Errorf("recorded %d decisions, want 1", rec.n.Load()-before)
			}
		})
	}
	// A fast decision within its deadline is decided as before.
	if d := newEngine(t, Options{Timeout: time.Second}).Decide(context.Background(), msg("allow", "alice")); !d.Allow {
		t.Fatalf("allow denied: %v %v", d.Reasons, d.Err)
	}
}

type countingRecorder struct{ n atomic.Int64 }

func (r *countingRecorder) Record(context.Context, Input, *Decision) error { r.n.Add(1); return nil }

func TestDecisionFieldsAndData(t *testing.T) {
	e := newEngine(t, Options{Data: map[string]any{"greeting": "hello"}})
	d := e.Decide(context.Background(), msg("allow", "alice"))
	if !d.Allow {
		t.Fatalf("denied: %v %v", d.Reasons, d.Err)
	}
	if got := d.String("greeting"); got != "hello" {
		t.Errorf("data.parachute.config.greeting reached policy as %q", got)
	}
	r := d.MessageResult()
	if r.Role != "member" || r.TrustLevel != "sandboxed" || r.Workspace != "users/local%3Aalice" || r.SessionScope != "user" {
		t.Errorf("MessageResult = %+v", r)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEngine(t, Options{})
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if d := e.Decide(ctx, msg("allow", "bob")); !d.Allow {
			t.Fatalf("message %d denied: %v", i+1, d.Reasons)
		}
	}
	d := e.Decide(ctx, msg("allow", "bob"))
	if d.Allow || len(d.Reasons) != 1 || d.Reasons[0] != ReasonRateLimited {
		t.Fatalf("third message in the window: allow=%v reasons=%v", d.Allow, d.Reasons)
	}
	if !strings.Contains(d.Reply, "try again") {
		t.Errorf("rate-limited reply %q does not tell the user what to do", d.Reply)
	}
	if d := e.Decide(ctx, msg("allow", "carol")); !d.Allow {
		t.Fatalf("bob's limit applied to carol: %v", d.Reasons)
	}
}

// A deny from the second bucket must not consume the first bucket's token.
func TestRateLimitRefundsEarlierBuckets(t *testing.T) {
	e := newEngine(t, Options{})
	ctx := context.Background()
	if d := e.Decide(ctx, msg("two-buckets", "x")); !d.Allow {
		t.Fatalf("first call denied: %v", d.Reasons)
	}
	for i := 0; i < 3; i++ {
		if d := e.Decide(ctx, msg("two-buckets", "x")); d.Allow {
			t.Fatal("second bucket exhausted but allowed")
		}
	}
	// two-a had burst 5: one taken by the allowed call, the refused ones refunded.
	for i := 0; i < 4; i++ {
		if ok, _ := e.Limiter().Allow("two-a", 0, 5); !ok {
			t.Fatalf("two-a lost tokens to refused decisions (ran out after %d)", i)
		}
	}
}

type recorded struct {
	mu   sync.Mutex
	list []Decision
	err  error
}

func (r *recorded) Record(_ context.Context, _ Input, d *Decision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, *d)
	return r.err
}

func TestEveryDecisionIsRecorded(t *testing.T) {
	rec := &recorded{}
	e := newEngine(t, Options{Recorder: rec})
	ctx := context.Background()
	for _, c := range []string{"allow", "deny", "conflict"} {
		e.Decide(ctx, msg(c, "dave"))
	}
	if len(rec.list) != 3 {
		t.Fatalf("recorded %d decisions, want 3", len(rec.list))
	}
	if rec.list[2].Err == nil {
		t.Error("policy-error recorded without its error")
	}
}

func TestUnrecordableDecisionIsRefused(t *testing.T) {
	rec := &recorded{err: errors.New("disk full")}
	e := newEngine(t, Options{Recorder: rec})
	d := e.Decide(context.Background(), msg("allow", "erin"))
	if d.Allow {
		t.Fatal("allowed a decision the recorder could not write")
	}
	if !contains(d.Reasons, ReasonAuditUnavailable) {
		t.Fatalf("reasons %v lack %s", d.Reasons, ReasonAuditUnavailable)
	}
}

func TestNewRefusesBrokenPolicy(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(dir string)
		want  []string // substrings of the error
		dirOf func(dir string) string
	}{
		{
			name: "parse error names file and line",
			edit: func(dir string) {
				writeFile(t, filepath.Join(dir, "tool.rego"), "package parachute.tool\n\ndecision := {\n")
			},
			want: []string{"tool.rego:4", "unexpected eof"},
		},
		{
			name: "compile error names file and line",
			edit: func(dir string) {
				writeFile(t, filepath.Join(dir, "model.rego"), "package parachute.model\n\ndecision := {\"allow\": undefined_thing}\n")
			},
			want: []string{"model.rego:3", "undefined_thing"},
		},
		{
			name: "missing entry point",
			edit: func(dir string) { os.Remove(filepath.Join(dir, "session.rego")) },
			want: []string{"data.parachute.session.decision", "missing"},
		},
		{
			name: "no policy files",
			edit: func(dir string) {
				for _, n := range []string{"message", "session", "tool", "model", "basic_test"} {
					os.Remove(filepath.Join(dir, n+".rego"))
				}
			},
			want: []string{"no .rego files"},
		},
		{
			name: "defaults file may not set operator config",
			edit: func(dir string) {
				writeFile(t, filepath.Join(dir, "data.json"), `{"parachute": {"config": {"connectors": {}}}}`)
			},
			want: []string{"data.json defines parachute.config"},
		},
		{
			name: "defaults file must be JSON",
			edit: func(dir string) { writeFile(t, filepath.Join(dir, "data.json"), `{"parachute": `) },
			want: []string{"data.json"},
		},
		{
			name:  "missing folder",
			dirOf: func(dir string) string { return filepath.Join(dir, "nope") },
			want:  []string{"nope"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyPolicies(t)
			if tt.edit != nil {
				tt.edit(dir)
			}
			if tt.dirOf != nil {
				dir = tt.dirOf(dir)
			}
			_, err := New(context.Background(), Options{PolicyDir: dir})
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("New = %v, want ErrPolicy", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestReloadKeepsLastGoodPolicy(t *testing.T) {
	dir := copyPolicies(t)
	e := newEngine(t, Options{PolicyDir: dir})
	ctx := context.Background()
	good := e.Revision()

	writeFile(t, filepath.Join(dir, "tool.rego"), "package parachute.tool\n\ndecision := {\n")
	if err := e.Reload(ctx); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "tool.rego:") {
		t.Fatalf("Reload of a broken edit = %v, want ErrPolicy naming tool.rego", err)
	}
	if e.Revision() != good {
		t.Fatal("a broken edit replaced the running policy")
	}
	if d := e.Decide(ctx, msg("deny", "f")); d.Reasons[0] != "unknown-user" {
		t.Fatalf("last good policy not in force: %v", d.Reasons)
	}

	writeFile(t, filepath.Join(dir, "tool.rego"), "package parachute.tool\n\ndecision := {\"allow\": false, \"reasons\": [\"edited\"]}\n")
	if err := e.Reload(ctx); err != nil {
		t.Fatalf("Reload of a good edit: %v", err)
	}
	if e.Revision() == good {
		t.Fatal("revision unchanged after a policy edit")
	}
	if d := e.Decide(ctx, ToolInput{}); d.Reasons[0] != "edited" {
		t.Fatalf("edited policy not in force: %v", d.Reasons)
	}
}

func TestReloadRunsPolicyTests(t *testing.T) {
	dir := copyPolicies(t)
	e := newEngine(t, Options{PolicyDir: dir, TestOnReload: true})
	good := e.Revision()
	// An edit that compiles but breaks the policy's own test_allow.
	b, _ := os.ReadFile(filepath.Join(dir, "message.rego"))
	writeFile(t, filepath.Join(dir, "message.rego"), strings.Replace(string(b), `if input.command == "allow"`, `if input.command == "allow-renamed"`, 1))
	err := e.Reload(context.Background())
	if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "test_allow") {
		t.Fatalf("Reload = %v, want a failing test_allow", err)
	}
	if e.Revision() != good {
		t.Fatal("a version with failing tests was swapped in")
	}
}

func TestSetData(t *testing.T) {
	e := newEngine(t, Options{Data: map[string]any{"greeting": "one"}})
	ctx := context.Background()
	rev := e.Revision()
	if err := e.SetData(ctx, map[string]any{"greeting": "two"}); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(ctx, msg("allow", "g")); d.String("greeting") != "two" {
		t.Fatalf("new data not in force: %v", d.Fields["greeting"])
	}
	if e.Revision() == rev {
		t.Fatal("revision does not cover data")
	}
	if err := e.SetData(ctx, map[string]any{"bad": func() {}}); !errors.Is(err, ErrPolicy) {
		t.Fatalf("SetData with non-JSON data = %v", err)
	}
	if d := e.Decide(ctx, msg("allow", "h")); d.String("greeting") != "two" {
		t.Fatal("refused data replaced the running data")
	}
}

func TestWatchReloadsOnEdit(t *testing.T) {
	dir := copyPolicies(t)
	e := newEngine(t, Options{PolicyDir: dir})
	ready := make(chan struct{}, 1)
	reloads := make(chan error, 16)
	e.watched = func(err error, reloaded bool) {
		if !reloaded {
			ready <- struct{}{}
			return
		}
		reloads <- err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	defer func() { cancel(); <-done }()
	wait := func(what string) error {
		t.Helper()
		select {
		case <-ready:
			return nil
		case err := <-reloads:
			return err
		case err := <-done:
			t.Fatalf("Watch returned before %s: %v", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s within 10 s", what)
		}
		return nil
	}
	_ = wait("watch registration")
	good := e.Revision()

	writeFile(t, filepath.Join(dir, "model.rego"), "package parachute.model\n\ndecision := {\"allow\": false, \"reasons\": [\"watched\"]}\n")
	if err := wait("reload after a good edit"); err != nil {
		t.Fatalf("good edit refused: %v", err)
	}
	if e.Revision() == good {
		t.Fatal("policy edit not picked up by Watch")
	}
	if d := e.Decide(ctx, ModelInput{}); d.Reasons[0] != "watched" {
		t.Fatalf("watched edit not in force: %v", d.Reasons)
	}
	rev := e.Revision()
	writeFile(t, filepath.Join(dir, "model.rego"), "package parachute.model\n\ndecision := {")
	if err := wait("reload after a broken edit"); !errors.Is(err, ErrPolicy) {
		t.Fatalf("broken edit: reload error %v, want ErrPolicy", err)
	}
	if e.Revision() != rev {
		t.Fatal("broken edit swapped in by Watch")
	}
}

func TestDefaultsFileIsPartOfTheRevision(t *testing.T) {
	dir := copyPolicies(t)
	writeFile(t, filepath.Join(dir, "data.json"), `{"parachute": {"defaults": {"greeting": "from defaults"}}}`)
	writeFile(t, filepath.Join(dir, "extra.rego"), "package parachute.extra\n\nboth := [data.parachute.defaults.greeting, data.parachute.config.greeting]\n")
	e := newEngine(t, Options{PolicyDir: dir, Data: map[string]any{"greeting": "from config"}})
	rev := e.Revision()
	writeFile(t, filepath.Join(dir, "data.json"), `{"parachute": {"defaults": {"greeting": "changed"}}}`)
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.Revision() == rev {
		t.Fatal("revision does not cover the defaults file")
	}
}

func TestRunTests(t *testing.T) {
	rep, err := RunTests(context.Background(), "testdata/basic")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed != 2 || len(rep.Failures) != 0 {
		t.Fatalf("report = %+v, want 2 passed", rep)
	}
}

func TestTypedInputsReachPolicy(t *testing.T) {
	e := newEngine(t, Options{})
	ctx := context.Background()
	owner := SessionFacts{Role: "owner"}
	for _, in := range []Input{SessionInput{Session: owner}, ToolInput{Session: owner, Paths: []PathFacts{{Arg: "path"}}}, ModelInput{Session: owner}} {
		if d := e.Decide(ctx, in); !d.Allow {
			t.Errorf("%s: owner session denied: %v %v", in.Entry(), d.Reasons, d.Err)
		}
	}
	if d := e.Decide(ctx, RawInput{For: Egress}); d.Allow || d.Reasons[0] != ReasonPolicyError {
		t.Errorf("egress without a policy package: %v %v", d.Allow, d.Reasons)
	}
}

func TestSessionProfileDefaultsAreRestrictive(t *testing.T) {
	var d Decision
	p := d.SessionProfile()
	if p.Runtime != "containerd" || p.Seccomp != "strict" || !p.ReadOnly || p.Network || p.Hooks {
		t.Fatalf("empty decision gives %+v", p)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type panicInput struct{}

func (panicInput) Entry() Entry     { return Tool }
func (panicInput) Value() ast.Value { panic("hostile input") }

func TestPanicIsADeny(t *testing.T) {
	e := newEngine(t, Options{})
	d := e.Decide(context.Background(), panicInput{})
	if d.Allow || d.Reasons[0] != ReasonPolicyError || d.Err == nil || !strings.Contains(d.Err.Error(), "hostile input") {
		t.Fatalf("panic gave allow=%v reasons=%v err=%v", d.Allow, d.Reasons, d.Err)
	}
}

func TestRefusedReloadIsLoggedWithFileAndLine(t *testing.T) {
	dir := copyPolicies(t)
	var logs bytes.Buffer
	e := newEngine(t, Options{PolicyDir: dir, Logger: zerolog.New(&logs)})
	writeFile(t, filepath.Join(dir, "session.rego"), "package parachute.session\n\ndecision := [\n")
	_ = e.Reload(context.Background())
	if !strings.Contains(logs.String(), "session.rego:") || !strings.Contains(logs.String(), "keeping the last good policy") {
		t.Fatalf("log does not say why, with file and line: %s", logs.String())
	}
}
