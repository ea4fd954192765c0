package runtime

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// layer is the root filesystem of an image being built: every entry by
// its path (relative, no leading slash). Entries are checked as they are
// added (one path, one meaning) and written in path order with fixed
// owner and time, so the tar depends only on the inputs.
type layer struct {
	entries map[string]*layerEntry
}

// layerEntry is one file, folder or link of the layer.
type layerEntry struct {
	typ    byte // tar.TypeDir, TypeReg, TypeSymlink
	mode   int64
	data   []byte // content of an in-memory regular file
	src    string // host regular file, read at write time
	id     fileID // src's device and inode when added
	size   int64  // src's size when added
	link   string // symlink target
	origin string // what put it there, for error messages
	weak   bool   // a busybox applet: an explicit entry replaces it
}

// fileID identifies a host file: two paths of one file become a hard link.
type fileID struct{ dev, ino uint64 }

func newLayer() *layer { return &layer{entries: map[string]*layerEntry{}} }

// imageName turns an image path into a layer path, refusing what would
// not name a path inside the root.
func imageName(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: image path %q contains NUL", ErrInvalidSpec, p)
	}
	n := strings.TrimPrefix(path.Clean("/"+p), "/")
	if n == "" {
		return "", fmt.Errorf("%w: image path %q is the root", ErrInvalidSpec, p)
	}
	return n, nil
}

// put adds e at name, with parent folders (0755) as needed. The same
// entry twice is fine (two binaries sharing libc); two different entries
// at one path are an error naming both, unless the first is weak.
func (l *layer) put(name string, e *layerEntry) error {
	n, err := imageName(name)
	if err != nil {
		return err
	}
	parts := strings.Split(n, "/")
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], "/")
		switch pe := l.entries[parent]; {
		case pe == nil:
			l.entries[parent] = &layerEntry{typ: tar.TypeDir, mode: 0o755, origin: "parent of " + e.origin}
		case pe.typ != tar.TypeDir:
			return fmt.Errorf("%w: image path /%s (from %s) needs /%s to be a folder, but %s put a %s there",
				ErrInvalidSpec, n, e.origin, parent, pe.origin, typeName(pe.typ))
		}
	}
	old := l.entries[n]
	switch {
	case old == nil, old.weak && !e.weak:
		l.entries[n] = e
	case old.typ == tar.TypeDir && e.typ == tar.TypeDir:
		// The first folder entry (the base's modes) stands.
	case sameEntry(old, e):
	default:
		return fmt.Errorf("%w: image path /%s is given twice: a %s from %s and a %s from %s",
			ErrInvalidSpec, n, typeName(old.typ), old.origin, typeName(e.typ), e.origin)
	}
	return nil
}

func sameEntry(a, b *layerEntry) bool {
	return a.typ == b.typ && a.mode == b.mode && a.link == b.link && bytes.Equal(a.data, b.data) &&
		(a.src == "") == (b.src == "") && a.id == b.id
}

func typeName(t byte) string {
	switch t {
	case tar.TypeDir:
		return "folder"
	case tar.TypeSymlink:
		return "symlink"
	}
	return "file"
}

func (l *layer) dir(name string, mode int64, origin string) error {
	return l.put(name, &layerEntry{typ: tar.TypeDir, mode: mode, origin: origin})
}

func (l *layer) file(name string, mode int64, data []byte, origin string) error {
	return l.put(name, &layerEntry{typ: tar.TypeReg, mode: mode, data: data, origin: origin})
}

// hostFile adds the regular host file src at name. src is opened without
// following a final symlink and checked through the opened file (a FIFO
// or device is refused, never read); its identity and size are checked
// again when the layer is written.
func (l *layer) hostFile(name, src string, mode int64, origin string) error {
	st, err := statRegular(src)
	if err != nil {
		return fmt.Errorf("%s: %w", origin, err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return l.put(name, &layerEntry{typ: tar.TypeReg, mode: mode, src: src, size: st.Size(),
		id: fileID{uint64(sys.Dev), uint64(sys.Ino)}, origin: origin})
}

// statRegular opens p (O_NOFOLLOW, O_NONBLOCK) and returns the opened
// file's stat if it is a regular file.
func statRegular(p string) (fs.FileInfo, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file (%s)", ErrInvalidSpec, p, st.Mode().Type())
	}
	return st, nil
}

// hostMode is the image mode of a host file: 0755 if its owner may
// execute it, else 0644. Everything in the image is root's and the
// sandbox runs as 65534, so anything less would be unreadable there;
// setuid, setgid and write bits for others never go in. It does not
// depend on the host's umask, so neither does the digest.
func hostMode(m fs.FileMode) int64 {
	if m&0o100 != 0 {
		return 0o755
	}
	return 0o644
}

// addBinary adds the host binary bin at its path, with its ELF closure.
func (l *layer) addBinary(bin string) error {
	if !filepath.IsAbs(bin) {
		return fmt.Errorf("%w: --add %q: the path must be absolute", ErrInvalidSpec, bin)
	}
	bin = filepath.Clean(bin)
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return fmt.Errorf("%w: --add %s: %w", ErrInvalidSpec, bin, err)
	}
	deps, err := ELFDeps(bin)
	if err != nil {
		return fmt.Errorf("--add %s: %w (copy files that are not ELF binaries with --add-dir)", bin, err)
	}
	origin := "--add " + bin
	st, err := statRegular(real)
	if err != nil {
		return fmt.Errorf("%s: %w", origin, err)
	}
	if err := l.hostFile(real, real, hostMode(st.Mode()), origin); err != nil {
		return err
	}
	if real != bin {
		// The loader takes $ORIGIN from the resolved path: keep the
		// host's layout, the link and the file it leads to.
		if err := l.put(bin, &layerEntry{typ: tar.TypeSymlink, mode: 0o777, link: real, origin: origin}); err != nil {
			return err
		}
	}
	for _, d := range deps {
		st, err := statRegular(d.Source)
		if err != nil {
			return fmt.Errorf("%s: %w", origin, err)
		}
		if err := l.hostFile(d.Path, d.Source, hostMode(st.Mode()), origin+" (needs "+d.Path+")"); err != nil {
			return err
		}
	}
	return nil
}

// addDir adds the host folder tree d.Host at d.Image. Nothing inside is
// followed: symlinks are copied as symlinks (inside the sandbox they
// resolve against its root, not the host's).
func (l *layer) addDir(d DirCopy) error {
	if !filepath.IsAbs(d.Host) {
		return fmt.Errorf("%w: --add-dir %q: the host path must be absolute", ErrInvalidSpec, d.Host)
	}
	img := d.Image
	if img == "" {
		img = filepath.Clean(d.Host)
	}
	if !path.IsAbs(img) {
		return fmt.Errorf("%w: --add-dir %s: image path %q must be absolute", ErrInvalidSpec, d.Host, img)
	}
	img = path.Clean(img)
	if img == "/" {
		return fmt.Errorf("%w: --add-dir %s: the image path cannot be /", ErrInvalidSpec, d.Host)
	}
	for _, m := range mountedOver {
		if img == m || strings.HasPrefix(img, m+"/") {
			return fmt.Errorf("%w: --add-dir %s:%s: the sandbox mounts over %s, so nothing copied there would be seen; pick another image path (such as /opt/...)", ErrInvalidSpec, d.Host, img, m)
		}
	}
	root, err := filepath.EvalSymlinks(d.Host)
	if err != nil {
		return fmt.Errorf("%w: --add-dir: %w", ErrInvalidSpec, err)
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: --add-dir %s is not a folder", ErrInvalidSpec, d.Host)
	}
	origin := "--add-dir " + d.Host
	return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := path.Join(img, filepath.ToSlash(rel))
		info, err := e.Info() // lstat
		if err != nil {
			return err
		}
		switch t := info.Mode().Type(); {
		case t == fs.ModeDir:
			return l.dir(name, 0o755, origin)
		case t == fs.ModeSymlink:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return l.put(name, &layerEntry{typ: tar.TypeSymlink, mode: 0o777, link: target, origin: origin})
		case t == 0:
			return l.hostFile(name, p, hostMode(info.Mode()), origin)
		default:
			return fmt.Errorf("%w: %s: %s is a %s; only folders, regular files and symlinks are copied", ErrInvalidSpec, origin, p, t)
		}
	})
}

// layerBlob is the gzipped layer written to a file.
type layerBlob struct {
	path, digest, diffID string
	size                 int64
}

// writeGzip writes the layer as a gzipped tar to out in one pass,
// hashing both the tar (diff ID) and the gzip stream (blob digest).
func (l *layer) writeGzip(out string) (layerBlob, error) { return l.writeBlob(out, true) }

// writeBlob writes the layer to out, gzipped or as a plain tar (whose
// digest is then its diff ID).
func (l *layer) writeBlob(out string, compress bool) (layerBlob, error) {
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return layerBlob{}, err
	}
	blobSum := sha256.New()
	counter := &countWriter{}
	var zw io.WriteCloser = nopCloser{io.MultiWriter(f, blobSum, counter)}
	if compress {
		zw = gzip.NewWriter(io.MultiWriter(f, blobSum, counter))
	}
	diffSum := sha256.New()
	err = l.write(io.MultiWriter(zw, diffSum))
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return layerBlob{}, err
	}
	return layerBlob{path: out, size: counter.n,
		digest: "sha256:" + hex.EncodeToString(blobSum.Sum(nil)),
		diffID: "sha256:" + hex.EncodeToString(diffSum.Sum(nil))}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// write writes the tar: entries in path order (parents first), root
// owned, fixed time; a host file seen under two paths is written once and
// hard-linked from the later path.
func (l *layer) write(w io.Writer) error {
	tw := tar.NewWriter(w)
	names := make([]string, 0, len(l.entries))
	for n := range l.entries {
		names = append(names, n)
	}
	slices.Sort(names)
	written := map[fileID]string{}
	for _, n := range names {
		e := l.entries[n]
		h := &tar.Header{Name: n, Mode: e.mode, Typeflag: e.typ, ModTime: imageEpoch}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.link
		case tar.TypeReg:
			if e.src == "" {
				h.Size = int64(len(e.data))
				break
			}
			if first, ok := written[e.id]; ok {
				h.Typeflag, h.Linkname = tar.TypeLink, first
				break
			}
			written[e.id] = n
			h.Size = e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if e.src == "" {
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
			continue
		}
		if err := copyChecked(tw, e); err != nil {
			return err
		}
	}
	return tw.Close()
}

// copyChecked copies e.src, refusing a file that is no longer the one
// added (replaced, or changed size) since.
func copyChecked(w io.Writer, e *layerEntry) error {
	f, err := os.OpenFile(e.src, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	sys := st.Sys().(*syscall.Stat_t)
	if !st.Mode().IsRegular() || (fileID{uint64(sys.Dev), uint64(sys.Ino)}) != e.id || st.Size() != e.size {
		return fmt.Errorf("%s (%s) changed while the image was built; build again", e.src, e.origin)
	}
	n, err := io.CopyN(w, f, e.size)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s shrank to %d bytes while the image was built; build again", e.src, n)
		}
		return err
	}
	return nil
}
