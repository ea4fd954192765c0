package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/sessions"
)

func readyz(t *testing.T, g *gateway.Gateway) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + g.AdminAddr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// With the audit folder on a full file system the gateway is not ready and
// says why; once space is back it is ready again and the log holds a gap
// record counting what was refused.
func TestReadyzFollowsTheAuditLog(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a tmpfs needs root, and CI=true")
		}
		t.Skip("skipping: mounting a tmpfs needs root (set CI=true to make this a failure)")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
audit: {dir: %[3]s/audit}
admin: {listen: "127.0.0.1:0"}
connectors:
  dev: {type: local, listen: 127.0.0.1:0, allowed_users: [alice]}
roles:
  member: {messages_per_minute: 6000000, message_burst: 100000}
`, dir, policyDir(), mnt)))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := local.New(local.Options{Name: "dev", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: zerolog.Nop(),
		Runtimes: map[string]sessions.Sandboxes{"containerd": &echoRuntime{}}, Connectors: []connectors.Connector{conn}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitReady(t, g, done)
	if code, body := readyz(t, g); code != 200 {
		t.Fatalf("readyz before the outage: %d %s", code, body)
	}
	send(t, conn, "alice", "hello")

	filler, _ := os.Create(filepath.Join(mnt, "filler"))
	buf := make([]byte, 4096)
	for {
		if _, err := filler.Write(buf); err != nil {
			break
		}
	}
	filler.Close()
	// The current file's last page may take a record or two more.
	code, body := 200, ""
	for i := 0; code == 200 && i < 50; i++ {
		send(t, conn, "alice", "while full")
		code, body = readyz(t, g)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "audit log unavailable") || !strings.Contains(body, "no space left on device") {
		t.Fatalf("readyz with a full audit disk: %d %q", code, body)
	}

	os.Remove(filepath.Join(mnt, "filler"))
	send(t, conn, "alice", "after")
	if code, body := readyz(t, g); code != 200 {
		t.Fatalf("readyz after space came back: %d %s", code, body)
	}
	var gaps []audit.Record
	audit.Read(cfg.Audit.Dir, audit.ReadOptions{}, func(e audit.Entry) error {
		if e.Record.Kind == audit.KindGap {
			gaps = append(gaps, e.Record)
		}
		return nil
	})
	if len(gaps) != 1 || gaps[0].Detail["refused"] == "0" || gaps[0].Detail["from"] == "" {
		t.Fatalf("gap records after the outage: %+v", gaps)
	}
}
