package agent

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestResultText(t *testing.T) {
	long := strings.Repeat("é", MaxToolOutputBytes) // 2 bytes each: over the bound
	tests := []struct {
		name string
		res  *mcp.CallToolResult
		want string // prefix of the text
	}{
		{"text blocks joined", &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "a"}, &mcp.TextContent{Text: "b"}}}, "a\nb"},
		{"image named, not inlined", &mcp.CallToolResult{Content: []mcp.Content{&mcp.ImageContent{MIMEType: "image/png", Data: []byte("xyz")}}}, "[image image/png, 3 bytes, not shown]"},
		{"structured only", &mcp.CallToolResult{Content: []mcp.Content{}, StructuredContent: map[string]int{"n": 1}}, `{"n":1}`},
		{"nothing", &mcp.CallToolResult{}, "(no output)"},
		{"long output cut", &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: long}}}, "éé"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := resultText(tc.res)
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("resultText = %.80q; want prefix %q", got, tc.want)
			}
			if len(got) > MaxToolOutputBytes+64 || !utf8.ValidString(got) {
				t.Errorf("resultText is %d bytes, valid UTF-8 %v; want bounded and valid", len(got), utf8.ValidString(got))
			}
		})
	}
	if got := resultText(tests[4].res); !strings.HasSuffix(got, "more bytes cut]") {
		t.Errorf("cut output does not say so: %q", got[len(got)-40:])
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"error":{"type":"rate_limit_error","message":"budget used up"}}`, "budget used up"},
		{`{"type":"error","error":{"type":"permission_denied","message":"not allowed"}}`, "not allowed"},
		{`{"error":"plain string"}`, "plain string"},
		{"upstream\nfailed\n\n", "upstream failed"},
		{"", "(no message)"},
		{strings.Repeat("x", 2000), strings.Repeat("x", 500)},
	}
	for _, tc := range tests {
		got := errorMessage([]byte(tc.body))
		if !strings.HasPrefix(got, tc.want) || strings.Contains(got, "\n") || len(got) > 600 {
			t.Errorf("errorMessage(%.40q) = %.80q; want one bounded line starting %.40q", tc.body, got, tc.want)
		}
	}
}
