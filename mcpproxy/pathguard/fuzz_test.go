package pathguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzResolve checks the invariants that policy relies on for any input:
// a path reported inside the workspace has a host path beneath the workspace
// folder that agrees with its vault-relative form, and failures are never
// inside.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"notes.md", "../x", "/workspace/../etc", "link-dir/x", "%2e%2e/x",
		".PARACHUTE/Hooks/x.sh", "a\x00b", "\xff", "//", "/proc/self/root/etc",
	} {
		f.Add(s)
	}
	base := f.TempDir()
	vault := filepath.Join(base, "vault")
	ws := filepath.Join(vault, "users", "a")
	if err := os.MkdirAll(ws+"/sub", 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(base, ws+"/link-dir"); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("../../..", ws+"/sub/up"); err != nil {
		f.Fatal(err)
	}
	g, err := New(vault, "users/a", "/workspace")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p := g.Resolve("path", raw, "read")
		if p.Facts.Error != "" {
			if p.Facts.InsideWorkspace || p.Host != "" || p.Facts.Resolved != "" {
				t.Fatalf("failed path carries a location: %+v", p)
			}
			return
		}
		if strings.IndexByte(raw, 0) >= 0 || !utf8.ValidString(raw) {
			t.Fatalf("accepted a NUL or invalid UTF-8 path %q", raw)
		}
		if !p.Facts.InsideWorkspace {
			return
		}
		if p.Host != g.HostRoot() && !strings.HasPrefix(p.Host, g.HostRoot()+"/") {
			t.Fatalf("inside but host path %q is not under %q", p.Host, g.HostRoot())
		}
		if p.Facts.Resolved != "users/a" && !strings.HasPrefix(p.Facts.Resolved, "users/a/") {
			t.Fatalf("inside but resolved %q is not under users/a", p.Facts.Resolved)
		}
		if filepath.Join(vault, p.Facts.Resolved) != p.Host {
			t.Fatalf("resolved %q and host %q disagree", p.Facts.Resolved, p.Host)
		}
	})
}
