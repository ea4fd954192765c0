package load

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Every answer a user would not accept is a failed turn, whatever its
// HTTP status: the local connector answered denials and empty replies
// with 200, so the status alone hid them.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		reply  string
		want   string
		cause  string
	}{
		{"ok write", nil, 200, "Successfully wrote to /workspace/notes.txt", "", ""},
		{"ok cat", nil, 200, "load-u1-abc", "load-u1-abc", ""},
		{"connection refused", errors.New("dial tcp: connection refused"), 0, "", "", FailTransport},
		{"busy", nil, 503, "The gateway is busy; try again in 1s.", "", FailBusy},
		{"server error", nil, 500, "the message could not be handled", "", FailStatus},
		{"empty 200", nil, 200, "  ", "", FailEmpty},
		{"policy-error 200", nil, 200, "denied: policy-error", "", FailDenied},
		{"denied inside text", nil, 200, "read_file: Denied: overloaded", "x", FailDenied},
		{"no tool", nil, 200, `no tool named "read_file"`, "load-u1", FailErrorText},
		{"agent error", nil, 200, "agent error: exit status 1", "", FailErrorText},
		{"another user's file", nil, 200, "load-u2-def", "load-u1-abc", FailContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cause, _ := Classify(tc.err, tc.status, tc.reply, tc.want)
			if cause != tc.cause {
				t.Fatalf("Classify = %q, want %q", cause, tc.cause)
			}
		})
	}
}

func TestResultFigures(t *testing.T) {
	r := Result{Users: 2, Wall: 2 * time.Second}
	for i := 1; i <= 10; i++ {
		r.Turns = append(r.Turns, Turn{Latency: time.Duration(i) * time.Millisecond})
	}
	r.Turns = append(r.Turns, Turn{First: true, Latency: time.Second}, Turn{First: true, Latency: 3 * time.Second, Cause: FailBusy})
	if got := r.TurnsPerSecond(); got != 5.5 {
		t.Errorf("turns/s = %v, want 5.5 (11 good turns in 2 s)", got)
	}
	if got := r.Percentile(false, 50); got != 5*time.Millisecond {
		t.Errorf("later p50 = %s", got)
	}
	if got := r.Percentile(false, 95); got != 10*time.Millisecond {
		t.Errorf("later p95 = %s", got)
	}
	if got := r.Percentile(true, 95); got != 3*time.Second {
		t.Errorf("first p95 = %s, want the failed turn's 3s (a slow failure is a wait)", got)
	}
	if n, by := r.Failed(); n != 1 || by[FailBusy] != 1 {
		t.Errorf("failed = %d %v", n, by)
	}
	var b strings.Builder
	WriteTable(&b, []Result{r})
	if !strings.Contains(b.String(), "busy-503:1") {
		t.Errorf("table does not name the cause:\n%s", b.String())
	}
	if _, err := parseLadder("50, 100,200"); err != nil {
		t.Error(err)
	}
	if _, err := parseLadder("50,lots"); err == nil {
		t.Error("a rung that is not a number was accepted")
	}
}
