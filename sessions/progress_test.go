package sessions

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/runtime"
)

// TestProgressLines: the agent's leading progress lines are shown as the
// reply so far and taken off stdout; anything that is not exactly a
// progress line (case-folded or duplicate keys, unknown keys, trailing
// data) ends the prefix and is reply text, as it always was.
func TestProgressLines(t *testing.T) {
	for _, tt := range []struct {
		name   string
		stdout string
		shown  []string
		reply  string
	}{
		{"plain reply", "hello\nworld", nil, "hello\nworld"},
		{"progress then reply", `{"type":"progress","text":"Hel"}` + "\n" + `{"type":"progress","text":"lo"}` + "\nHello.", []string{"Hel", "Hello"}, "Hello."},
		{"key order", `{"text":"a","type":"progress"}` + "\nA", []string{"a"}, "A"},
		{"only progress", `{"type":"progress","text":"x"}`, []string{"x"}, ""},
		{"duplicate text is a reply", `{"type":"progress","text":"a","text":"b"}` + "\nz", nil, `{"type":"progress","text":"a","text":"b"}` + "\nz"},
		{"case-folded key is a reply", `{"Type":"progress","text":"a"}`, nil, `{"Type":"progress","text":"a"}`},
		{"unknown key is a reply", `{"type":"progress","text":"a","x":1}`, nil, `{"type":"progress","text":"a","x":1}`},
		{"other type is a reply", `{"type":"final","text":"a"}`, nil, `{"type":"final","text":"a"}`},
		{"trailing data is a reply", `{"type":"progress","text":"a"} {}`, nil, `{"type":"progress","text":"a"} {}`},
		{"progress after the reply starts is reply", "Hi\n" + `{"type":"progress","text":"a"}`, nil, "Hi\n" + `{"type":"progress","text":"a"}`},
		{"a newline inside text", `{"type":"progress","text":"a\nb"}` + "\nok", []string{"a\nb"}, "ok"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{1, 3, 1 << 20} { // however stdout is split
				var shown []string
				reply := &limitedBuffer{max: 256 << 10}
				w := newProgressWriter(reply, func(s string) { shown = append(shown, s) })
				for b := []byte(tt.stdout); len(b) > 0; {
					n := min(step, len(b))
					w.Write(b[:n])
					b = b[n:]
				}
				w.Close()
				if reply.String() != tt.reply {
					t.Errorf("step %d: reply %q, want %q", step, reply.String(), tt.reply)
				}
				if !slices.Equal(shown, tt.shown) {
					t.Errorf("step %d: shown %q, want %q", step, shown, tt.shown)
				}
			}
		})
	}
}

// TestProgressDoesNotFillTheReply: a long streamed reply's progress lines
// do not count against the reply's bytes, and a progress line longer than
// any is reply text, not a buffer without end.
func TestProgressDoesNotFillTheReply(t *testing.T) {
	reply := &limitedBuffer{max: 1000}
	w := newProgressWriter(reply, nil)
	for range 100 {
		w.Write([]byte(`{"type":"progress","text":"0123456789"}` + "\n"))
	}
	w.Write([]byte("the reply"))
	w.Close()
	if reply.String() != "the reply" || reply.truncated {
		t.Fatalf("reply %q (truncated %v), want the reply alone", reply.String(), reply.truncated)
	}
	big := &limitedBuffer{max: 1 << 20}
	w = newProgressWriter(big, nil)
	w.Write([]byte(`{"type":"progress","text":"` + strings.Repeat("a", maxProgressLine) + `"}`))
	if w.prefix || big.Len() == 0 {
		t.Fatalf("an over-long line is held as progress")
	}
}

// TestTurnStreamsProgress: through the manager, a turn with Progress gets
// the agent's progress as the reply so far, the agent is told
// (PARACHUTE_PROGRESS=1), and the reply returned and recorded is the text
// after the progress lines.
func TestTurnStreamsProgress(t *testing.T) {
	m, rt, _ := newManager(t, testData())
	var env []string
	rt.script = func(tu runtime.Turn, in turnInput) string {
		env = tu.Env
		return `{"type":"progress","text":"Thinking about "}` + "\n" + `{"type":"progress","text":"` + in.Text + `"}` + "\nThe answer."
	}
	req := turn("dev", "alice", "life")
	var shown []string
	req.Progress = func(s string) { shown = append(shown, s) }
	reply, err := m.Turn(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if reply != "The answer." {
		t.Errorf("reply %q", reply)
	}
	if want := []string{"Thinking about ", "Thinking about life"}; !slices.Equal(shown, want) {
		t.Errorf("shown %q, want %q", shown, want)
	}
	if !slices.Contains(env, ProgressEnv) {
		t.Errorf("env %q lacks %s", env, ProgressEnv)
	}
	req = turn("dev", "alice", "again")
	if _, err := m.Turn(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(env, ProgressEnv) {
		t.Errorf("a turn without Progress told the agent its progress is shown")
	}
}
