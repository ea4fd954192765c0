package gateway

import "github.com/rs/zerolog"

// upstreamLog writes an upstream's stderr to the gateway log, a line at a
// time as the writes come, bounded so a chatty server cannot flood it.
type upstreamLog struct{ log zerolog.Logger }

func (u upstreamLog) Write(b []byte) (int, error) {
	line := string(b)
	if len(line) > 2048 {
		line = line[:2048] + "…"
	}
	u.log.Warn().Str("stderr", line).Msg("mcp upstream")
	return len(b), nil
}
