package runtime

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/engine"
)

// DefaultDiskDir holds the workspace disk images when the options name no
// folder (the gateway passes <state_dir>/disks).
const DefaultDiskDir = "/var/lib/parachute/disks"

// A workspace with a disk quota (Profile.DiskMB > 0) is its own ext4
// filesystem: an image file of exactly DiskMB, allocated in full when it
// is made (fallocate), loop-mounted on the workspace folder on the host.
// The sandbox's /workspace is a bind of that folder, and the vault tools
// write into the same folder, so both get ENOSPC at the cap, and filling
// it takes nothing more from the host filesystem: its blocks were taken
// when the image was made. The operator still sees plain files in the
// workspace folder while it is mounted: from the first session using it
// until the gateway stops (ReleaseDisks).
//
// Why not a project quota: the host's / here is ext4 without the quota
// and project features (tune2fs -O quota,project needs the filesystem
// unmounted), and a project quota also counts nothing against root's
// reserved blocks rule. A loop image works on any filesystem that
// supports fallocate.
var quotaMu sync.Mutex // one image made or mounted at a time

// diskImage is the image file of a workspace: <dir>/<sha256 of its real
// path>.ext4.
func diskImage(dir, ws string) string {
	sum := sha256.Sum256([]byte(ws))
	return filepath.Join(dir, hex.EncodeToString(sum[:12])+".ext4")
}

// applyQuota makes sure ws (a resolved real path) is the mount point of
// its disk image of mb MiB, making the image on first use. Files already
// in the folder are moved into the new filesystem first. A folder with
// another filesystem mounted on it is refused; an image of another size
// is refused too (it would be a cap other than the one decided).
func applyQuota(ctx context.Context, dir, ws string, mb int64) error {
	if mb <= 0 {
		return nil
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%w: disk dir %q is not absolute", ErrInvalidSpec, dir)
	}
	quotaMu.Lock()
	defer quotaMu.Unlock()
	img := diskImage(dir, ws)
	mounted, src, err := mountedAt(ws)
	if err != nil {
		return err
	}
	if mounted {
		backing, err := loopBacking(src)
		if err != nil || backing != img {
			return fmt.Errorf("%w: workspace %s has %s mounted on it, not its disk image %s", ErrInvalidSpec, ws, src, img)
		}
		if err := checkImageSize(img, mb); err != nil {
			return err
		}
		mountedDisks.Store(ws, img)
		return nil
	}
	st, err := os.Lstat(img)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := makeImage(ctx, dir, img, mb); err != nil {
			return err
		}
		if err := moveInto(ctx, ws, img); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("disk image %s: %w", img, err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("%w: disk image %s is not a regular file", ErrInvalidSpec, img)
	default:
		if err := checkImageSize(img, mb); err != nil {
			return err
		}
	}
	if err := mountImage(ctx, img, ws); err != nil {
		return err
	}
	mountedDisks.Store(ws, img)
	return nil
}

// mountedDisks are the workspaces this process mounted or found mounted
// (workspace -> image), which ReleaseDisks unmounts.
var mountedDisks sync.Map

// ReleaseDisks unmounts every workspace disk image this process mounted
// or used (lazily: a busy mount goes once its last user does). The
// gateway calls it at shutdown: its files are then in the image only,
// <DiskDir>/<hash>.ext4, until the next session mounts it again (or the
// operator does: mount -o loop IMAGE FOLDER). It returns what it
// unmounted, workspace -> image.
func ReleaseDisks() map[string]string {
	quotaMu.Lock()
	defer quotaMu.Unlock()
	out := map[string]string{}
	mountedDisks.Range(func(k, v any) bool {
		ws, img := k.(string), v.(string)
		if mounted, src, err := mountedAt(ws); err == nil && mounted {
			if b, err := loopBacking(src); err == nil && b == img {
				if unix.Unmount(ws, unix.MNT_DETACH) == nil {
					out[ws] = img
				}
			}
		}
		mountedDisks.Delete(ws)
		return true
	})
	return out
}

// checkImageSize refuses an image whose size is not the cap decided.
func checkImageSize(img string, mb int64) error {
	st, err := os.Stat(img)
	if err != nil {
		return err
	}
	if st.Size() != mb<<20 {
		return fmt.Errorf("%w: disk image %s is %d MiB, the policy says disk_mb %d (resize it: umount the workspace, truncate -s %dM and resize2fs the image; or delete it to start empty)",
			ErrProfile, img, st.Size()>>20, mb, mb)
	}
	return nil
}

// makeImage allocates the image in full and makes an ext4 filesystem on
// it with no reserved blocks, its root folder owned by the sandbox user.
func makeImage(ctx context.Context, dir, img string, mb int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := img + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	// Allocated now, in full: the host filesystem cannot run out under a
	// workspace that fills up later.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, mb<<20); err != nil {
		f.Close()
		return fmt.Errorf("allocate %d MiB for %s: %w", mb, img, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Inode tables and journal are zeroed now, by mkfs on the file. Left
	// lazy, ext4's lazyinit thread zeroes them after the mount, through
	// the loop device, whose write-zeroes punches holes in the image: the
	// image lost 512 KiB of its allocation in a fresh-clone CI run.
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0",
		"-E", fmt.Sprintf("root_owner=%d:%d,nodiscard,lazy_itable_init=0,lazy_journal_init=0", SandboxUID, SandboxGID), tmp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s (install e2fsprogs)", img, err, bytes.TrimSpace(out))
	}
	// And any hole mkfs itself left is allocated again (mode 0 keeps the
	// data): the whole image is on the host's disk before it is used.
	f, err = os.OpenFile(tmp, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, mb<<20); err != nil {
		f.Close()
		return fmt.Errorf("allocate %d MiB for %s after mkfs: %w", mb, img, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, img)
}

// moveInto moves what the workspace folder holds into the image: copied
// (cp -a) onto the image mounted at a private folder, synced, and only
// then removed from the folder, so a failure at any step loses nothing.
func moveInto(ctx context.Context, ws, img string) error {
	entries, err := os.ReadDir(ws)
	if err != nil || len(entries) == 0 {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(img), "fill-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := mountImage(ctx, img, tmp); err != nil {
		return err
	}
	defer unix.Unmount(tmp, 0)
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--no-dereference", ws+"/.", tmp+"/").CombinedOutput(); err != nil {
		return fmt.Errorf("copy workspace %s into its disk image: %w: %s", ws, err, bytes.TrimSpace(out))
	}
	unix.Sync()
	if err := unix.Unmount(tmp, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", tmp, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(ws, e.Name())); err != nil {
			return fmt.Errorf("workspace %s copied into its disk image, but removing the originals failed: %w", ws, err)
		}
	}
	return nil
}

// mountImage loop-mounts img on dir, nosuid and nodev.
func mountImage(ctx context.Context, img, dir string) error {
	out, err := exec.CommandContext(ctx, "mount", "-t", "ext4", "-o", "loop,nosuid,nodev", img, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount disk image %s on %s: %w: %s", img, dir, err, bytes.TrimSpace(out))
	}
	return nil
}

// mountedAt reports whether dir is a mount point, and the mount's source.
func mountedAt(dir string) (bool, string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	var src string
	found := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional…] - type source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 || unescapeMount(fields[4]) != dir {
			continue
		}
		found = true // the last one is the one on top
		if p := strings.Fields(post); len(p) >= 2 {
			src = p[1]
		}
	}
	return found, src, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space…).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loopBacking returns the file behind a loop device (/dev/loopN).
func loopBacking(dev string) (string, error) {
	name := filepath.Base(dev)
	if !strings.HasPrefix(name, "loop") {
		return "", fmt.Errorf("%s is not a loop device", dev)
	}
	b, err := os.ReadFile("/sys/block/" + name + "/loop/backing_file")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// PrepareWorkspace applies the profile's disk quota to a workspace folder
// before anything opens it. The gateway calls it before the session's
// socket (and its vault tools, which hold the folder open) is served:
// opened before the mount, they would write underneath it, past the cap
// and out of the sandbox's sight. Start applies it again (a no-op once
// mounted).
func (c *Containerd) PrepareWorkspace(ctx context.Context, ws string, p engine.SessionProfile) error {
	if p.DiskMB <= 0 {
		return nil
	}
	real, err := filepath.EvalSymlinks(ws)
	if err != nil {
		return fmt.Errorf("%w: workspace: %w", ErrInvalidSpec, err)
	}
	_, err = prepareWorkspace(ctx, real, p.ReadOnly, c.opts.DiskDir, p.DiskMB)
	return err
}

// PrepareWorkspace is Containerd.PrepareWorkspace.
func (p *Pool) PrepareWorkspace(ctx context.Context, ws string, prof engine.SessionProfile) error {
	return p.c.PrepareWorkspace(ctx, ws, prof)
}
