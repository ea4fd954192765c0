package beneath

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  error
	}{
		{".", nil, nil},
		{"./", nil, nil},
		{"a", []string{"a"}, nil},
		{"a//b/./c/", []string{"a", "b", "c"}, nil},
		{"a/x/../b", []string{"a", "b"}, nil},
		{"%2e%2e/x", []string{"%2e%2e", "x"}, nil},
		{"..", nil, ErrEscape},
		{"../x", nil, ErrEscape},
		{"a/../../x", nil, ErrEscape},
		{"/etc/passwd", nil, ErrBadName},
		{"", nil, ErrBadName},
		{"a\x00b", nil, ErrBadName},
	}
	for _, tc := range tests {
		got, err := Split(tc.in)
		if !errors.Is(err, tc.err) || !slices.Equal(got, tc.want) {
			t.Errorf("Split(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestRefusals: both resolvers refuse a link at any component and name it,
// and open what is plainly there.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(dir+"/a/b", 0o755))
	must(t, os.WriteFile(dir+"/a/b/f", []byte("x"), 0o644))
	must(t, os.Symlink("a", dir+"/la"))
	must(t, os.Symlink("b", dir+"/a/lb"))
	must(t, os.Symlink("f", dir+"/a/b/lf"))
	must(t, os.Symlink("/", dir+"/a/root"))
	tests := []struct {
		name string
		op   func(r *Root) error
		want error
		at   string // the component the error must name
	}{
		{"plain folder", func(r *Root) error { return closeDir(r.OpenDir("a/b")) }, nil, ""},
		{"plain file", func(r *Root) error { return openFile(r, "a/b/f") }, nil, ""},
		{"first component link", func(r *Root) error { return closeDir(r.OpenDir("la/b")) }, ErrSymlink, "la"},
		{"middle component link", func(r *Root) error { return closeDir(r.OpenDir("a/lb")) }, ErrSymlink, "a/lb"},
		{"link to root", func(r *Root) error { return closeDir(r.OpenDir("a/root/etc")) }, ErrSymlink, "a/root"},
		{"last component link", func(r *Root) error { return openFile(r, "a/b/lf") }, ErrSymlink, "a/b/lf"},
		{"mkdir through link", func(r *Root) error { return closeDir(r.MkdirAll("a/lb/new", 0o755)) }, ErrSymlink, "a/lb"},
		{"mkdir", func(r *Root) error { return closeDir(r.MkdirAll("a/b/c/d", 0o755)) }, nil, ""},
		{"mkdir over a file", func(r *Root) error { return closeDir(r.MkdirAll("a/b/f/x", 0o755)) }, unix.ENOTDIR, ""},
		{"file as folder", func(r *Root) error { return closeDir(r.OpenDir("a/b/f")) }, unix.ENOTDIR, ""},
		{"escape", func(r *Root) error { return closeDir(r.OpenDir("../")) }, ErrEscape, ""},
	}
	for _, walk := range []bool{false, true} {
		r, err := Open(dir, Options{Walk: walk})
		must(t, err)
		defer r.Close()
		for _, tc := range tests {
			err := tc.op(r)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Errorf("walk=%v %s: %v, want %v", walk, tc.name, err, tc.want)
				continue
			}
			if tc.at != "" && err.Error() != tc.want.Error()+": "+tc.at {
				t.Errorf("walk=%v %s: %q does not name %s", walk, tc.name, err, tc.at)
			}
		}
	}
}

func closeDir(d *Dir, err error) error {
	if err != nil {
		return err
	}
	return d.Close()
}

func openFile(r *Root, name string) error {
	d, last, err := r.OpenParent(name)
	if err != nil {
		return err
	}
	defer d.Close()
	f, err := d.OpenFile(last, unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// TestDirOps: renames without replacing, listings typed from the folder,
// bounded, sorted; components that are not one entry are refused.
func TestDirOps(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(dir+"/d", 0o755))
	must(t, os.WriteFile(dir+"/f", nil, 0o644))
	must(t, os.WriteFile(dir+"/g", nil, 0o644))
	must(t, os.Symlink("f", dir+"/l"))
	must(t, unix.Mkfifo(dir+"/p", 0o644))
	r, err := Open(dir, Options{})
	must(t, err)
	defer r.Close()
	top, err := r.OpenDir(".")
	must(t, err)
	defer top.Close()

	if err := top.RenameNoReplace("f", top, "g"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("rename onto an existing file: %v", err)
	}
	must(t, top.RenameNoReplace("g", top, "h"))
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if _, err := top.OpenDir(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("OpenDir(%q): %v", bad, err)
		}
	}
	entries, err := top.ReadDir(10)
	must(t, err)
	want := []Entry{{"d", fs.ModeDir}, {"f", 0}, {"h", 0}, {"l", fs.ModeSymlink}, {"p", fs.ModeNamedPipe}}
	if !slices.Equal(entries, want) {
		t.Errorf("ReadDir = %v, want %v", entries, want)
	}
	if _, err := top.ReadDir(4); !errors.Is(err, ErrTooMany) {
		t.Errorf("ReadDir(4) of 5 entries: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "g")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("g still there: %v", err)
	}
}
