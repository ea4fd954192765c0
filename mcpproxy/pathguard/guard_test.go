package pathguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// layout builds a vault with the workspace users/a, a sibling users/a_evil,
// a folder outside the vault and hostile links inside the workspace.
func layout(t *testing.T) (vault, outside string) {
	t.Helper()
	base := t.TempDir()
	vault = filepath.Join(base, "vault")
	outside = filepath.Join(base, "outside")
	ws := filepath.Join(vault, "users", "a")
	for _, d := range []string{ws + "/sub", ws + "/.parachute/hooks", vault + "/users/a_evil", outside} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(ws+"/notes.md", []byte("hi"), 0o644))
	must(t, os.WriteFile(outside+"/secret", []byte("s"), 0o644))
	must(t, os.Symlink(outside+"/secret", ws+"/link-file"))
	must(t, os.Symlink(outside, ws+"/link-dir"))
	must(t, os.Symlink("../../../../outside/secret", ws+"/sub/climb"))
	must(t, os.Symlink(outside+"/not-yet", ws+"/dangling"))
	must(t, os.Symlink("notes.md", ws+"/inner"))
	must(t, os.Symlink("/proc/self/root/etc", ws+"/proc-link"))
	must(t, os.Link(outside+"/secret", ws+"/hard"))
	must(t, os.Symlink("loop2", ws+"/loop1"))
	must(t, os.Symlink("loop1", ws+"/loop2"))
	return vault, outside
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	vault, _ := layout(t)
	g, err := New(vault, "users/a", "/workspace")
	must(t, err)
	tests := []struct {
		name, raw string
		resolved  string // "" means no vault-relative path
		inside    bool
		errHas    string
	}{
		{"relative file", "notes.md", "users/a/notes.md", true, ""},
		{"client root", "/workspace", "users/a", true, ""},
		{"client root file", "/workspace/notes.md", "users/a/notes.md", true, ""},
		{"client root prefix sibling", "/workspace_evil/x", "", false, ""},
		{"dot slash", "./notes.md", "users/a/notes.md", true, ""},
		{"double slash", "sub//../notes.md", "users/a/notes.md", true, ""},
		{"dotdot out", "../../../etc/passwd", "", false, ""},
		{"dotdot to sibling", "../a_evil/x", "users/a_evil/x", false, ""},
		{"absolute outside", "/etc/passwd", "", false, ""},
		{"absolute host sibling", vault + "/users/a_evil/x", "users/a_evil/x", false, ""},
		{"absolute host workspace", vault + "/users/a/notes.md", "users/a/notes.md", true, ""},
		{"symlinked file out", "link-file", "", false, ""},
		{"symlinked dir out", "link-dir/secret", "", false, ""},
		{"relative link climbing out", "sub/climb", "", false, ""},
		{"dangling link to outside", "dangling", "", false, ""},
		{"new file under symlinked parent", "link-dir/new.txt", "", false, ""},
		{"inner link", "inner", "users/a/notes.md", true, ""},
		{"proc self root", "/proc/self/root/etc/passwd", "", false, ""},
		{"link to proc self root", "proc-link/passwd", "", false, ""},
		{"percent dotdot literal", "%2e%2e/%2e%2e/x", "users/a/%2e%2e/%2e%2e/x", true, ""},
		{"double encoded literal", "%252e%252e/x", "users/a/%252e%252e/x", true, ""},
		{"NFD folded to NFC", "cafe\u0301.md", "users/a/caf\u00e9.md", true, ""},
		{"hooks case variant kept", ".PARACHUTE/Hooks/x.sh", "users/a/.PARACHUTE/Hooks/x.sh", true, ""},
		{"hooks aliases", "./.parachute//hooks/../hooks/x", "users/a/.parachute/hooks/x", true, ""},
		{"new nested file", "new/dir/file.txt", "users/a/new/dir/file.txt", true, ""},
		{"empty", "", "", false, "empty path"},
		{"NUL", "notes.md\x00.txt", "", false, "NUL"},
		{"invalid UTF-8", "bad\xff.md", "", false, "UTF-8"},
		{"too long", strings.Repeat("a/", MaxLen), "", false, "too long"},
		{"link loop", "loop1", "", false, "symbolic links"},
		{"through a file", "notes.md/x", "", false, "not a directory"},
		{"hard link to outside file", "hard", "", false, "hard link"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := g.Resolve("path", tc.raw, "read")
			if p.Facts.Raw != tc.raw || p.Facts.Arg != "path" || p.Facts.Access != "read" {
				t.Fatalf("facts do not carry the call: %+v", p.Facts)
			}
			if tc.errHas != "" {
				if !strings.Contains(p.Facts.Error, tc.errHas) {
					t.Fatalf("error = %q, want it to contain %q", p.Facts.Error, tc.errHas)
				}
				if p.Facts.InsideWorkspace || p.Host != "" {
					t.Fatalf("a failed path must not be inside: %+v", p)
				}
				return
			}
			if p.Facts.Error != "" {
				t.Fatalf("unexpected error %q", p.Facts.Error)
			}
			if p.Facts.Resolved != tc.resolved || p.Facts.InsideWorkspace != tc.inside {
				t.Fatalf("resolved %q inside %v, want %q inside %v", p.Facts.Resolved, p.Facts.InsideWorkspace, tc.resolved, tc.inside)
			}
			if tc.inside {
				want := filepath.Join(g.HostRoot(), p.Rel)
				if p.Host != want {
					t.Fatalf("host %q, want %q", p.Host, want)
				}
			}
		})
	}
}

func TestNewRefusesBadWorkspaces(t *testing.T) {
	vault, outside := layout(t)
	must(t, os.Symlink(outside, filepath.Join(vault, "users", "linked")))
	for _, tc := range []struct{ name, vault, ws, client string }{
		{"relative vault", "vault", "users/a", ""},
		{"missing workspace", vault, "users/nobody", ""},
		{"workspace is vault", vault, ".", ""},
		{"workspace climbs", vault, "../outside", ""},
		{"workspace is a link out", vault, "users/linked", ""},
		{"relative client root", vault, "users/a", "workspace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.vault, tc.ws, tc.client); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

// A host-mode guard (stdio proxy on the host): the client names the
// workspace by its host folder.
func TestResolveHostClientRoot(t *testing.T) {
	vault, _ := layout(t)
	host := filepath.Join(vault, "users", "a")
	g, err := New(vault, "users/a", host)
	must(t, err)
	p := g.Resolve("path", host+"/sub/../notes.md", "write")
	if p.Facts.Resolved != "users/a/notes.md" || !p.Facts.InsideWorkspace || p.Rel != "notes.md" {
		t.Fatalf("got %+v", p)
	}
	p = g.Resolve("path", host+"_evil/x", "write")
	if p.Facts.InsideWorkspace {
		t.Fatalf("sibling prefix counted as inside: %+v", p)
	}
}
