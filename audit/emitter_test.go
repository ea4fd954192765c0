package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// observed keeps what an Emitter reports.
type observed struct {
	mu   sync.Mutex
	seen []string
}

func (o *observed) Appended(k Kind, _ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := string(k) + ":ok"
	if err != nil {
		s = string(k) + ":refused"
	}
	o.seen = append(o.seen, s)
}

// The emitter writes what the registry allows and refuses, with an error
// naming the problem, anything else: an unknown or re-cased kind, a kind
// only the log writes, a decision record without a decision, a decision
// that is neither allow nor deny. A refused record is not in the log, and
// the observer hears of every attempt.
func TestEmitterChecksEveryRecord(t *testing.T) {
	tests := []struct {
		name string
		r    Record
		want string // "" ok, else a substring of the error
	}{
		{"pairing", Record{Kind: KindPairing, Decision: "allow"}, ""},
		{"message text", Record{Kind: KindMessageText, Detail: map[string]string{"text": "hi"}}, ""},
		{"session start", Record{Kind: KindSessionStart}, ""},
		{"tool decision", Record{Kind: KindTool, Decision: "deny", Reasons: []string{"x"}}, ""},
		{"unknown kind", Record{Kind: "pairing-v2", Decision: "allow"}, `unknown record kind "pairing-v2"; the registered kinds are message, session`},
		{"re-cased kind", Record{Kind: "Tool", Decision: "allow"}, `unknown record kind "Tool"`},
		{"empty kind", Record{Decision: "allow"}, `unknown record kind ""`},
		{"checkpoint from a caller", Record{Kind: KindCheckpoint, Detail: map[string]string{"note": "forged"}}, "only the log writes checkpoint records"},
		{"gap from a caller", Record{Kind: KindGap}, "only the log writes gap records"},
		{"decision without one", Record{Kind: KindMessage}, "a message record is a decision: decision must be allow or deny"},
		{"decision re-cased", Record{Kind: KindAdmin, Decision: "Allow"}, `decision "Allow" is neither allow nor deny`},
	}
	dir := t.TempDir()
	l, err := Open(dir, Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	obs := &observed{}
	e := NewEmitter(l, obs)
	var want []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Append(context.Background(), tt.r)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrUnavailable)):
				t.Fatalf("err = %v, want ErrUnavailable naming %q", err, tt.want)
			}
		})
		if tt.want == "" {
			want = append(want, string(tt.r.Kind)+":ok")
		} else {
			want = append(want, string(tt.r.Kind)+":refused")
		}
	}
	l.Close()
	var got []string
	for _, r := range records(t, dir) {
		got = append(got, string(r.Kind))
	}
	if strings.Join(got, ",") != "pairing,message-text,session-start,tool" {
		t.Fatalf("log holds %v", got)
	}
	if !slices.Equal(obs.seen, want) {
		t.Fatalf("observer saw %v\nwant          %v", obs.seen, want)
	}
}

// Every kind in the registry is a constant, documented in docs/audit.md's
// kind table in the registry's order, and says which series it feeds.
func TestRegistryIsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "audit.md"))
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		documented = append(documented, m[1])
	}
	var registered []string
	for _, k := range Kinds() {
		registered = append(registered, string(k.Kind))
		if len(k.Metrics) == 0 || k.About == "" {
			t.Errorf("%s: the registry names no metric or no description", k.Kind)
		}
		if k.Decision != slices.Contains(decisionKinds(), k.Kind) {
			t.Errorf("%s: Decision = %v, but the engine's entry points are %v", k.Kind, k.Decision, decisionKinds())
		}
	}
	if !slices.Equal(documented, registered) {
		t.Fatalf("docs/audit.md's kind table lists %v\nthe registry has                %v", documented, registered)
	}
}

func decisionKinds() []Kind {
	var out []Kind
	for _, e := range engine.Entries {
		out = append(out, Kind(e))
	}
	return out
}

// `parachute logs kind=…` (and --kind) takes only a registered kind: a
// typo is an error listing the kinds, not an empty answer.
func TestFilterKindIsRegistered(t *testing.T) {
	for _, tt := range []struct {
		arg, want string
	}{
		{"kind=pairing", ""},
		{"kind=message-text", ""},
		{"kind=pairings", `no record has kind "pairings"; the kinds are message, session, tool`},
		{"kind=", `no record has kind ""`},
	} {
		_, err := ParseFilter([]string{tt.arg})
		if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseFilter(%s) = %v, want %q", tt.arg, err, tt.want)
		}
	}
}
