package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestMCPLoggerReachesGatewayLog: the MCP proxy's warnings and errors (an
// upstream that failed) land in the gateway's log, tagged component=mcp;
// its debug and info chatter does not, and nothing is logged below the
// gateway's own level.
func TestMCPLoggerReachesGatewayLog(t *testing.T) {
	tests := []struct {
		name     string
		gwLevel  zerolog.Level
		level    slog.Level
		wantLine bool
	}{
		{"debug dropped", zerolog.DebugLevel, slog.LevelDebug, false},
		{"info dropped", zerolog.DebugLevel, slog.LevelInfo, false},
		{"warn kept", zerolog.DebugLevel, slog.LevelWarn, true},
		{"error kept", zerolog.InfoLevel, slog.LevelError, true},
		{"warn dropped under an error-level gateway", zerolog.ErrorLevel, slog.LevelWarn, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := mcpLogger(zerolog.New(&buf).Level(tt.gwLevel))
			l.Log(context.Background(), tt.level, "upstream failed", "upstream", "files")
			out := strings.TrimSpace(buf.String())
			if !tt.wantLine {
				if out != "" {
					t.Fatalf("logged %q, want nothing", out)
				}
				return
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(out), &rec); err != nil {
				t.Fatalf("log line %q is not one JSON object: %v", out, err)
			}
			if rec["component"] != "mcp" || rec["message"] != "upstream failed" || rec["upstream"] != "files" {
				t.Fatalf("log line = %v, want component=mcp, the message and its attributes", rec)
			}
		})
	}
}
