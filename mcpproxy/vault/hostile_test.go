package vault

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/internal/beneath"
	"github.com/parachute-gateway/parachute/test/prereq"
)

// needOrSkip skips a test that lacks a prerequisite (root, a mount), or
// fails it under CI=true, where every prerequisite must be there.
func needOrSkip(t testing.TB, what string) {
	t.Helper()
	prereq.Unavailable(t, "", what)
}

// modes are the two resolvers: openat2, and the component walk used where
// openat2 is missing. Every hostile case runs against both.
var modes = []struct {
	name string
	walk bool
}{{"openat2", false}, {"walk", true}}

// hostileWS is a workspace with hostile entries, the folder outside it and
// whether the root-only entries (bind mounts, device node) were made.
type hostileWS struct {
	ws, out string
	root    bool
}

const canary = "CANARY-outside"

func newHostileWS(t *testing.T) hostileWS {
	t.Helper()
	base := t.TempDir()
	h := hostileWS{ws: filepath.Join(base, "ws"), out: filepath.Join(base, "out")}
	for _, d := range []string{h.ws + "/sub", h.ws + "/.parachute/hooks", h.out + "/dir"} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(h.ws+"/notes.md", []byte("notes\n"), 0o644))
	must(t, os.WriteFile(h.ws+"/sub/inside.md", []byte("inside\n"), 0o644))
	must(t, os.WriteFile(h.ws+"/.parachute/settings", []byte("settings\n"), 0o644))
	must(t, os.WriteFile(h.out+"/secret", []byte(canary), 0o644))
	must(t, os.WriteFile(h.out+"/dir/file", []byte(canary), 0o644))
	must(t, os.WriteFile(h.out+"/bound", []byte(canary), 0o644))
	must(t, os.Symlink("sub", h.ws+"/linkdir"))                  // intermediate link, inside
	must(t, os.Symlink("./.parachute/hooks", h.ws+"/hookslink")) // link to the hooks
	must(t, os.Symlink("notes.md", h.ws+"/inner"))               // last-component link, inside
	must(t, os.Symlink(h.out, h.ws+"/sub/outlink"))              // intermediate link, outside
	must(t, os.Symlink(h.out+"/planted", h.ws+"/planted"))       // dangling link as a write target
	must(t, os.Link(h.out+"/secret", h.ws+"/hard"))              // hard link to a file outside
	must(t, unix.Mkfifo(h.ws+"/fifo", 0o644))                    // would block an open for reading
	l, err := net.Listen("unix", h.ws+"/sock")
	must(t, err)
	t.Cleanup(func() { l.Close() })
	if os.Geteuid() == 0 {
		h.root = true
		must(t, unix.Mknod(h.ws+"/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, os.MkdirAll(h.ws+"/mnt", 0o755))
		must(t, os.WriteFile(h.ws+"/bindfile", nil, 0o644))
		bind(t, h.out+"/dir", h.ws+"/mnt")
		bind(t, h.out+"/bound", h.ws+"/bindfile")
	}
	return h
}

// bind bind-mounts src at dst until the test ends.
func bind(t *testing.T, src, dst string) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		needOrSkip(t, "bind mount (root with CAP_SYS_ADMIN): "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dst, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dst, err)
		}
	})
}

func newServer(t *testing.T, ws string, walk bool, opts Options) *Server {
	t.Helper()
	opts.walk = walk
	s, err := New(ws, opts)
	must(t, err)
	t.Cleanup(func() { s.Close() })
	if s.root.Walking() != walk {
		t.Fatalf("resolver walking=%v, want %v", s.root.Walking(), walk)
	}
	return s
}

// callRaw calls tool with raw JSON arguments and fails if it does not
// return within a few seconds (a FIFO must not hang a call).
func callRaw(t *testing.T, s *Server, tool, raw string) (string, bool) {
	t.Helper()
	type result struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := s.Call(context.Background(), tool, json.RawMessage(raw))
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		must(t, r.err)
		return r.res.Content[0].(*mcp.TextContent).Text, r.res.IsError
	case <-time.After(5 * time.Second):
		t.Fatalf("%s %s did not return", tool, raw)
		return "", false
	}
}

func js(v map[string]any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func pathArg(p string) string { return js(map[string]any{"path": p}) }
func writeArg(p string) string {
	return js(map[string]any{"path": p, "content": "pwned"})
}
func moveArg(src, dst string) string {
	return js(map[string]any{"source": src, "destination": dst})
}

type hostileVaultCase struct {
	name string
	tool string
	raw  string
	want string // text the error must contain; "" means the call must succeed
	root bool   // needs the root-only entries
}

var hostileVaultCases = []hostileVaultCase{
	// Symlinks at any component, inside or out.
	{"intermediate link inside", "read_file", pathArg("linkdir/inside.md"), "symbolic link: linkdir", false},
	{"intermediate link outside", "read_file", pathArg("sub/outlink/secret"), "symbolic link: sub/outlink", false},
	{"write under intermediate link", "write_file", writeArg("linkdir/new.md"), "symbolic link: linkdir", false},
	{"mkdir under intermediate link", "create_directory", pathArg("linkdir/new"), "symbolic link: linkdir", false},
	{"list through link", "list_directory", pathArg("sub/outlink"), "symbolic link: sub/outlink", false},
	{"tree through link", "directory_tree", pathArg("linkdir"), "symbolic link: linkdir", false},
	{"search through link", "search_files", js(map[string]any{"path": "sub/outlink", "pattern": "secret"}), "symbolic link: sub/outlink", false},
	{"info through link", "get_file_info", pathArg("sub/outlink/secret"), "symbolic link: sub/outlink", false},
	{"last component link read", "read_file", pathArg("inner"), "symbolic link: inner", false},
	{"last component link write", "write_file", writeArg("inner"), "symbolic link: inner", false},
	{"dangling link write", "write_file", writeArg("planted"), "symbolic link: planted", false},
	{"edit through link", "edit_file", js(map[string]any{"path": "inner", "edits": []any{map[string]any{"oldText": "notes", "newText": "x"}}}), "symbolic link: inner", false},
	{"move a link", "move_file", moveArg("inner", "inner2"), "symbolic link: inner", false},
	{"move into linked folder", "move_file", moveArg("notes.md", "sub/outlink/stolen"), "symbolic link: sub/outlink", false},
	{"hooks link write", "write_file", writeArg("hookslink/pre-session.sh"), "symbolic link: hookslink", false},
	{"hooks link mkdir", "create_directory", pathArg("hookslink/x"), "symbolic link: hookslink", false},
	{"hooks link move", "move_file", moveArg("notes.md", "hookslink/pre-session.sh"), "symbolic link: hookslink", false},
	{"climb out", "read_file", pathArg("../out/secret"), "leaves the root", false},
	{"climb out after folding", "read_file", pathArg("sub/../../out/secret"), "leaves the root", false},
	{"absolute", "read_file", pathArg("/etc/passwd"), "relative", false},
	{"proc magic link", "read_file", pathArg("/proc/self/root/etc/passwd"), "relative", false},
	// Only regular files with one link.
	{"fifo read returns at once", "read_file", pathArg("fifo"), "FIFO", false},
	{"fifo write", "write_file", writeArg("fifo"), "FIFO", false},
	{"fifo move", "move_file", moveArg("fifo", "fifo2"), "FIFO", false},
	{"socket read", "read_file", pathArg("sock"), "socket", false},
	{"device read", "read_file", pathArg("null"), "device", true},
	{"device write", "write_file", writeArg("null"), "device", true},
	{"hard link read", "read_file", pathArg("hard"), "hard link", false},
	{"hard link write", "write_file", writeArg("hard"), "hard link", false},
	{"hard link edit", "edit_file", js(map[string]any{"path": "hard", "edits": []any{map[string]any{"oldText": "C", "newText": "x"}}}), "hard link", false},
	{"hard link move", "move_file", moveArg("hard", "hard2"), "hard link", false},
	{"folder read", "read_file", pathArg("sub"), "folder", false},
	{"workspace read", "read_file", pathArg("."), "workspace folder", false},
	{"write onto a folder", "write_file", writeArg("sub"), "folder", false},
	{"file as a folder", "read_file", pathArg("notes.md/x"), "not a folder: notes.md", false},
	// Mounts inside the workspace are not crossed.
	{"bind mount read", "read_file", pathArg("mnt/file"), "mount point: mnt", true},
	{"bind mount write", "write_file", writeArg("mnt/new"), "mount point: mnt", true},
	{"bind mount edit", "edit_file", js(map[string]any{"path": "mnt/file", "edits": []any{map[string]any{"oldText": "C", "newText": "x"}}}), "mount point: mnt", true},
	{"bind mount mkdir", "create_directory", pathArg("mnt/x"), "mount point: mnt", true},
	{"bind mount list", "list_directory", pathArg("mnt"), "mount point: mnt", true},
	{"bind mount info", "get_file_info", pathArg("mnt"), "mount point: mnt", true},
	{"bind mount in tree", "directory_tree", pathArg("."), "mount point: mnt", true},
	{"bind mount in search", "search_files", js(map[string]any{"path": ".", "pattern": "file"}), "mount point: mnt", true},
	{"bind mount move into", "move_file", moveArg("notes.md", "mnt/stolen"), "mount point: mnt", true},
	{"bind mounted file read", "read_file", pathArg("bindfile"), "mount point: bindfile", true},
	{"bind mounted file write", "write_file", writeArg("bindfile"), "mount point: bindfile", true},
	// .parachute is read-only, in any spelling.
	{".parachute write", "write_file", writeArg(".parachute/x"), "refusing to change .parachute", false},
	{".parachute hooks write", "write_file", writeArg(".parachute/hooks/pre-session.sh"), "refusing to change .parachute", false},
	{".PARACHUTE write", "write_file", writeArg(".PARACHUTE/x"), "refusing to change .parachute", false},
	{".Parachute/Hooks write", "write_file", writeArg(".Parachute/Hooks/pre-session.sh"), "refusing to change .parachute", false},
	{".parachute via dotdot", "write_file", writeArg("sub/../.parachute/hooks/x"), "refusing to change .parachute", false},
	{".parachute via dot slash", "write_file", writeArg("./.parachute//hooks/x"), "refusing to change .parachute", false},
	{".parachute edit", "edit_file", js(map[string]any{"path": ".parachute/settings", "edits": []any{map[string]any{"oldText": "settings", "newText": "x"}}}), "refusing to change .parachute", false},
	{".parachute mkdir", "create_directory", pathArg(".parachute/new"), "refusing to change .parachute", false},
	{".parachute mkdir itself", "create_directory", pathArg(".parachute"), "refusing to change .parachute", false},
	{".parachute move into", "move_file", moveArg("notes.md", ".parachute/hooks/pre-session.sh"), "refusing to change .parachute", false},
	{".parachute move out", "move_file", moveArg(".parachute/settings", "stolen"), "refusing to change .parachute", false},
	{".parachute move itself", "move_file", moveArg(".parachute", "p"), "refusing to change .parachute", false},
	{".parachute replaced", "move_file", moveArg("sub", ".parachute"), "refusing to change .parachute", false},
	{".parachute read allowed", "read_file", pathArg(".parachute/settings"), "", false},
	{".parachute list allowed", "list_directory", pathArg(".parachute"), "", false},
	// One parse: names exactly as the schema spells them, once, valid UTF-8.
	{"Path", "write_file", `{"Path":".parachute/hooks/pre-session.sh","content":"echo pwned"}`, `unknown object member: "Path"`, false},
	{"PATH", "write_file", `{"PATH":"x","content":"y"}`, `unknown object member: "PATH"`, false},
	{"Content", "write_file", `{"path":"x","Content":"y"}`, `unknown object member: "Content"`, false},
	{"edit Path", "edit_file", `{"Path":"notes.md","edits":[{"oldText":"notes","newText":"x"}]}`, `unknown object member: "Path"`, false},
	{"edit OldText", "edit_file", `{"path":"notes.md","edits":[{"OldText":"notes","newText":"x"}]}`, `unknown object member: "OldText"`, false},
	{"mkdir Path", "create_directory", `{"Path":".parachute/hooks/x"}`, `unknown object member: "Path"`, false},
	{"move Source Destination", "move_file", `{"Source":"notes.md","Destination":".parachute/hooks/run.sh"}`, `unknown object member`, false},
	{"read Paths", "read_multiple_files", `{"Paths":["notes.md"]}`, `unknown object member: "Paths"`, false},
	{"duplicate path", "write_file", `{"path":"ok.md","path":".parachute/hooks/x","content":"y"}`, "duplicate object member", false},
	{"unknown argument", "read_file", `{"path":"notes.md","follow":true}`, `unknown object member: "follow"`, false},
	{"invalid UTF-8", "write_file", "{\"path\":\"a\xff.md\",\"content\":\"y\"}", "invalid UTF-8", false},
	{"lone surrogate", "write_file", `{"path":"a\ud800.md","content":"y"}`, "surrogate", false},
	{"not an object", "read_file", `["notes.md"]`, "invalid arguments", false},
	{"error names the arguments", "write_file", `{"Path":"x","content":"y"}`, "write_file takes content, path", false},
	// The plain calls still work.
	{"read", "read_file", pathArg("notes.md"), "", false},
	{"write", "write_file", writeArg("sub/new.md"), "", false},
	{"mkdir", "create_directory", pathArg("sub/a/b"), "", false},
	{"move", "move_file", moveArg("sub/new.md", "sub/a/moved.md"), "", false},
	{"move onto existing", "move_file", moveArg("sub/a/moved.md", "notes.md"), "already exists", false},
	{"tree", "directory_tree", pathArg("sub"), "", false},
	{"search", "search_files", js(map[string]any{"path": "sub", "pattern": "inside"}), "", false},
	{"info of a link", "get_file_info", pathArg("inner"), "", false},
}

func TestHostileVault(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := newHostileWS(t)
			s := newServer(t, h.ws, m.walk, Options{})
			for _, tc := range hostileVaultCases {
				t.Run(tc.name, func(t *testing.T) {
					if tc.root && !h.root {
						needOrSkip(t, "root (mknod, bind mounts)")
					}
					text, isErr := callRaw(t, s, tc.tool, tc.raw)
					if strings.Contains(text, canary) {
						t.Fatalf("read outside the workspace: %q", text)
					}
					if tc.want == "" {
						if isErr {
							t.Fatalf("failed: %s", text)
						}
						return
					}
					if !isErr || !strings.Contains(text, tc.want) {
						t.Fatalf("error=%v %q, want an error containing %q", isErr, text, tc.want)
					}
				})
			}
			h.intact(t)
		})
	}
}

// intact fails t if anything outside the workspace or under .parachute
// changed, or a temporary file was left anywhere.
func (h hostileWS) intact(t *testing.T) {
	t.Helper()
	for _, f := range []string{h.out + "/secret", h.out + "/dir/file", h.out + "/bound"} {
		if b, err := os.ReadFile(f); err != nil || string(b) != canary {
			t.Errorf("%s changed: %q %v", f, b, err)
		}
	}
	if names := tree(t, h.out); !slices.Equal(names, []string{"bound", "dir", "dir/file", "secret"}) {
		t.Errorf("outside folder changed: %v", names)
	}
	if names := tree(t, h.ws+"/.parachute"); !slices.Equal(names, []string{"hooks", "settings"}) {
		t.Errorf(".parachute changed: %v", names)
	}
	if b, _ := os.ReadFile(h.ws + "/.parachute/settings"); string(b) != "settings\n" {
		t.Errorf(".parachute/settings changed: %q", b)
	}
	if b, _ := os.ReadFile(h.ws + "/notes.md"); string(b) != "notes\n" {
		t.Errorf("notes.md changed: %q", b)
	}
	if left := temps(t, h.ws); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// tree lists every name beneath dir (no links followed), relative, sorted.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	must(t, err)
	return names
}

// temps lists the vault's temporary files beneath dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	for _, n := range tree(t, dir) {
		if strings.Contains(filepath.Base(n), tempPrefix) {
			left = append(left, n)
		}
	}
	return left
}

// TestWriteFailuresLeaveNoTemp injects a failure at every step of a write
// after the temporary file exists: none may leave it behind, and the
// target keeps its old content.
func TestWriteFailuresLeaveNoTemp(t *testing.T) {
	errDisk := errors.New("injected: no space left on device")
	tests := []struct {
		name  string
		point int
		do    func(ws string) error // the injected failure or change
		want  string
	}{
		{"write fails", faultWrite, func(string) error { return errDisk }, "no space left"},
		{"sync or rename fails", faultRename, func(string) error { return errDisk }, "no space left"},
		{"target becomes a folder before the rename", faultRename, func(ws string) error {
			if err := os.Remove(ws + "/target.md"); err != nil {
				return err
			}
			return os.Mkdir(ws+"/target.md", 0o755)
		}, "is a directory"},
		{"target becomes a non-empty folder", faultRename, func(ws string) error {
			if err := os.Remove(ws + "/target.md"); err != nil {
				return err
			}
			if err := os.Mkdir(ws+"/target.md", 0o755); err != nil {
				return err
			}
			return os.WriteFile(ws+"/target.md/x", nil, 0o644)
		}, "is a directory"},
	}
	for _, m := range modes {
		for _, tc := range tests {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				ws := t.TempDir()
				must(t, os.WriteFile(ws+"/target.md", []byte("old"), 0o644))
				s := newServer(t, ws, m.walk, Options{faults: func(point int, _ *beneath.Dir, _, _ string) error {
					if point != tc.point {
						return nil
					}
					return tc.do(ws)
				}})
				text, isErr := callRaw(t, s, "write_file", js(map[string]any{"path": "target.md", "content": "new"}))
				if !isErr || !strings.Contains(text, tc.want) {
					t.Fatalf("error=%v %q, want an error containing %q", isErr, text, tc.want)
				}
				if left := temps(t, ws); len(left) > 0 {
					t.Fatalf("temporary files left: %v", left)
				}
				if b, err := os.ReadFile(ws + "/target.md"); err == nil && string(b) != "old" {
					t.Fatalf("target changed: %q", b)
				}
			})
		}
	}
}

// TestFullDiskLeavesNoTemp writes more than a small tmpfs holds: the write
// fails with ENOSPC and its temporary file is gone.
func TestFullDiskLeavesNoTemp(t *testing.T) {
	if os.Geteuid() != 0 {
		needOrSkip(t, "root (mount a small tmpfs)")
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			ws := t.TempDir()
			if err := unix.Mount("tmpfs", ws, "tmpfs", 0, "size=64k"); err != nil {
				needOrSkip(t, "tmpfs mount: "+err.Error())
			}
			t.Cleanup(func() { _ = unix.Unmount(ws, unix.MNT_DETACH) })
			must(t, os.WriteFile(ws+"/target.md", []byte("old"), 0o644))
			s := newServer(t, ws, m.walk, Options{MaxWrite: 1 << 20})
			text, isErr := callRaw(t, s, "write_file", js(map[string]any{"path": "target.md", "content": strings.Repeat("x", 512<<10)}))
			if !isErr || !strings.Contains(text, syscall.ENOSPC.Error()) {
				t.Fatalf("error=%v %q, want ENOSPC", isErr, text)
			}
			if left := temps(t, ws); len(left) > 0 {
				t.Fatalf("temporary files left: %v", left)
			}
			if b, _ := os.ReadFile(ws + "/target.md"); string(b) != "old" {
				t.Fatalf("target changed: %q", b)
			}
		})
	}
}

// TestTooLargeLeavesNoTemp: content over the limit is refused before any
// file is created.
func TestTooLargeLeavesNoTemp(t *testing.T) {
	ws := t.TempDir()
	s := newServer(t, ws, false, Options{MaxWrite: 8})
	text, isErr := callRaw(t, s, "write_file", js(map[string]any{"path": "big.md", "content": "123456789"}))
	if !isErr || !strings.Contains(text, "larger than the limit") {
		t.Fatalf("error=%v %q", isErr, text)
	}
	if names := tree(t, ws); len(names) > 0 {
		t.Fatalf("files left: %v", names)
	}
}
