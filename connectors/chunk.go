package connectors

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Unit measures one rune in a platform's length unit.
type Unit func(r rune) int

// Length units of the platforms' message limits.
var (
	// UTF16 counts UTF-16 code units, as Telegram does.
	UTF16 Unit = func(r rune) int { return utf16.RuneLen(r) }
	// Runes counts Unicode code points, as Discord does.
	Runes Unit = func(rune) int { return 1 }
	// Bytes counts UTF-8 bytes, for limits on event size (Matrix).
	Bytes Unit = func(r rune) int { return utf8.RuneLen(r) }
)

// Limits of one message per platform, in the platform's unit.
const (
	TelegramLimit = 4096
	DiscordLimit  = 2000
	// MatrixLimit keeps an m.text event well under the 65,536-byte event
	// limit once JSON escaping and the event envelope are added.
	MatrixLimit = 16000
	// LocalLimit bounds one chunk of the local HTTP connector.
	LocalLimit = 65536
)

// Chunk splits text into pieces of at most limit units each, cutting at a
// paragraph break if one falls in the piece, else at a line break, else at a
// space, else at the last rune that fits. Whitespace at a cut is dropped;
// empty pieces are never returned. Invalid UTF-8 is replaced by U+FFFD.
func Chunk(text string, limit int, unit Unit) []string {
	if limit < 4 {
		limit = 4 // every rune fits in 4 units of any unit here
	}
	text = strings.ToValidUTF8(text, "\uFFFD")
	var out []string
	for {
		text = strings.TrimLeft(text, "\n\r ")
		if text == "" {
			return out
		}
		end, fits := prefix(text, limit, unit)
		if fits {
			if t := strings.TrimRight(text, "\n\r \t"); t != "" {
				out = append(out, t)
			}
			return out
		}
		cut := end
		head := text[:end]
		for _, sep := range []string{"\n\n", "\n", " "} {
			if i := strings.LastIndex(head, sep); i > 0 {
				cut = i
				break
			}
		}
		if piece := strings.TrimRight(text[:cut], "\n\r \t"); piece != "" {
			out = append(out, piece)
		}
		text = text[cut:]
	}
}

// prefix returns the byte length of the longest prefix of s within limit
// units, and whether that is all of s.
func prefix(s string, limit int, unit Unit) (int, bool) {
	n := 0
	for i, r := range s {
		n += unit(r)
		if n > limit {
			return i, false
		}
	}
	return len(s), true
}
