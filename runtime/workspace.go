package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// forbiddenWorkspaces are host folders never mounted into a sandbox, even
// if a misconfiguration names one.
var forbiddenWorkspaces = []string{
	"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root",
	"/run", "/sbin", "/sys", "/usr", "/var", "/var/lib", "/var/run",
}

// prepareWorkspace resolves the workspace to a real absolute folder,
// creates <workspace>/.parachute (root-owned, 0755) when missing, and, when
// the sandbox may write, hands the top folder (only it, not the tree) to
// the sandbox user. It refuses a .parachute that is not a real folder: a
// symlink there would be bind-mounted with the host path it points at.
//
// With a disk quota (diskMB > 0) the folder is first made the mount point
// of its own filesystem of that size (applyQuota).
func prepareWorkspace(ctx context.Context, ws string, readOnly bool, diskDir string, diskMB int64) (string, error) {
	if !filepath.IsAbs(ws) {
		return "", fmt.Errorf("%w: workspace %q is not an absolute path", ErrInvalidSpec, ws)
	}
	real, err := filepath.EvalSymlinks(ws)
	if err != nil {
		return "", fmt.Errorf("%w: workspace: %w", ErrInvalidSpec, err)
	}
	if slices.Contains(forbiddenWorkspaces, real) {
		return "", fmt.Errorf("%w: workspace %q is a system folder", ErrInvalidSpec, real)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("%w: workspace: %w", ErrInvalidSpec, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%w: workspace %q is not a folder", ErrInvalidSpec, real)
	}
	if diskMB > 0 {
		if err := applyQuota(ctx, diskDir, real, diskMB); err != nil {
			return "", err
		}
		if st, err = os.Stat(real); err != nil {
			return "", fmt.Errorf("%w: workspace: %w", ErrInvalidSpec, err)
		}
	}
	hooks := filepath.Join(real, ".parachute")
	hst, err := os.Lstat(hooks)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(hooks, 0o755); err != nil {
			return "", fmt.Errorf("create %s: %w", hooks, err)
		}
	case err != nil:
		return "", err
	case !hst.IsDir():
		return "", fmt.Errorf("%w: %s is not a folder (%s)", ErrInvalidSpec, hooks, hst.Mode().Type())
	}
	if !readOnly {
		if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Uid != SandboxUID || sys.Gid != SandboxGID {
			if err := os.Lchown(real, SandboxUID, SandboxGID); err != nil {
				return "", fmt.Errorf("give workspace to the sandbox user: %w", err)
			}
		}
	}
	return real, nil
}

// prepareSocketDir resolves the session socket folder.
func prepareSocketDir(dir string) (string, error) {
	if dir == "" {
		return "", nil
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("%w: socket dir %q is not an absolute path", ErrInvalidSpec, dir)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("%w: socket dir: %w", ErrInvalidSpec, err)
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%w: socket dir %q is not a folder", ErrInvalidSpec, real)
	}
	if slices.Contains(forbiddenWorkspaces, real) {
		return "", fmt.Errorf("%w: socket dir %q is a system folder", ErrInvalidSpec, real)
	}
	return real, nil
}
