package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/internal/unixsock"
)

// The operator API answers only a peer whose uid it read and accepts.
func TestAdminPeerChecks(t *testing.T) {
	h := (&Gateway{}).AdminHandler()
	tests := []struct {
		name string
		ctx  func(context.Context) context.Context
		want string
	}{
		{"no peer (not the unix socket)", func(c context.Context) context.Context { return c }, AdminReasonPeerUnknown},
		{"unreadable peer", func(c context.Context) context.Context {
			return context.WithValue(c, adminPeerKey{}, adminPeer{UID: -1, err: errors.New("no creds")})
		}, AdminReasonPeerUnknown},
		{"another uid", func(c context.Context) context.Context {
			return context.WithValue(c, adminPeerKey{}, adminPeer{UID: os.Getuid() + 4242})
		}, AdminReasonPeerForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/v1/pairings", nil)
			req = req.WithContext(tc.ctx(req.Context()))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), tc.want) {
				t.Fatalf("%d %s, want 403 %s", rec.Code, rec.Body.String(), tc.want)
			}
		})
	}
}

// Something already at the socket's path that is not a socket (a link
// planted to redirect it, a file) is refused, never followed or removed.
func TestAdminSocketRefusesWhatIsThere(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o600)
	for name, plant := range map[string]func(string) error{
		"symlink": func(p string) error { return os.Symlink(target, p) },
		"file":    func(p string) error { return os.WriteFile(p, nil, 0o600) },
		"folder":  func(p string) error { return os.Mkdir(p, 0o700) },
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), AdminSocketName)
			if err := plant(p); err != nil {
				t.Fatal(err)
			}
			if ln, err := unixsock.Listen(p); err == nil {
				ln.Close()
				t.Fatal("listened over what was there")
			}
			if b, _ := os.ReadFile(target); string(b) != "keep" {
				t.Fatal("the link's target was touched")
			}
		})
	}
	// A stale socket is replaced.
	p := filepath.Join(dir, AdminSocketName)
	ln, err := unixsock.Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // SetUnlinkOnClose(false): the socket file stays, stale
	ln, err = unixsock.Listen(p)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
}
