package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/test/ctrd"
)

// TestDiskQuota fills a workspace with a 16 MiB disk_mb to ENOSPC, from
// inside the sandbox (both classes) and from the host (as the vault tools
// write): the writes stop at the cap, the image takes no more host blocks
// than when it was made, and the files already in the folder are there.
func TestDiskQuota(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		ctrd.Unavailable(t, "busybox-static not installed")
	}
	base := testRuntime(t)
	opts := base.Options()
	opts.DiskDir = filepath.Join(t.TempDir(), "disks")
	rt, err := NewContainerd(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	for _, class := range []string{ClassRunc, ClassGVisor} {
		t.Run(class, func(t *testing.T) {
			needClass(t, rt, class)
			ws := t.TempDir()
			os.WriteFile(filepath.Join(ws, "notes.txt"), []byte("kept"), 0o644)
			t.Cleanup(func() { unix.Unmount(ws, unix.MNT_DETACH) })
			p := limitsProfile("strict", false)
			p.RuntimeClass, p.DiskMB = class, 16
			sb, _ := startSandbox(t, rt, p, func(s *Spec) { s.Workspace = ws })

			img := diskImage(opts.DiskDir, ws)
			before := allocated(t, img)
			if before < 16<<20 {
				t.Errorf("image %s has %d bytes allocated, want all 16 MiB up front", img, before)
			}
			var hostBefore unix.Statfs_t
			unix.Statfs(opts.DiskDir, &hostBefore)

			var out, errOut bytes.Buffer
			res, err := sb.Exec(context.Background(), Turn{
				Args:   []string{"/bin/sh", "-c", "cat /workspace/notes.txt; dd if=/dev/zero of=/workspace/fill bs=1M count=64"},
				Stdout: &out, Stderr: &errOut, Timeout: time.Minute,
			})
			if err != nil || res.ExitCode == 0 || !strings.Contains(errOut.String(), "No space left on device") {
				t.Errorf("fill: %+v %v, stderr %q; want ENOSPC", res, err, errOut.String())
			}
			if !strings.HasPrefix(out.String(), "kept") {
				t.Errorf("the workspace's file inside: %q", out.String())
			}
			// The vault tools write into the same folder on the host.
			err = os.WriteFile(filepath.Join(ws, "from-host"), make([]byte, 32<<20), 0o644)
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("host write past the cap: %v, want ENOSPC", err)
			}
			st, err := os.Stat(filepath.Join(ws, "fill"))
			if err != nil || st.Size() > 16<<20 {
				t.Errorf("fill on the host: %v, %v", st, err)
			}
			if b, _ := os.ReadFile(filepath.Join(ws, "notes.txt")); string(b) != "kept" {
				t.Errorf("notes.txt on the host: %q", b)
			}
			if after := allocated(t, img); after != before {
				t.Errorf("image allocation %d -> %d bytes: the fill took host blocks", before, after)
			}
			var hostAfter unix.Statfs_t
			unix.Statfs(opts.DiskDir, &hostAfter)
			t.Logf("host free %d -> %d MiB (other writers share it)", hostBefore.Bavail*uint64(hostBefore.Bsize)>>20, hostAfter.Bavail*uint64(hostAfter.Bsize)>>20)

			// A second sandbox on the same workspace reuses the mount.
			sb.Stop(context.Background())
			sb2, _ := startSandbox(t, rt, p, func(s *Spec) { s.Workspace = ws })
			if _, out, _ := run(t, sb2, "/bin/cat", "/workspace/notes.txt"); out != "kept" {
				t.Errorf("second sandbox sees %q", out)
			}
		})
	}
}

// TestDiskQuotaRefusals: a folder with something else mounted on it, and
// an image of another size than decided, are refused.
func TestDiskQuotaRefusals(t *testing.T) {
	if os.Geteuid() != 0 {
		ctrd.Unavailable(t, "mounting needs root")
	}
	dir := filepath.Join(t.TempDir(), "disks")
	ws := t.TempDir()
	if err := unix.Mount("tmpfs", ws, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(ws, unix.MNT_DETACH)
	if err := applyQuota(context.Background(), dir, ws, 8); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "not its disk image") {
		t.Errorf("tmpfs on the workspace: %v", err)
	}
	ws2 := t.TempDir()
	if err := applyQuota(context.Background(), dir, ws2, 8); err != nil {
		t.Fatal(err)
	}
	if got := ReleaseDisks(); got[ws2] != diskImage(dir, ws2) {
		t.Errorf("ReleaseDisks = %v, want %s", got, ws2)
	}
	if m, _, _ := mountedAt(ws2); m {
		t.Errorf("%s still mounted after ReleaseDisks", ws2)
		unix.Unmount(ws2, 0)
	}
	if err := applyQuota(context.Background(), dir, ws2, 12); !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), "disk_mb 12") {
		t.Errorf("image of another size: %v", err)
	}
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
