package sessions

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// ProgressEnv tells the agent the gateway shows its progress lines
// (docs/agent.md): set in a turn's environment when the chat streams.
const ProgressEnv = "PARACHUTE_PROGRESS=1"

// maxProgressLine bounds one progress line; a longer line is not one.
const maxProgressLine = 64 << 10

// progressWriter is the agent's stdout. While every line so far has been
// a progress line, each one is taken off stdout and its text appended to
// the reply so far, which goes to show; the first other line ends the
// progress prefix, and it and everything after it are the reply, exactly
// as without progress. So an agent that writes no progress lines keeps the
// contract it always had, and what is shown, recorded and returned is read
// from the same bytes one way.
type progressWriter struct {
	reply   *limitedBuffer
	show    func(text string) // nil: progress lines are still taken off
	prefix  bool              // still in the progress prefix
	line    []byte
	sofar   strings.Builder
	ignored bool // the text so far reached the reply limit
}

func newProgressWriter(reply *limitedBuffer, show func(string)) *progressWriter {
	return &progressWriter{reply: reply, show: show, prefix: true}
}

func (w *progressWriter) Write(p []byte) (int, error) {
	n := len(p)
	for w.prefix && len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.line = append(w.line, p...)
			if len(w.line) > maxProgressLine {
				w.endPrefix()
			}
			return n, nil
		}
		w.line = append(w.line, p[:i+1]...)
		p = p[i+1:]
		text, ok := progressLine(bytes.TrimSuffix(w.line, []byte("\n")))
		if !ok {
			w.endPrefix()
			break
		}
		w.line = w.line[:0]
		w.progress(text)
	}
	if len(p) > 0 {
		_, _ = w.reply.Write(p)
	}
	return n, nil
}

// endPrefix makes the line held so far the start of the reply.
func (w *progressWriter) endPrefix() {
	w.prefix = false
	_, _ = w.reply.Write(w.line)
	w.line = nil
}

// Close ends stdout: a last line without a newline is parsed like any.
func (w *progressWriter) Close() {
	if !w.prefix || len(w.line) == 0 {
		return
	}
	if text, ok := progressLine(w.line); ok {
		w.line = nil
		w.progress(text)
		return
	}
	w.endPrefix()
}

func (w *progressWriter) progress(text string) {
	if w.ignored || text == "" {
		return
	}
	if w.sofar.Len()+len(text) > w.reply.max {
		w.ignored = true
		return
	}
	w.sofar.WriteString(strings.ToValidUTF8(text, "\uFFFD"))
	if w.show != nil {
		w.show(w.sofar.String())
	}
}

// progressLine parses {"type":"progress","text":"…"} strictly: exactly
// these two keys, spelled so (no case folding), once each, string values,
// nothing after the object.
func progressLine(b []byte) (string, bool) {
	if len(b) == 0 || b[0] != '{' {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	var typ, text *string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return "", false
		}
		var v string
		if err := dec.Decode(&v); err != nil {
			return "", false
		}
		switch k {
		case "type":
			if typ != nil {
				return "", false
			}
			typ = &v
		case "text":
			if text != nil {
				return "", false
			}
			text = &v
		default:
			return "", false
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return "", false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", false
	}
	if typ == nil || *typ != "progress" || text == nil {
		return "", false
	}
	return *text, true
}
