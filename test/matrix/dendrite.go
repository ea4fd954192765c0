// Package matrixtest runs a real Matrix homeserver, Dendrite v0.13.8, for
// tests: on 127.0.0.1 on a free port, with a generated config (SQLite
// files in a temporary folder, no federation, registration by shared
// secret only, no rate limits) and users registered through the shared
// secret admin API.
//
// The binaries come from test/deps/30-dendrite.sh (test/.state/bin) or from
// $DENDRITE_BIN's folder. When they are missing the test is skipped with a
// message, or fails when CI=true.
package matrixtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Version is the Dendrite release the harness is written for.
const Version = "v0.13.8"

// Homeserver is a running Dendrite.
type Homeserver struct {
	URL        string // http://127.0.0.1:<port>
	ServerName string // "localhost"
	dir        string
	secret     string
	cmd        *exec.Cmd
	logPath    string
}

// User is a registered account.
type User struct {
	UserID      string // @name:localhost
	AccessToken string
	DeviceID    string // the device the registration logged in
	Password    string // for user-interactive auth (cross-signing key upload)
}

// Binary returns the dendrite binary's path, or "" if there is none.
func Binary() string {
	if p := os.Getenv("DENDRITE_BIN"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", ".state", "bin", "dendrite")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// requireCI skips, or fails when CI=true.
func requireCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but "+format, args...)
	}
	t.Skipf(format, args...)
}

// Start starts a homeserver that stops when the test ends.
func Start(t testing.TB) *Homeserver {
	t.Helper()
	bin := Binary()
	if bin == "" {
		requireCI(t, "dendrite %s is not built: run test/deps/30-dendrite.sh (or set DENDRITE_BIN)", Version)
	}
	keygen := filepath.Join(filepath.Dir(bin), "generate-keys")
	if _, err := os.Stat(keygen); err != nil {
		requireCI(t, "generate-keys is missing next to %s: run test/deps/30-dendrite.sh", bin)
	}
	dir := t.TempDir()
	h := &Homeserver{ServerName: "localhost", dir: dir, secret: randomHex(16), logPath: filepath.Join(dir, "dendrite.log")}
	if out, err := exec.Command(keygen, "--private-key", filepath.Join(dir, "matrix_key.pem")).CombinedOutput(); err != nil {
		t.Fatalf("generate-keys: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "dendrite.yaml")
	if err := os.WriteFile(cfg, []byte(h.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	h.URL = "http://" + addr
	logf, err := os.Create(h.logPath)
	if err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(bin, "-config", cfg, "-http-bind-address", addr)
	h.cmd.Dir = dir
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start dendrite: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = h.cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = h.cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(h.URL + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case <-exited:
			t.Fatalf("dendrite exited during start:\n%s", h.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dendrite not ready after 60s:\n%s", h.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log is the homeserver's output so far (for failure messages).
func (h *Homeserver) Log() string {
	b, _ := os.ReadFile(h.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// config is a minimal Dendrite config: SQLite files in dir, no federation,
// no open registration, no rate limits (tests send quickly).
func (h *Homeserver) config() string {
	db := func(name string) string {
		return fmt.Sprintf("  database:\n    connection_string: file:%s\n", filepath.Join(h.dir, name+".db"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `version: 2
global:
  server_name: %s
  private_key: %s
  key_validity_period: 168h0m0s
  disable_federation: true
  trusted_third_party_id_servers: []
  presence:
    enable_inbound: false
    enable_outbound: false
  jetstream:
    storage_path: %s
    in_memory: true
  report_stats:
    enabled: false
  server_notices:
    enabled: false
    local_part: _server
    display_name: Server Alert
    room_name: Server Alert
client_api:
  registration_disabled: true
  registration_shared_secret: %q
  guests_disabled: true
  rate_limiting:
    enabled: false
federation_api:
%s  key_perspectives: []
key_server:
%smedia_api:
%s  base_path: %s
room_server:
%ssync_api:
%srelay_api:
%smscs:
  mscs: []
%suser_api:
  bcrypt_cost: 4
  account_database:
    connection_string: file:%s
logging:
- type: std
  level: warn
`, h.ServerName, filepath.Join(h.dir, "matrix_key.pem"), h.dir, h.secret,
		db("federation"), db("keys"), db("media"), filepath.Join(h.dir, "media"),
		db("roomserver"), db("sync"), db("relay"), db("mscs"), filepath.Join(h.dir, "accounts.db"))
	return b.String()
}

// Register creates an account through the shared-secret admin API
// (/_synapse/admin/v1/register, which Dendrite implements) and returns its
// user ID and an access token.
func (h *Homeserver) Register(t testing.TB, localpart string) User {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := h.do(ctx, http.MethodGet, "/_synapse/admin/v1/register", "", nil, &nonce); err != nil {
		t.Fatalf("register nonce: %v", err)
	}
	password := randomHex(12)
	mac := hmac.New(sha1.New, []byte(h.secret))
	mac.Write([]byte(nonce.Nonce + "\x00" + localpart + "\x00" + password + "\x00notadmin"))
	req := map[string]any{"nonce": nonce.Nonce, "username": localpart, "password": password, "admin": false, "mac": hex.EncodeToString(mac.Sum(nil))}
	var out struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	if err := h.do(ctx, http.MethodPost, "/_synapse/admin/v1/register", "", req, &out); err != nil {
		t.Fatalf("register %s: %v", localpart, err)
	}
	return User{UserID: out.UserID, AccessToken: out.AccessToken, DeviceID: out.DeviceID, Password: password}
}

// Do calls the client-server API as u (an empty token: no auth).
func (h *Homeserver) Do(ctx context.Context, token, method, path string, body, out any) error {
	return h.do(ctx, method, path, token, body, out)
}

func (h *Homeserver) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.URL+path, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
