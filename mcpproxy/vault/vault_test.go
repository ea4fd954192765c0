package vault

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// setup returns a server on a workspace holding hostile links to a folder
// outside it, and the outside folder.
func setup(t *testing.T) (*Server, string, string) {
	t.Helper()
	base := t.TempDir()
	ws, out := filepath.Join(base, "ws"), filepath.Join(base, "out")
	must(t, os.MkdirAll(ws+"/sub", 0o755))
	must(t, os.MkdirAll(out, 0o755))
	must(t, os.WriteFile(ws+"/notes.md", []byte("one\ntwo\nthree\n"), 0o644))
	must(t, os.WriteFile(out+"/secret", []byte("secret"), 0o644))
	must(t, os.Symlink(out+"/secret", ws+"/link-file"))
	must(t, os.Symlink(out, ws+"/link-dir"))
	must(t, os.Symlink("../../out/secret", ws+"/sub/climb"))
	must(t, os.Symlink(out+"/planted", ws+"/planted"))
	must(t, os.Link(out+"/secret", ws+"/hard"))
	must(t, os.Symlink("notes.md", ws+"/inner"))
	s, err := New(ws, Options{MaxRead: 64, MaxWrite: 64})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return s, ws, out
}

func call(t *testing.T, s *Server, name string, args map[string]any) (string, bool) {
	t.Helper()
	raw, err := json.Marshal(args)
	must(t, err)
	res, err := s.Call(context.Background(), name, raw)
	must(t, err)
	return res.Content[0].(*mcp.TextContent).Text, res.IsError
}

func TestVaultTools(t *testing.T) {
	s, ws, out := setup(t)
	tests := []struct {
		name    string
		tool    string
		args    map[string]any
		wantErr bool
		has     string
	}{
		{"read", "read_file", map[string]any{"path": "notes.md"}, false, "two"},
		{"read head", "read_file", map[string]any{"path": "notes.md", "head": 1}, false, "one\n"},
		{"read tail", "read_file", map[string]any{"path": "notes.md", "tail": 1}, false, "three"},
		{"read through link out", "read_file", map[string]any{"path": "link-file"}, true, "symbolic link"},
		{"read via linked dir", "read_file", map[string]any{"path": "link-dir/secret"}, true, ""},
		{"read climbing link", "read_file", map[string]any{"path": "sub/climb"}, true, ""},
		{"read dotdot", "read_file", map[string]any{"path": "../out/secret"}, true, ""},
		{"read absolute", "read_file", map[string]any{"path": out + "/secret"}, true, "relative"},
		{"read hard link", "read_file", map[string]any{"path": "hard"}, true, "hard link"},
		{"read inner link refused", "read_file", map[string]any{"path": "inner"}, true, "symbolic link"},
		{"read proc", "read_file", map[string]any{"path": "/proc/self/root/etc/passwd"}, true, ""},
		{"read folder", "read_file", map[string]any{"path": "sub"}, true, "regular"},
		{"write", "write_file", map[string]any{"path": "new.txt", "content": "x"}, false, "Successfully"},
		{"write too big", "write_file", map[string]any{"path": "big.txt", "content": strings.Repeat("x", 65)}, true, "larger"},
		{"write planted link", "write_file", map[string]any{"path": "planted", "content": "x"}, true, "symbolic link"},
		{"write link file", "write_file", map[string]any{"path": "link-file", "content": "x"}, true, "symbolic link"},
		{"write under linked dir", "write_file", map[string]any{"path": "link-dir/new", "content": "x"}, true, ""},
		{"write hard link", "write_file", map[string]any{"path": "hard", "content": "x"}, true, "hard link"},
		{"write missing content", "write_file", map[string]any{"path": "x"}, true, "content"},
		{"edit", "edit_file", map[string]any{"path": "notes.md", "edits": []map[string]any{{"oldText": "two", "newText": "2"}}}, false, "Applied 1"},
		{"edit missing text", "edit_file", map[string]any{"path": "notes.md", "edits": []map[string]any{{"oldText": "zzz", "newText": "2"}}}, true, "not found"},
		{"mkdir", "create_directory", map[string]any{"path": "a/b/c"}, false, "created"},
		{"mkdir through link", "create_directory", map[string]any{"path": "link-dir/x"}, true, ""},
		{"list", "list_directory", map[string]any{"path": "."}, false, "[DIR] sub"},
		{"list linked dir", "list_directory", map[string]any{"path": "link-dir"}, true, "symbolic link: link-dir"},
		{"tree", "directory_tree", map[string]any{"path": "."}, false, `"name": "sub"`},
		{"search", "search_files", map[string]any{"path": ".", "pattern": "NOTES"}, false, "notes.md"},
		{"info", "get_file_info", map[string]any{"path": "link-file"}, false, "isSymlink: true"},
		{"move", "move_file", map[string]any{"source": "new.txt", "destination": "sub/moved.txt"}, false, "Successfully"},
		{"move onto existing", "move_file", map[string]any{"source": "sub/moved.txt", "destination": "notes.md"}, true, "exists"},
		{"move out", "move_file", map[string]any{"source": "sub/moved.txt", "destination": "../out/x"}, true, ""},
		{"move into linked dir", "move_file", map[string]any{"source": "sub/moved.txt", "destination": "link-dir/x"}, true, ""},
		{"move hard link", "move_file", map[string]any{"source": "hard", "destination": "hard2"}, true, "hard link"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text, isErr := call(t, s, tc.tool, tc.args)
			if isErr != tc.wantErr || !strings.Contains(text, tc.has) {
				t.Fatalf("%s: error=%v text=%q; want error=%v containing %q", tc.tool, isErr, text, tc.wantErr, tc.has)
			}
		})
	}
	b, err := os.ReadFile(out + "/secret")
	must(t, err)
	if string(b) != "secret" {
		t.Fatalf("outside file changed: %q", b)
	}
	for _, name := range []string{"planted", "new", "x"} {
		if _, err := os.Lstat(filepath.Join(out, name)); err == nil {
			t.Fatalf("%s was created outside the workspace", name)
		}
	}
	if b, _ := os.ReadFile(ws + "/notes.md"); string(b) != "one\n2\nthree\n" {
		t.Fatalf("edit result %q", b)
	}
	left, _ := filepath.Glob(ws + "/.*parachute-*")
	if len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
