package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/config"
	"github.com/rs/zerolog"
)

// The runtime's options carry the gateway's logger (an init channel
// refusal, a peer that is not the sandbox's PID 1, lands in the gateway's
// log tagged component=runtime, not on slog.Default) and
// runtime.init_exec (false: runc exec per turn).
func TestContainerdOptionsFromGateway(t *testing.T) {
	off := false
	for _, tt := range []struct {
		name       string
		initExec   *bool
		noInitExec bool
	}{
		{"init exec by default", nil, false},
		{"init_exec: false is runc exec per turn", &off, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			g := &Gateway{cfg: &config.Config{Runtime: config.Runtime{InitExec: tt.initExec}}, log: zerolog.New(&buf)}
			opts := g.containerdOptions("/run/containerd/containerd.sock")
			if opts.NoInitExec != tt.noInitExec {
				t.Errorf("NoInitExec = %v, want %v", opts.NoInitExec, tt.noInitExec)
			}
			if opts.Logger == nil {
				t.Fatal("no Logger: the runtime's refusals would go to slog.Default, not the gateway's log")
			}
			opts.Logger.Error("sandbox init channel: refused a connection that is not the sandbox's PID 1; turns use runc exec",
				"sandbox", "parachute-abc", "peer_pid", 4242)
			var rec map[string]any
			if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &rec); err != nil {
				t.Fatalf("gateway log %q is not one JSON line: %v", buf.String(), err)
			}
			if rec["component"] != "runtime" || rec["level"] != "error" || rec["sandbox"] != "parachute-abc" ||
				!strings.Contains(rec["message"].(string), "refused a connection") {
				t.Fatalf("gateway log line = %v, want the refusal at error, component=runtime, with its sandbox", rec)
			}
		})
	}
}
