package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/sessions"
	"github.com/parachute-gateway/parachute/test/fakes/sandbox"
)

// buildCLI builds the parachute binary into dir/bin, to be put on PATH.
func buildCLI(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	gobin := filepath.Join(goruntime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-trimpath", "-o", filepath.Join(bin, "parachute"), "./cmd/parachute")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestGuideMonitoringRecipes runs the guide's "Monitor bot activity"
// recipes literally, in a shell, with `parachute` on PATH and the
// config in $PARACHUTE_CONFIG (what `make run` sets up), from a folder
// that is not the gateway's, and checks they print what the guide
// promises: every connector's records, and the direct-trust sessions.
func TestGuideMonitoringRecipes(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to run the recipes in")
	}
	dir, err := os.MkdirTemp("", "recipes")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "parachute.yaml")
	yaml := fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s/policies
admin: {listen: "127.0.0.1:0"}
connectors:
  home:
    type: local
    listen: 127.0.0.1:0
    token_env: RECIPE_LOCAL_TOKEN
    owners: [owner]
    allowed_users: [alice]
    allow_direct: true
    default_trust_level: direct
`, dir, repoRoot())
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := local.New(local.Options{Name: "home", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	okRuntime := sandbox.Runtime{Answer: func(string) string { return "ok" }}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{
		Logger: zerolog.Nop(),
		// The recipes are about what the operator's commands read from the
		// audit log, which the gateway writes the same whichever runtime
		// runs the turn: a stand-in answers for both.
		Runtimes:   map[string]sessions.Sandboxes{"containerd": okRuntime, "direct": okRuntime},
		Connectors: []connectors.Connector{conn},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	})
	<-g.Ready()
	<-conn.Listening()
	say := func(user, text string) {
		body, _ := json.Marshal(map[string]string{"user": user, "text": text})
		resp, err := http.Post("http://"+conn.Addr().String()+"/v1/messages", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	say("owner", "hello") // direct: the owner of a private connector allowing it
	say("alice", "hello") // sandboxed: an allowed user
	say("mallory", "hi")  // denied: a stranger

	bin := buildCLI(t, dir)
	elsewhere := t.TempDir()
	recipe := func(line string) []string {
		t.Helper()
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = elsewhere
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "PARACHUTE_CONFIG="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s%s", line, err, out, stderr.String())
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}

	// Recipe 1: every record about a connector.
	lines := recipe(`parachute logs | grep "connector="`)
	joined := strings.Join(lines, "\n")
	for _, want := range []string{
		"decision=allow kind=message connector=home user=local:owner",
		"decision=allow kind=message connector=home user=local:alice",
		"decision=deny kind=message connector=home user=local:mallory",
		"kind=session connector=home user=local:owner",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf(`parachute logs | grep "connector=" lacks %q:\n%s`, want, joined)
		}
	}
	for _, l := range lines {
		if !strings.Contains(l, " connector=home ") {
			t.Errorf("line without connector=home: %q", l)
		}
	}

	// Recipe 2: the sessions that ran with direct trust, and only those.
	lines = recipe(`parachute logs | grep "session_id=" | grep "trust_level=direct"`)
	if len(lines) == 0 || lines[0] == "" {
		t.Fatal(`parachute logs | grep "session_id=" | grep "trust_level=direct" printed nothing`)
	}
	sawSession := false
	for _, l := range lines {
		if !strings.Contains(l, "session_id=") || !strings.Contains(l, "trust_level=direct") || !strings.Contains(l, "user=local:owner") {
			t.Errorf("direct-trust line not about the owner's session: %q", l)
		}
		if strings.Contains(l, "kind=session ") && strings.Contains(l, "decision=allow") {
			sawSession = true
		}
		if strings.Contains(l, "local:alice") {
			t.Errorf("alice's sandboxed session listed as direct: %q", l)
		}
	}
	t.Logf("recipe 2:\n%s", strings.Join(lines, "\n"))
	if !sawSession {
		t.Errorf("no allowed session decision among the direct-trust lines:\n%s", strings.Join(lines, "\n"))
	}
}
