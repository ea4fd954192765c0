package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// PreSessionHook is the hook's path relative to the workspace.
const PreSessionHook = ".parachute/hooks/pre-session.sh"

// hookOutputLimit caps what a hook may print.
const hookOutputLimit = 64 << 10

// ErrHookRefused: the profile does not allow hooks, or the hook file is not
// one we will run.
var ErrHookRefused = errors.New("runtime: hook refused")

// RunPreSessionHook runs <workspace>/.parachute/hooks/pre-session.sh on the
// host with /bin/sh, the workspace as working folder, a minimal
// environment and a timeout (default 30s) after which its process group
// is killed. It refuses unless p.Runtime is "direct" and p.Hooks is set: a
// hook is host code written by whoever can write the vault. It also
// refuses a hook reached through a symlink or writable by group or others.
// No hook file: ran is false and err nil. A hook that exits non-zero: ran
// is true and err says so.
func RunPreSessionHook(ctx context.Context, workspace string, p engine.SessionProfile, timeout time.Duration) (ran bool, out []byte, err error) {
	if p.Runtime != "direct" || !p.Hooks {
		return false, nil, fmt.Errorf("%w: hooks need runtime direct and hooks allowed (runtime %q, hooks %v)", ErrHookRefused, p.Runtime, p.Hooks)
	}
	if !filepath.IsAbs(workspace) {
		return false, nil, fmt.Errorf("%w: workspace %q is not an absolute path", ErrInvalidSpec, workspace)
	}
	ws, err := filepath.EvalSymlinks(workspace)
	if err != nil {
		return false, nil, fmt.Errorf("%w: workspace: %w", ErrInvalidSpec, err)
	}
	path := ws
	for _, el := range []string{".parachute", "hooks", "pre-session.sh"} {
		path = filepath.Join(path, el)
		st, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil, nil
		}
		if err != nil {
			return false, nil, err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return false, nil, fmt.Errorf("%w: %s is a symlink", ErrHookRefused, path)
		}
		if st.Mode().Perm()&0o022 != 0 {
			return false, nil, fmt.Errorf("%w: %s is writable by group or others", ErrHookRefused, path)
		}
		if el == "pre-session.sh" && !st.Mode().IsRegular() {
			return false, nil, fmt.Errorf("%w: %s is not a regular file", ErrHookRefused, path)
		}
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	buf := &limitedBuffer{max: hookOutputLimit}
	cmd := exec.Command("/bin/sh", path)
	cmd.Dir = ws
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + ws, "PARACHUTE_WORKSPACE=" + ws}
	cmd.Stdout, cmd.Stderr = buf, buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return false, nil, fmt.Errorf("start hook: %w", err)
	}
	waitC := make(chan error, 1)
	go func() { waitC <- cmd.Wait() }()
	select {
	case err = <-waitC:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waitC
		return true, buf.b, fmt.Errorf("pre-session hook: %w", ctx.Err())
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		return true, buf.b, fmt.Errorf("pre-session hook: %w", err)
	}
	return true, buf.b, nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
