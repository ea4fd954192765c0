package connectors_test

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/parachute-gateway/parachute/connectors"
)

func TestChunk(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		limit int
		unit  connectors.Unit
		want  []string
	}{
		{"fits", "hello world", 20, connectors.Runes, []string{"hello world"}},
		{"empty", "  \n ", 20, connectors.Runes, nil},
		{"paragraph first", "aaaa bbbb\n\ncccc dddd", 15, connectors.Runes, []string{"aaaa bbbb", "cccc dddd"}},
		{"then line", "aaaa\nbbbb cccc", 12, connectors.Runes, []string{"aaaa", "bbbb cccc"}},
		{"then word", "aaaa bbbb cccc", 10, connectors.Runes, []string{"aaaa bbbb", "cccc"}},
		{"hard cut", "abcdefghij", 4, connectors.Runes, []string{"abcd", "efgh", "ij"}},
		{"utf16 counts surrogate pairs", "😀😀😀", 4, connectors.UTF16, []string{"😀😀", "😀"}},
		{"bytes never split a rune", "ééééé", 4, connectors.Bytes, []string{"éé", "éé", "é"}},
		{"invalid utf8 replaced", "a\xffb", 10, connectors.Runes, []string{"a\uFFFDb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := connectors.Chunk(tt.text, tt.limit, tt.unit)
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Fatalf("Chunk = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestChunkLimitsHold(t *testing.T) {
	text := strings.Repeat("Lorem ipsum dolor sit amet, 😀 consectetur.\n", 500) + strings.Repeat("x", 9000)
	for _, typ := range []string{"telegram", "discord", "matrix", "local"} {
		limit, unit := connectors.PlatformLimit(typ)
		chunks := connectors.Chunk(text, limit, unit)
		var joined strings.Builder
		for _, c := range chunks {
			n := 0
			for _, r := range c {
				n += unit(r)
			}
			if n > limit || !utf8.ValidString(c) {
				t.Fatalf("%s: chunk of %d units over %d", typ, n, limit)
			}
			joined.WriteString(c)
		}
		if squeeze(joined.String()) != squeeze(text) {
			t.Fatalf("%s: text changed by chunking beyond whitespace at cuts", typ)
		}
	}
}

func TestDedupIsBounded(t *testing.T) {
	d := connectors.NewDedup(100, time.Hour)
	for i := range 1000 {
		if !d.First(fmt.Sprint(i)) {
			t.Fatalf("%d reported as duplicate", i)
		}
	}
	if d.Len() != 100 {
		t.Fatalf("Len = %d, want 100", d.Len())
	}
	if d.First("999") {
		t.Fatal("recent key forgotten")
	}
	if !d.First("0") {
		t.Fatal("evicted key still remembered")
	}
}

// TestDedupExpires: a key is remembered for exactly its TTL (fake time in
// a synctest bubble), and a repeat inside the window does not extend it.
func TestDedupExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := connectors.NewDedup(10, time.Minute)
		d.First("a")
		time.Sleep(time.Minute - time.Second)
		if d.First("a") {
			t.Fatal("a redelivery inside the TTL was reported as a first sighting")
		}
		d.First("b")
		time.Sleep(time.Second)
		if !d.Seen("b") {
			t.Fatal("b forgotten before its TTL")
		}
		if n := d.Len(); n != 1 {
			t.Fatalf("Len = %d one TTL after a, want 1 (b only)", n)
		}
		if !d.First("a") {
			t.Fatal("a still remembered after its TTL")
		}
	})
}

func TestRedactor(t *testing.T) {
	tok := "123456789:AAH-secret_token_value_0123456789abcdef"
	r := connectors.NewRedactor(tok, "plain/secret+x")
	tests := []struct{ name, in string }{
		{"as given", "token " + tok},
		{"in a URL path", "Post \"https://api.telegram.org/bot" + tok + "/getUpdates\": dial tcp"},
		{"query escaped", "x?s=" + url.QueryEscape("plain/secret+x")},
		{"path escaped", "/" + url.PathEscape("plain/secret+x")},
		{"bare unknown telegram token", "bot 987654321:ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ failed"},
		{"bare discord token", "Bot MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456 refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.String(tt.in)
			if !strings.Contains(got, connectors.Redacted) || strings.Contains(got, "secret") || strings.Contains(got, "ZZZZZZ") || strings.Contains(got, "abcdefghijklmnop") {
				t.Fatalf("String(%q) = %q", tt.in, got)
			}
		})
	}
	err := r.Error(fmt.Errorf("get %s: %w", tok, io.ErrUnexpectedEOF))
	if strings.Contains(err.Error(), "secret") || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Error = %v (Is EOF %v)", err, errors.Is(err, io.ErrUnexpectedEOF))
	}
	if errors.Unwrap(err) != nil {
		t.Fatal("redacted error unwraps to the unredacted one")
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct{ in, cmd, arg string }{
		{"/start abc", "start", "abc"},
		{"/START@my_bot  tok ", "start", "tok"},
		{"/whoami", "whoami", ""},
		{"/new\nmore", "new", "more"},
		{"hello /start", "", ""},
		{"/sudo", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		cmd, arg := connectors.ParseCommand(tt.in)
		if cmd != tt.cmd || arg != tt.arg {
			t.Errorf("ParseCommand(%q) = %q, %q; want %q, %q", tt.in, cmd, arg, tt.cmd, tt.arg)
		}
	}
}

func squeeze(s string) string { return strings.Join(strings.Fields(s), "") }
