// Package e2e runs the guide's attack scenarios through the whole gateway:
// a chat connector, the real policies, sessions in real containerd
// sandboxes running the real `parachute agent`, the MCP proxy over the
// session socket, a scripted fake model behind the model proxy, and the
// audit log. They need root and containerd: outside CI they skip with a
// message; under CI=true a missing prerequisite fails them.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/test/ctrd"
	"github.com/parachute-gateway/parachute/test/fakes/model"
)

func TestMain(m *testing.M) { ctrd.Main(m) }

// The API key the fake model expects; it must never appear in a sandbox,
// a log line or an error.
const apiKey = "sk-e2e-SECRET-never-leaks-9f8e7d"

const imageRef = "parachute.local/sandbox:e2e"

// tgToken is the fake Telegram bot's token; it too must never leak.
const tgToken = "123456:E2E-telegram-token-never-leaks"

func repoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	imageOnce sync.Once
	imageErr  error
	binPath   string
)

// image builds the static parachute binary and imports it as the sandbox
// image, once per test binary.
func image(t *testing.T, addr string) {
	t.Helper()
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "e2e-bin")
		if err != nil {
			imageErr = err
			return
		}
		binPath = filepath.Join(dir, "parachute")
		gobin := filepath.Join(goruntime.GOROOT(), "bin", "go")
		cmd := exec.Command(gobin, "build", "-trimpath", "-o", binPath, "./cmd/parachute")
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		ctx := context.Background()
		tar, err := runtime.BuildImage(ctx, runtime.BuildOptions{Binary: binPath, Ref: imageRef, Out: filepath.Join(dir, "image.tar")})
		if err != nil {
			imageErr = err
			return
		}
		rt, err := runtime.NewContainerd(ctx, runtime.ContainerdOptions{Address: addr})
		if err != nil {
			imageErr = err
			return
		}
		defer rt.Close()
		imageErr = rt.ImportImage(ctx, tar, imageRef)
	})
	if imageErr != nil {
		t.Fatalf("sandbox image: %v", imageErr)
	}
}

// localToken is the bearer token of every local connector setup starts.
const localToken = "e2e-local-token-0123456789"

// localType finds a block-style "type: local" line and its indentation.
var localType = regexp.MustCompile(`(?m)^([ \t]+)type: local$`)

// env is one running gateway.
type env struct {
	t      *testing.T
	g      *gateway.Gateway
	cfg    *config.Config
	conns  map[string]*local.Connector
	model  *model.Fake
	vault  string
	logBuf *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// setup starts a gateway whose config is base plus connectorsYAML (the
// `connectors:` section and anything else, indented at top level), with
// the model answering script.
func setup(t *testing.T, extraYAML string, script model.Script) *env {
	t.Helper()
	return setupPool(t, 0, extraYAML, script)
}

// setupPool is setup with a warm pool of n sandboxes per profile.
func setupPool(t *testing.T, n int, extraYAML string, script model.Script) *env {
	t.Helper()
	addr := ctrd.Start(t)
	image(t, addr)

	fake := model.New(script)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+apiKey {
			http.Error(w, `{"error":{"message":"bad key"}}`, http.StatusUnauthorized)
			return
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)

	dir, err := os.MkdirTemp("", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	vault := filepath.Join(dir, "vault")
	if err := os.MkdirAll(vault, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vault, "secrets.txt"), []byte("TOP-SECRET-VAULT-CONTENT"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`
vault: %s
state_dir: %s/state
policies: %s/policies
admin: {listen: "127.0.0.1:0"}
runtime:
  containerd_socket: %s
  image: %s
  warm_pool: %d
model:
  provider: openai
  base_url: %s
  api_key_env: E2E_MODEL_KEY
  model: gpt-test
%s`, vault, dir, repoRoot(), addr, imageRef, n, upstream.URL, extraYAML)
	return startGateway(t, addr, yaml, fake, vault)
}

// startGateway parses yaml (every local connector given the e2e bearer
// token: a connector with owners must have one, and send carries it),
// runs a gateway on it until the test ends and waits until it and every
// local connector are ready. At cleanup it checks that no sandbox is left
// and no secret leaked, and prints the gateway's log if the test failed.
func startGateway(t *testing.T, addr, yaml string, fake *model.Fake, vault string) *env {
	t.Helper()
	yaml = localType.ReplaceAllString(yaml, "${1}type: local\n${1}token_env: E2E_LOCAL_TOKEN")
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	logs := &syncBuffer{}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{
		Logger: zerolog.New(logs),
		Getenv: func(k string) string {
			return map[string]string{"E2E_MODEL_KEY": apiKey, "E2E_TG_TOKEN": tgToken, "E2E_LOCAL_TOKEN": localToken}[k]
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	conns := map[string]*local.Connector{}
	for _, c := range g.Connectors() {
		if lc, ok := c.(*local.Connector); ok {
			conns[c.Name()] = lc
		}
	}
	e := &env{t: t, g: g, cfg: cfg, conns: conns, model: fake, vault: vault, logBuf: logs}
	t.Cleanup(func() {
		e.assertSandboxesClean(addr)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway Run: %v", err)
		}
		e.assertNoSecretsLeaked()
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	<-g.Ready()
	for name, c := range conns {
		select {
		case <-c.Listening():
		case err := <-done:
			done <- err // for the cleanup, which waits for Run's end
			t.Fatalf("gateway stopped before connector %s listened: %v", name, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("connector %s never listened", name)
		}
	}
	return e
}

// send posts a message as user to connector and returns the reply.
func (e *env) send(connector, user, text string) string {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"user": user, "text": text})
	req, _ := http.NewRequest("POST", "http://"+e.conns[connector].Addr().String()+"/v1/messages", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+localToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Reply string `json:"reply"`
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if out.Reply == "" {
		return out.Error
	}
	return out.Reply
}

// records returns the audit records so far.
func (e *env) records() []audit.Record {
	e.t.Helper()
	var recs []audit.Record
	if err := audit.Read(e.cfg.Audit.Dir, audit.ReadOptions{}, func(en audit.Entry) error {
		recs = append(recs, en.Record)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// denials returns the reasons of every denied decision of kind.
func (e *env) denials(kind string) []string {
	var out []string
	for _, r := range e.records() {
		if string(r.Kind) == kind && r.Decision == "deny" {
			out = append(out, r.Path+":"+strings.Join(r.Reasons, ","))
		}
	}
	return out
}

// assertSandboxesClean checks every running sandbox's OCI spec (its
// environment, arguments and mounts) and every file in the vault for the
// secrets the gateway holds.
func (e *env) assertSandboxesClean(addr string) {
	ctx := namespaces.WithNamespace(context.Background(), "parachute")
	c, err := containerd.New(addr)
	if err != nil {
		e.t.Errorf("containerd: %v", err)
		return
	}
	defer c.Close()
	ctrs, err := c.Containers(ctx)
	if err != nil {
		e.t.Errorf("list containers: %v", err)
		return
	}
	e.t.Logf("checked %d running sandboxes for secrets", len(ctrs))
	for _, ctr := range ctrs {
		spec, err := ctr.Spec(ctx)
		if err != nil {
			continue // stopped meanwhile
		}
		b, _ := json.Marshal(spec)
		for _, secret := range []string{apiKey, tgToken} {
			if bytes.Contains(b, []byte(secret)) {
				e.t.Errorf("sandbox %s's spec holds a secret", ctr.ID())
			}
		}
	}
	_ = filepath.WalkDir(e.vault, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil && (bytes.Contains(b, []byte(apiKey)) || bytes.Contains(b, []byte(tgToken))) {
			e.t.Errorf("vault file %s holds a secret", path)
		}
		return nil
	})
}

// assertNoSecretsLeaked checks the gateway's log and audit for the API key.
func (e *env) assertNoSecretsLeaked() {
	for _, secret := range []string{apiKey, tgToken, localToken} {
		if strings.Contains(e.logBuf.String(), secret) {
			e.t.Errorf("secret %q appears in the gateway's log", secret)
		}
	}
	files, _ := audit.Files(e.cfg.Audit.Dir)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte(apiKey)) || bytes.Contains(b, []byte(tgToken)) {
			e.t.Errorf("a secret appears in audit file %s", f)
		}
	}
}
