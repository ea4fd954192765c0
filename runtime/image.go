package runtime

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
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
}

// imageEpoch is the modification time of every file in the image, so the
// same inputs give the same digest.
var imageEpoch = time.Unix(1700000000, 0).UTC()

// BuildImage writes an OCI image layout tar of a minimal sandbox image: the
// binary as /parachute (also the entrypoint, `/parachute sandbox init`),
// optionally busybox for a shell, /tmp mode 1777, /workspace and
// /run/parachute, and user 65534. It returns the tar's path.
func BuildImage(ctx context.Context, o BuildOptions) (string, error) {
	if o.Binary == "" {
		return "", fmt.Errorf("%w: BuildImage needs a binary", ErrInvalidSpec)
	}
	if o.Ref == "" {
		o.Ref = DefaultImage
	}
	layer, diffID, err := buildLayer(ctx, o)
	if err != nil {
		return "", err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(layer); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
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
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return "", err
	}
	blobs := map[string][]byte{}
	add := func(b []byte, mediaType string) map[string]any {
		d := "sha256:" + hexSum(b)
		blobs[d] = b
		return map[string]any{"mediaType": mediaType, "digest": d, "size": len(b)}
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        add(cfg, "application/vnd.oci.image.config.v1+json"),
		"layers":        []any{add(gz.Bytes(), "application/vnd.oci.image.layer.v1.tar+gzip")},
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

// writeLayout writes the OCI layout tar: oci-layout, index.json and
// blobs/sha256/*.
func writeLayout(out string, index []byte, blobs map[string][]byte) (string, error) {
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
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: imageEpoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	err = put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	if err == nil {
		err = put("index.json", index)
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

// buildLayer returns the uncompressed root filesystem tar and its diff ID.
func buildLayer(ctx context.Context, o BuildOptions) ([]byte, string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: mode, Typeflag: tar.TypeDir, ModTime: imageEpoch})
	}
	file := func(name string, mode int64, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: imageEpoch}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	hostFile := func(name, src string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return file(name, 0o755, b)
	}
	var err error
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o555}, {"run", 0o755}, {"run/parachute", 0o755}, {"sys", 0o555}, {"tmp", 0o1777}, {"usr", 0o755}, {"usr/bin", 0o755}, {"workspace", 0o755}} {
		if err == nil {
			err = dir(d.name, d.mode)
		}
	}
	if err == nil {
		err = file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/false\n"))
	}
	if err == nil {
		err = file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	}
	if err == nil {
		err = hostFile("parachute", o.Binary)
	}
	if err == nil && o.Busybox != "" {
		err = addBusybox(ctx, tw, o.Busybox, hostFile)
	}
	names := make([]string, 0, len(o.Files))
	for n := range o.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err == nil {
			clean := strings.TrimPrefix(path.Clean("/"+n), "/")
			err = hostFile(clean, o.Files[n])
		}
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return nil, "", fmt.Errorf("build image layer: %w", err)
	}
	return buf.Bytes(), "sha256:" + hexSum(buf.Bytes()), nil
}

// addBusybox installs /bin/busybox and a symlink per applet it lists.
func addBusybox(ctx context.Context, tw *tar.Writer, bb string, hostFile func(name, src string) error) error {
	if err := hostFile("bin/busybox", bb); err != nil {
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
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777, ModTime: imageEpoch}); err != nil {
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
