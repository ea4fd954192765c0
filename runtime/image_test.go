package runtime

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type layerFile struct {
	hdr  *tar.Header
	data []byte
}

// readImage returns the entries of the single layer of an image tar, in
// tar order, and the layer's names in that order.
func readImage(t *testing.T, tarPath string) (map[string]layerFile, []string) {
	t.Helper()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	blob := func(d string) []byte { return files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")] }
	var index struct{ Manifests []struct{ Digest string } }
	json.Unmarshal(files["index.json"], &index)
	var manifest struct{ Layers []struct{ Digest string } }
	json.Unmarshal(blob(index.Manifests[0].Digest), &manifest)
	zr, err := gzip.NewReader(bytes.NewReader(blob(manifest.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]layerFile{}
	var order []string
	lr := tar.NewReader(zr)
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(lr)
		name := strings.TrimSuffix(h.Name, "/")
		out[name] = layerFile{h, b}
		order = append(order, name)
	}
	return out, order
}

func sumFile(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// testTree is a folder like an npm install: files, an executable, a
// subfolder, a relative link and a link pointing at the host's root.
func testTree(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "pkg", "dist"), 0o700)
	os.WriteFile(filepath.Join(d, "pkg", "dist", "index.js"), []byte("console.log(1)\n"), 0o600)
	os.WriteFile(filepath.Join(d, "pkg", "cli"), []byte("#!/usr/bin/env node\n"), 0o700)
	os.MkdirAll(filepath.Join(d, ".bin"), 0o755)
	os.Symlink("../pkg/cli", filepath.Join(d, ".bin", "cli"))
	os.Symlink("/", filepath.Join(d, "rootlink"))
	return d
}

func TestBuildImageAdd(t *testing.T) {
	glibcBinary(t, "/bin/ls")
	tree := testTree(t)
	o := BuildOptions{Binary: "/bin/ls", Ref: "parachute.local/t:1", Out: filepath.Join(t.TempDir(), "a.tar"),
		Add: []string{"/bin/ls"}, AddDirs: []DirCopy{{Host: tree, Image: "/opt/npm"}}}
	if _, err := BuildImage(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	entries, order := readImage(t, o.Out)
	realLs, _ := filepath.EvalSymlinks("/bin/ls")
	want := map[string]byte{
		"parachute": tar.TypeReg, strings.TrimPrefix(realLs, "/"): tar.TypeReg,
		"opt/npm/pkg/dist/index.js": tar.TypeReg, "opt/npm/pkg/cli": tar.TypeReg,
		"opt/npm/.bin/cli": tar.TypeSymlink, "opt/npm/rootlink": tar.TypeSymlink,
		"opt/npm/pkg/dist": tar.TypeDir, "lib64": tar.TypeDir,
	}
	deps, _ := ELFDeps("/bin/ls")
	for _, d := range deps {
		want[strings.TrimPrefix(d.Path, "/")] = tar.TypeReg
	}
	for name, typ := range want {
		e, ok := entries[name]
		if !ok {
			t.Errorf("image lacks %s", name)
			continue
		}
		if e.hdr.Typeflag != typ && !(typ == tar.TypeReg && e.hdr.Typeflag == tar.TypeLink) {
			t.Errorf("%s: type %c, want %c", name, e.hdr.Typeflag, typ)
		}
	}
	for _, d := range deps {
		e := entries[strings.TrimPrefix(d.Path, "/")]
		host, _ := os.ReadFile(d.Source)
		if e.hdr.Typeflag == tar.TypeReg && !bytes.Equal(e.data, host) {
			t.Errorf("%s: content differs from %s", d.Path, d.Source)
		}
	}
	checks := []struct {
		name string
		mode int64
		link string
	}{
		{"opt/npm/pkg/dist/index.js", 0o644, ""}, // 0600 on the host: readable by the sandbox user
		{"opt/npm/pkg/cli", 0o755, ""},
		{"opt/npm/pkg/dist", 0o755, ""}, // 0700 on the host
		{"opt/npm/.bin/cli", 0o777, "../pkg/cli"},
		{"opt/npm/rootlink", 0o777, "/"}, // kept as a link: inside the sandbox it leads to the sandbox's root
	}
	for _, c := range checks {
		e := entries[c.name]
		if e.hdr == nil || e.hdr.Mode != c.mode || e.hdr.Linkname != c.link {
			t.Errorf("%s: %+v, want mode %o link %q", c.name, e.hdr, c.mode, c.link)
		}
	}
	seen := map[string]bool{}
	for _, n := range order {
		e := entries[n]
		if e.hdr.Uid != 0 || e.hdr.Gid != 0 || !e.hdr.ModTime.Equal(imageEpoch) || e.hdr.Uname != "" {
			t.Errorf("%s: owner %d:%d %q, time %v", n, e.hdr.Uid, e.hdr.Gid, e.hdr.Uname, e.hdr.ModTime)
		}
		if e.hdr.Mode&0o7000 != 0 && n != "tmp" {
			t.Errorf("%s: mode %o has setuid/setgid/sticky", n, e.hdr.Mode)
		}
		if dir := filepath.Dir(n); dir != "." && !seen[dir] {
			t.Errorf("%s comes before its folder %s", n, dir)
		}
		if e.hdr.Typeflag == tar.TypeLink && !seen[e.hdr.Linkname] {
			t.Errorf("hard link %s before its target %s", n, e.hdr.Linkname)
		}
		seen[n] = true
	}
}

// TestBuildImageDeterministic: the same inputs give the same bytes (a CI
// rebuild imports nothing new), whatever the host files' times; other
// content gives another digest.
func TestBuildImageDeterministic(t *testing.T) {
	glibcBinary(t, "/bin/ls")
	tree := testTree(t)
	build := func() [32]byte {
		o := BuildOptions{Binary: "/bin/ls", Out: filepath.Join(t.TempDir(), "i.tar"), Add: []string{"/bin/ls"}, AddDirs: []DirCopy{{Host: tree, Image: "/opt/x"}}}
		if _, err := BuildImage(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		return sumFile(t, o.Out)
	}
	first := build()
	if build() != first {
		t.Fatal("two builds of the same inputs differ")
	}
	js := filepath.Join(tree, "pkg", "dist", "index.js")
	os.Chtimes(js, imageEpoch.AddDate(1, 0, 0), imageEpoch.AddDate(1, 0, 0))
	os.Chmod(js, 0o664) // another umask
	if build() != first {
		t.Error("a touched file (same content) changed the image")
	}
	os.WriteFile(js, []byte("console.log(2)\n"), 0o600)
	if build() == first {
		t.Error("changed content gave the same image")
	}
}

func TestBuildImageRefusals(t *testing.T) {
	glibcBinary(t, "/bin/ls")
	tree := testTree(t)
	fifoTree := t.TempDir()
	mkfifo(filepath.Join(fifoTree, "pipe"))
	script := filepath.Join(t.TempDir(), "run.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	for name, tc := range map[string]struct {
		o    BuildOptions
		want string
	}{
		"fifo in add-dir":        {BuildOptions{AddDirs: []DirCopy{{Host: fifoTree, Image: "/opt/f"}}}, "pipe is a p"},
		"add-dir over workspace": {BuildOptions{AddDirs: []DirCopy{{Host: tree, Image: "/workspace/x"}}}, "mounts over /workspace"},
		"add-dir over tmp":       {BuildOptions{AddDirs: []DirCopy{{Host: tree, Image: "/tmp"}}}, "mounts over /tmp"},
		"add-dir at root":        {BuildOptions{AddDirs: []DirCopy{{Host: tree, Image: "/"}}}, "cannot be /"},
		"add-dir onto a file":    {BuildOptions{AddDirs: []DirCopy{{Host: tree, Image: "/etc/passwd"}}}, "/etc/passwd is given twice"},
		"add-dir under a file":   {BuildOptions{AddDirs: []DirCopy{{Host: tree, Image: "/etc/passwd/x"}}}, "needs /etc/passwd to be a folder"},
		"add over /parachute":    {BuildOptions{Files: map[string]string{"/parachute": script}}, "given twice"},
		"add a script":           {BuildOptions{Add: []string{script}}, "not an ELF"},
		"add relative":           {BuildOptions{Add: []string{"bin/ls"}}, "absolute"},
		"add-dir not a folder":   {BuildOptions{AddDirs: []DirCopy{{Host: script, Image: "/opt/s"}}}, "not a folder"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.o.Binary = "/bin/ls"
			tc.o.Out = filepath.Join(t.TempDir(), "x.tar")
			_, err := BuildImage(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one containing %q", err, tc.want)
			}
			if _, serr := os.Stat(tc.o.Out); err != nil && serr == nil {
				t.Errorf("a refused build left %s", tc.o.Out)
			}
		})
	}
}

// TestBuildImageAddReplacesApplet: an added binary wins over busybox's
// applet of the same name; two different files at one path do not.
func TestBuildImageAddReplacesApplet(t *testing.T) {
	glibcBinary(t, "/bin/ls")
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static not installed")
	}
	dir := t.TempDir()
	ls := filepath.Join(dir, "bin", "ls")
	copyELF(t, ls)
	// A tree whose bin/ls is another file than the added one.
	other := t.TempDir()
	os.MkdirAll(filepath.Join(other, "ls"), 0o755)
	o := BuildOptions{Binary: "/bin/ls", Busybox: "/bin/busybox", Out: filepath.Join(t.TempDir(), "b.tar"), Add: []string{"/bin/ls"}}
	if _, err := BuildImage(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	entries, _ := readImage(t, o.Out)
	real, _ := filepath.EvalSymlinks("/bin/ls")
	if e := entries[strings.TrimPrefix(real, "/")]; e.hdr == nil || (e.hdr.Typeflag != tar.TypeReg && e.hdr.Typeflag != tar.TypeLink) {
		t.Errorf("%s is not the added file: %+v", real, e.hdr)
	}
	if e := entries["bin/cat"]; e.hdr == nil || e.hdr.Linkname != "busybox" {
		t.Errorf("other applets lost: %+v", e.hdr)
	}
	o.AddDirs = []DirCopy{{Host: other, Image: filepath.Dir(real)}}
	if _, err := BuildImage(context.Background(), o); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("a folder and a file at one path: err %v", err)
	}
}

// TestLayerFileSwappedDuringBuild: a host file replaced between the walk
// and the write is refused, not copied.
func TestLayerFileSwappedDuringBuild(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("decided on"), 0o644)
	l := newLayer()
	if err := l.hostFile("opt/f", p, 0o644, "test"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p+".new", []byte("swapped in"), 0o644)
	os.Rename(p+".new", p)
	if err := l.write(io.Discard); err == nil || !strings.Contains(err.Error(), "changed while the image was built") {
		t.Errorf("err %v", err)
	}
	// A symlink put where the file was is not followed.
	os.Remove(p)
	os.Symlink("/etc/passwd", p)
	if err := l.write(io.Discard); err == nil {
		t.Error("a symlink swapped in was followed")
	}
}

func TestParseDirCopy(t *testing.T) {
	for in, want := range map[string]DirCopy{
		"/srv/npm":          {Host: "/srv/npm"},
		"/srv/npm:/opt/npm": {Host: "/srv/npm", Image: "/opt/npm"},
	} {
		if got, err := ParseDirCopy(in); err != nil || got != want {
			t.Errorf("%q: %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "npm", "/srv/npm:opt", "npm:/opt"} {
		if _, err := ParseDirCopy(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
