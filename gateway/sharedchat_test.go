package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/sessions"
)

// writerRuntime's agent writes <identity>.txt into the workspace through
// the session socket's MCP tools, as a real agent would, and replies with
// what the gateway answered.
type writerRuntime struct{ echoRuntime }

type writerSandbox struct{ spec runtime.Spec }

func (r *writerRuntime) Start(ctx context.Context, s runtime.Spec) (runtime.Sandbox, error) {
	if _, err := r.echoRuntime.Start(ctx, s); err != nil {
		return nil, err
	}
	return &writerSandbox{spec: s}, nil
}

func (s *writerSandbox) ID() string                 { return s.spec.SessionID }
func (s *writerSandbox) Stop(context.Context) error { return nil }
func (s *writerSandbox) Exec(ctx context.Context, t runtime.Turn) (runtime.Result, error) {
	var in struct {
		Identity string `json:"identity"`
		Text     string `json:"text"`
	}
	if err := json.NewDecoder(t.Stdin).Decode(&in); err != nil {
		return runtime.Result{}, err
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(s.spec.SocketDir, sessions.SocketName))
	}}}
	c := mcp.NewClient(&mcp.Implementation{Name: "writer", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://parachute/mcp", HTTPClient: hc, DisableStandaloneSSE: true}, nil)
	if err != nil {
		return runtime.Result{}, err
	}
	defer cs.Close()
	name := strings.ReplaceAll(in.Identity, ":", "-") + ".txt"
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": "/workspace/" + name, "content": in.Text}})
	if err != nil {
		return runtime.Result{}, err
	}
	var b strings.Builder
	for _, ct := range res.Content {
		if tc, ok := ct.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	fmt.Fprintf(t.Stdout, "wrote %s: error=%v %s", name, res.IsError, b.String())
	return runtime.Result{}, nil
}

func sendIn(t *testing.T, c *local.Connector, user, chat, text string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"user": user, "text": text, "chat": chat, "chat_kind": "group", "mentioned": true})
	resp, err := http.Post("http://"+c.Addr().String()+"/v1/messages", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Reply string `json:"reply"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out.Reply
}

// TestSharedChatThreeRoles: an owner, a member and a read-only guest in one
// group of a connector with shared_chat_sessions share one sandboxed
// session on the chat's workspace; every tool call is decided and recorded
// for its own sender (the guest's write refused as read-only), and the
// files land in the chat's folder, not in anyone's own.
func TestSharedChatThreeRoles(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s
admin: {listen: "127.0.0.1:0"}
connectors:
  dev:
    type: local
    listen: 127.0.0.1:0
    owners: [olivia]
    token_env: GW_LOCAL_TOKEN
    allowed_users: [olivia, mia, gus]
    shared_chat_sessions: true
    allow_direct: true
    default_trust_level: direct
users:
  local:gus: {role: guest}
roles:
  guest: {read_only: true}
`, dir, policyDir())))
	if err != nil {
		t.Fatal(err)
	}
	rt := &writerRuntime{}
	_, conn, _ := startWith(t, cfg, map[string]sessions.Sandboxes{"containerd": rt, "direct": &echoRuntime{}})
	for _, tc := range []struct{ user, want string }{
		{"olivia", "error=false"},
		{"mia", "error=false"},
		{"gus", "read-only-mode"},
	} {
		if got := sendIn(t, conn, tc.user, "g1", "from "+tc.user); !strings.Contains(got, tc.want) {
			t.Fatalf("%s in the shared chat: %q; want %s", tc.user, got, tc.want)
		}
	}
	rt.mu.Lock()
	starts := rt.starts
	rt.mu.Unlock()
	if starts != 1 {
		t.Fatalf("%d sandboxes for one shared chat", starts)
	}
	chatWS := sessions.ChatWorkspace("dev", "g1")
	for _, u := range []string{"olivia", "mia"} {
		if b, err := os.ReadFile(filepath.Join(cfg.Vault, chatWS, "local-"+u+".txt")); err != nil || string(b) != "from "+u {
			t.Errorf("%s's file in the chat workspace: %q %v", u, b, err)
		}
		if _, err := os.Stat(filepath.Join(cfg.Vault, "users", "local%3A"+u)); err == nil {
			t.Errorf("%s's own workspace was made for a shared chat", u)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Vault, chatWS, "local-gus.txt")); err == nil {
		t.Error("the read-only guest wrote into the chat workspace")
	}
	tools := map[string]string{}
	var starts2 int
	err = audit.Read(cfg.Audit.Dir, audit.ReadOptions{}, func(e audit.Entry) error {
		r := e.Record
		switch r.Kind {
		case "tool":
			if r.Workspace != chatWS || r.TrustLevel != "sandboxed" {
				t.Errorf("tool record %+v not on the chat's sandboxed session", r)
			}
			tools[r.User] = r.Decision + ":" + strings.Join(r.Reasons, ",")
		case "session-start":
			starts2++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"local:olivia": "allow:", "local:mia": "allow:", "local:gus": "deny:read-only-mode"}
	for u, w := range want {
		if tools[u] != w {
			t.Errorf("tool record of %s: %q; want %q (all: %v)", u, tools[u], w, tools)
		}
	}
	if starts2 != 1 {
		t.Errorf("%d session-start records; want 1", starts2)
	}
}
