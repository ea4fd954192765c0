package runtime

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }

// glibcBinary skips unless bin is a dynamically linked glibc binary and
// ldd (the oracle) is there.
func glibcBinary(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Skipf("%s: %v", bin, err)
	}
	defer f.Close()
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			p.ReadAt(b, 0)
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if !strings.Contains(interp, "ld-linux") {
		t.Skipf("%s is not a glibc dynamic binary (interpreter %q)", bin, interp)
	}
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skip("ldd not installed")
	}
}

// lddPaths is what glibc's loader itself maps for bin, by the paths it
// opened them at.
func lddPaths(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	var paths []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			paths = append(paths, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			paths = append(paths, f[0]) // the interpreter
		}
	}
	slices.Sort(paths)
	return paths
}

// TestELFDepsMatchesLoader: the closure of real binaries is exactly what
// the loader maps (ldd), at the same paths, with symlinks resolved to the
// files holding the bytes.
func TestELFDepsMatchesLoader(t *testing.T) {
	for _, bin := range []string{"/bin/ls", "/usr/bin/node"} {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			if _, err := os.Stat(bin); err != nil {
				t.Skipf("%s not installed", bin)
			}
			glibcBinary(t, bin)
			deps, err := ELFDeps(bin)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range deps {
				got = append(got, d.Path)
				real, err := filepath.EvalSymlinks(d.Path)
				if err != nil || real != d.Source {
					t.Errorf("%s: source %s, want %s (%v)", d.Path, d.Source, real, err)
				}
				if st, err := os.Lstat(d.Source); err != nil || !st.Mode().IsRegular() {
					t.Errorf("%s: source %s is not a regular file", d.Path, d.Source)
				}
			}
			slices.Sort(got)
			if want := lddPaths(t, bin); !slices.Equal(got, want) {
				t.Errorf("closure of %s:\n got %v\nwant %v (ldd)", bin, got, want)
			}
		})
	}
}

// writeELF copies the host's /bin/ls (a real, valid ELF) to dir/name, for
// tests that need a binary whose paths they control.
func copyELF(t *testing.T, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(dst, "/bin/ls", 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestELFDepsRefusals(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755)
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		bin  string
		want string
	}{
		"not ELF":       {script, "not an ELF"},
		"relative path": {"bin/ls", "absolute"},
		"missing":       {filepath.Join(dir, "nonesuch"), "no such file"},
		// A FIFO must be refused, not opened and waited on.
		"fifo": {fifo, "not a regular file"},
		"dir":  {dir, "not a regular file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ELFDeps(tc.bin)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ELFDeps(%s) = %v, want an error containing %q", tc.bin, err, tc.want)
			}
		})
	}
}

// TestELFDepsMissingLibrary: a library the loader could not find is an
// error naming it and who needs it, not a smaller image.
func TestELFDepsMissingLibrary(t *testing.T) {
	glibcBinary(t, "/bin/ls")
	r := newELFResolver(elf.ELFCLASS64, elf.EM_X86_64, "/lib64/ld-linux-x86-64.so.2")
	r.cache = map[string][]string{} // nothing in ld.so.cache
	r.defaults = []string{t.TempDir()}
	_, err := r.find("libnonesuch.so.7", "/opt/app/bin/app", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "libnonesuch.so.7") || !strings.Contains(err.Error(), "/opt/app/bin/app") {
		t.Errorf("err %v, want one naming the library and its user", err)
	}
	if !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("err %v does not wrap ErrInvalidSpec", err)
	}
}

// TestELFDepsSearchOrder: RPATH before the cache, RUNPATH with $ORIGIN,
// the cache before the default folders, a wrong-architecture candidate
// skipped, a library outside the default folders placed in one.
func TestELFDepsSearchOrder(t *testing.T) {
	glibcBinary(t, "/bin/ls")
	root := t.TempDir()
	lib := func(p string) string { copyELF(t, filepath.Join(root, p)); return filepath.Join(root, p) }
	wrongArch := filepath.Join(root, "rpath-32/libx.so.1")
	os.MkdirAll(filepath.Dir(wrongArch), 0o755)
	// An ELF32 header: a 32-bit library the 64-bit loader skips.
	os.WriteFile(wrongArch, append([]byte("\x7fELF\x01\x01\x01"), make([]byte, 60)...), 0o755)
	inRPath := lib("rpath/libx.so.1")
	inCache := lib("cache/libx.so.1")
	inDefault := lib("default/libx.so.1")
	inOrigin := lib("app/lib/libx.so.1")
	odd := lib("odd/liby.so.2")

	r := newELFResolver(elf.ELFCLASS64, elf.EM_X86_64, "/lib64/ld-linux-x86-64.so.2")
	r.cache = map[string][]string{"libx.so.1": {inCache}, "liby.so.2": {odd}}
	r.defaults = []string{filepath.Join(root, "default")}
	for name, tc := range map[string]struct {
		needed          string
		rpath, runpath  []string
		wantPath, wantS string
	}{
		"rpath first, wrong arch skipped": {"libx.so.1", []string{filepath.Join(root, "rpath-32"), filepath.Join(root, "rpath")}, nil, inRPath, inRPath},
		"runpath $ORIGIN":                 {"libx.so.1", nil, []string{"$ORIGIN/../lib"}, inOrigin, inOrigin},
		// The image has no ld.so.cache: a library the host finds only
		// through it goes to the first default folder.
		"cache before defaults":   {"libx.so.1", nil, nil, filepath.Join(root, "default", "libx.so.1"), inCache},
		"outside default folders": {"liby.so.2", nil, nil, filepath.Join(root, "default", "liby.so.2"), odd},
	} {
		t.Run(name, func(t *testing.T) {
			d, err := r.find(tc.needed, filepath.Join(root, "app/bin/app"), tc.rpath, tc.runpath)
			if err != nil {
				t.Fatal(err)
			}
			if d.Path != tc.wantPath || d.Source != tc.wantS {
				t.Errorf("found %+v, want path %s source %s", d, tc.wantPath, tc.wantS)
			}
		})
	}
	_ = inDefault
	// $ORIGIN is the only substitution we know; $PLATFORM and $LIB
	// depend on the loader and are refused rather than guessed.
	if _, err := r.find("libx.so.1", "/opt/app", nil, []string{"$PLATFORM/lib"}); err == nil {
		t.Error("$PLATFORM in RUNPATH accepted")
	}
}

func TestParseLdconfig(t *testing.T) {
	out := "1234 libs found in cache `/etc/ld.so.cache'\n" +
		"\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n" +
		"\tlibz.so.1 (libc6) => /lib/i386-linux-gnu/libz.so.1\n" +
		"\tlibfoo.so (libc6,x86-64, hwcap: \"x86-64-v3\") => /usr/lib/glibc-hwcaps/x86-64-v3/libfoo.so\n" +
		"\tlibfoo.so (libc6,x86-64, OS ABI: Linux 3.2.0) => /usr/lib/libfoo.so\n" +
		"Cache generated by: ldconfig (GNU libc) stable release version 2.36\n"
	got := parseLdconfig(out)
	want := map[string][]string{
		"libz.so.1": {"/lib/x86_64-linux-gnu/libz.so.1", "/lib/i386-linux-gnu/libz.so.1"},
		"libfoo.so": {"/usr/lib/libfoo.so"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("%s: got %v, want %v", k, got[k], v)
		}
	}
}
