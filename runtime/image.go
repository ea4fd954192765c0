package runtime

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"time"
)

// DefaultInit is the PID 1 of the sandbox image: `parachute sandbox init`
// reaps orphans and waits. Any binary installed as /parachute must
// implement it (test/probe does).
var DefaultInit = []string{"/parachute", "sandbox", "init"}

// BuildOptions describe a sandbox image.
type BuildOptions struct {
	Binary  string // static binary copied to /parachute (required)
	Busybox string // optional static busybox: /bin/busybox and its applets
	Ref     string // image name recorded in the tar; "" = DefaultImage
	Out     string // tar path to write; "" = a new file under os.TempDir()
	// Files are extra host files copied into the image, keyed by absolute
	// image path (mode 0755, owned by root).
	Files map[string]string
	// Add are host binaries (absolute paths) copied into the image at the
	// same paths with their ELF dependency closure (ELFDeps). A path that
	// is a symlink stays one, to the file it resolves to, which is copied
	// at its own path. An added file may replace a busybox applet.
	Add []string
	// AddDirs are host folder trees copied into the image.
	AddDirs []DirCopy
	// Links are symlinks made in the image, keyed by absolute image path,
	// to an absolute target (`image build --agent` links /usr/bin/claude
	// to the added binary, which keeps its host path for its loader).
	Links map[string]string
	// Uncompressed writes the layer as a plain tar: for an image holding a
	// real agent (a ~400 MB binary) gzip takes a minute and saves nothing
	// on this host, where containerd unpacks the layer at import anyway.
	Uncompressed bool
}

// DirCopy is a host folder tree copied into the image: folders (0755),
// regular files (0755 if the owner may execute them, else 0644) and
// symlinks (kept as symlinks, never followed), all owned by root.
// Anything else (a FIFO, a device, a socket) is refused.
type DirCopy struct {
	Host  string // absolute host folder
	Image string // absolute image path; "" = the same as Host
}

// ParseDirCopy parses "HOST[:IMAGE]".
func ParseDirCopy(s string) (DirCopy, error) {
	host, img, _ := strings.Cut(s, ":")
	d := DirCopy{Host: host, Image: img}
	if !filepath.IsAbs(d.Host) || (d.Image != "" && !path.IsAbs(d.Image)) {
		return DirCopy{}, fmt.Errorf("%w: --add-dir %q: want HOST[:IMAGE], both absolute paths", ErrInvalidSpec, s)
	}
	return d, nil
}

// mountedOver are image folders the sandbox mounts over: whatever the
// image holds there is never seen.
var mountedOver = []string{"/proc", "/dev", "/sys", "/tmp", WorkspaceDir, SocketDir}

// imageEpoch is the modification time of every file in the image, so the
// same inputs give the same digest.
var imageEpoch = time.Unix(1700000000, 0).UTC()

// BuildImage writes an OCI image layout tar of a minimal sandbox image: the
// binary as /parachute (also the entrypoint, `/parachute sandbox init`),
// optionally busybox for a shell, added binaries with their libraries and
// added folders, /tmp mode 1777, /workspace and /run/parachute, and user
// 65534. Every entry has fixed owner and time and entries are in path
// order, so the same inputs give the same digest. It returns the tar's
// path.
func BuildImage(ctx context.Context, o BuildOptions) (string, error) {
	if o.Binary == "" {
		return "", fmt.Errorf("%w: BuildImage needs a binary", ErrInvalidSpec)
	}
	if o.Ref == "" {
		o.Ref = DefaultImage
	}
	l, err := composeLayer(ctx, o)
	if err != nil {
		return "", fmt.Errorf("build image layer: %w", err)
	}
	tmp, err := os.MkdirTemp("", "parachute-layer-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	layer, err := l.writeBlob(filepath.Join(tmp, "layer.tar.gz"), !o.Uncompressed)
	if err != nil {
		return "", fmt.Errorf("build image layer: %w", err)
	}
	cfg, err := json.Marshal(map[string]any{
		"created":      imageEpoch.Format(time.RFC3339),
		"architecture": goruntime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"User":       fmt.Sprintf("%d:%d", SandboxUID, SandboxGID),
			"Entrypoint": DefaultInit,
			"Env":        baseEnv,
			"WorkingDir": WorkspaceDir,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layer.diffID}},
	})
	if err != nil {
		return "", err
	}
	blobs := map[string]blob{}
	add := func(b []byte, mediaType string) map[string]any {
		d := "sha256:" + hexSum(b)
		blobs[d] = blob{data: b, size: int64(len(b))}
		return map[string]any{"mediaType": mediaType, "digest": d, "size": len(b)}
	}
	blobs[layer.digest] = blob{path: layer.path, size: layer.size}
	layerType := "application/vnd.oci.image.layer.v1.tar+gzip"
	if o.Uncompressed {
		layerType = "application/vnd.oci.image.layer.v1.tar"
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        add(cfg, "application/vnd.oci.image.config.v1+json"),
		"layers": []any{map[string]any{
			"mediaType": layerType, "digest": layer.digest, "size": layer.size,
		}},
	})
	if err != nil {
		return "", err
	}
	mdesc := add(manifest, "application/vnd.oci.image.manifest.v1+json")
	mdesc["platform"] = map[string]string{"architecture": goruntime.GOARCH, "os": "linux"}
	mdesc["annotations"] = map[string]string{
		"io.containerd.image.name":          o.Ref,
		"org.opencontainers.image.ref.name": o.Ref,
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{mdesc},
	})
	if err != nil {
		return "", err
	}
	return writeLayout(o.Out, index, blobs)
}

// blob is the content of one blob: bytes in memory or a file.
type blob struct {
	data []byte
	path string
	size int64
}

// writeLayout writes the OCI layout tar: oci-layout, index.json and
// blobs/sha256/*.
func writeLayout(out string, index []byte, blobs map[string]blob) (string, error) {
	var f *os.File
	var err error
	if out == "" {
		f, err = os.CreateTemp("", "parachute-image-*.tar")
	} else {
		f, err = os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	}
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(f)
	put := func(name string, b blob) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: b.size, ModTime: imageEpoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if b.path == "" {
			_, err := tw.Write(b.data)
			return err
		}
		src, err := os.Open(b.path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.CopyN(tw, src, b.size)
		return err
	}
	err = put("oci-layout", blob{data: []byte(`{"imageLayoutVersion":"1.0.0"}`), size: 30})
	if err == nil {
		err = put("index.json", blob{data: index, size: int64(len(index))})
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	slices.Sort(digests)
	for _, d := range digests {
		if err == nil {
			err = put("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d])
		}
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write image tar: %w", err)
	}
	return f.Name(), nil
}

// composeLayer lists the root filesystem's entries.
func composeLayer(ctx context.Context, o BuildOptions) (*layer, error) {
	l := newLayer()
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o555}, {"run", 0o755}, {"run/parachute", 0o755}, {"sys", 0o555}, {"tmp", 0o1777}, {"usr", 0o755}, {"usr/bin", 0o755}, {"workspace", 0o755}} {
		if err := l.dir(d.name, d.mode, "base"); err != nil {
			return nil, err
		}
	}
	if err := l.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/false\n"), "base"); err != nil {
		return nil, err
	}
	if err := l.file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"), "base"); err != nil {
		return nil, err
	}
	bin, err := filepath.EvalSymlinks(o.Binary)
	if err == nil {
		err = l.hostFile("parachute", bin, 0o755, "--binary")
	}
	if err != nil {
		return nil, err
	}
	if o.Busybox != "" {
		bb, err := filepath.EvalSymlinks(o.Busybox)
		if err != nil {
			return nil, err
		}
		if err := addBusybox(ctx, l, bb); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(o.Files))
	for n := range o.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		src, err := filepath.EvalSymlinks(o.Files[n])
		if err == nil {
			err = l.hostFile(n, src, 0o755, "file "+o.Files[n])
		}
		if err != nil {
			return nil, err
		}
	}
	for _, b := range o.Add {
		if err := l.addBinary(b); err != nil {
			return nil, err
		}
	}
	for _, d := range o.AddDirs {
		if err := l.addDir(d); err != nil {
			return nil, err
		}
	}
	for _, n := range slices.Sorted(maps.Keys(o.Links)) {
		target := o.Links[n]
		if !path.IsAbs(n) || !path.IsAbs(target) {
			return nil, fmt.Errorf("%w: link %s -> %s: both paths must be absolute", ErrInvalidSpec, n, target)
		}
		if err := l.put(n, &layerEntry{typ: tar.TypeSymlink, mode: 0o777, link: target, origin: "link " + n}); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// addBusybox installs /bin/busybox and a symlink per applet it lists.
// The applets are weak: a binary added with --add replaces one.
func addBusybox(ctx context.Context, l *layer, bb string) error {
	if err := l.hostFile("bin/busybox", bb, 0o755, "--busybox"); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", bb, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := l.put("bin/"+applet, &layerEntry{typ: tar.TypeSymlink, mode: 0o777, link: "busybox", origin: "busybox applet", weak: true}); err != nil {
			return err
		}
	}
	return nil
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// copyFile is used by tests and the CLI to stage binaries.
func copyFile(dst, src string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
