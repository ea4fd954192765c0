package audit

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Field values come from agents and chat users (file names, tool names,
// error texts). Printed raw, a value could move the operator's cursor,
// recolour or clear the screen (ANSI escapes), or reorder what is shown
// (bidi controls: a file named "\u202Egnp.sh" shows as "hs.png"). Every
// character that is not plainly visible is printed as an escape.

// unsafe reports whether r must not reach a terminal as itself: C0 and C1
// controls, DEL, line and paragraph separators, and format characters (Cf:
// the bidi embeddings, overrides and isolates U+202A–U+202E and
// U+2066–U+2069, the marks U+200E, U+200F and U+061C, zero-width and
// invisible characters, tag characters).
func unsafe(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) ||
		unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// Escape returns s with every unsafe character and every invalid UTF-8 byte
// written as an escape (\n, \t, \r, \x1b, \u202e, \U000e0041) and
// backslashes doubled, so the text shown is one line that reads as what was
// recorded and cannot be confused with an escape.
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	writeEscaped(&b, s, false)
	return b.String()
}

func needsEscape(s string) bool {
	for i, r := range s {
		if r == '\\' || unsafe(r) || (r == utf8.RuneError && !validAt(s, i)) {
			return true
		}
	}
	return false
}

// validAt reports whether the U+FFFD at s[i:] is really in the text.
func validAt(s string, i int) bool {
	r, n := utf8.DecodeRuneInString(s[i:])
	return r != utf8.RuneError || n == 3
}

func writeEscaped(b *strings.Builder, s string, quoted bool) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"' && quoted:
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80 && unsafe(r):
			fmt.Fprintf(b, `\x%02x`, r)
		case r <= 0xffff && unsafe(r):
			fmt.Fprintf(b, `\u%04x`, r)
		case unsafe(r):
			fmt.Fprintf(b, `\U%08x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
}

// formatValue renders a value for Format: escaped, and in double quotes if
// it holds a space, a quote or '=' (so key=value splitting stays exact).
func formatValue(v string) string {
	if !strings.ContainsAny(v, " \"=") {
		return Escape(v)
	}
	var b strings.Builder
	b.WriteByte('"')
	writeEscaped(&b, v, true)
	b.WriteByte('"')
	return b.String()
}

// EscapeJSON returns a JSON line with every unsafe character written as a
// JSON \u escape (a surrogate pair beyond U+FFFF) and every invalid UTF-8
// byte as \ufffd. Inside a JSON string the value is unchanged; encoding/json
// already escapes C0 controls and U+2028/U+2029 but not DEL, C1 or the bidi
// and other format characters.
func EscapeJSON(line []byte) []byte {
	clean := true
	for i := 0; i < len(line); {
		r, n := utf8.DecodeRune(line[i:])
		if unsafe(r) || (r == utf8.RuneError && n <= 1) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return line
	}
	out := make([]byte, 0, len(line)+32)
	for i := 0; i < len(line); {
		r, n := utf8.DecodeRune(line[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			out = append(out, `\ufffd`...)
		case unsafe(r) && r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		case unsafe(r):
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, line[i:i+n]...)
		}
		i += n
	}
	return out
}
