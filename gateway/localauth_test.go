package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/sessions"
)

// TestLocalConnectorTokenEnforced: with token_env set, the local
// connector the gateway builds from the config answers a request without
// the bearer token, or with a wrong one, with 401, never as the owner; and
// a token_env naming an unset variable refuses to start.
func TestLocalConnectorTokenEnforced(t *testing.T) {
	const token = "local-token-0123456789"
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
admin: {listen: "127.0.0.1:0"}
connectors:
  dev: {type: local, listen: "127.0.0.1:0", owners: [owner], token_env: LOCAL_TOKEN}
`, dir, policyDir())))
	if err != nil {
		t.Fatal(err)
	}
	opts := gateway.Options{Logger: zerolog.Nop(), Runtimes: map[string]sessions.Sandboxes{"containerd": &echoRuntime{}}}
	if _, err := gateway.New(context.Background(), cfg, opts); err == nil || !strings.Contains(err.Error(), "LOCAL_TOKEN") {
		t.Fatalf("gateway with token_env naming an unset variable: %v, want an error naming LOCAL_TOKEN", err)
	}
	opts.Getenv = func(k string) string {
		if k == "LOCAL_TOKEN" {
			return token
		}
		return ""
	}
	g, err := gateway.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	conn := g.Connectors()[0].(*local.Connector)
	<-conn.Listening()
	for _, tc := range []struct {
		name, auth string
		status     int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer wrong-token-0123456789", 401},
		{"right token", "Bearer " + token, 200},
	} {
		req, _ := http.NewRequest("POST", "http://"+conn.Addr().String()+"/v1/messages",
			bytes.NewReader([]byte(`{"user":"owner","text":"/whoami"}`)))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
}
