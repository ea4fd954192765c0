package vault

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/internal/beneath"
)

// Errors the file operations refuse with. Tool results carry their text,
// followed by the workspace-relative name it applies to.
var (
	ErrTooLarge  = errors.New("file is larger than the limit")
	ErrSymlink   = beneath.ErrSymlink
	ErrMount     = beneath.ErrMount
	ErrHardLink  = errors.New("refusing a file with more than one hard link")
	ErrNotFile   = errors.New("not a regular file")
	ErrBadName   = beneath.ErrBadName
	ErrExists    = errors.New("destination already exists")
	ErrNotFolder = errors.New("not a folder")
	ErrRaced     = errors.New("the file changed while it was being opened")
	// ErrProtected: .parachute holds the workspace's hooks and settings
	// and is read-only to sessions; the vault refuses to change it whatever
	// the policy in front of it decided.
	ErrProtected = errors.New("refusing to change .parachute (read-only to sessions)")
)

// protectedDir is the workspace folder no tool may change.
const protectedDir = ".parachute"

// split cleans a tool's path argument into its components ("." is none),
// refusing absolute paths and paths that climb out.
func split(name string) ([]string, error) { return beneath.Split(name) }

// protected reports whether comps lie in (or are) the workspace's
// .parachute folder, in any case spelling. The components are those the
// walk opens: no link is followed and no ".." is left, so the first
// component is the top-level entry the call would change.
func protected(comps []string) bool {
	return len(comps) > 0 && strings.EqualFold(comps[0], protectedDir)
}

// checkRegular refuses anything but a regular file with exactly one link
// on the workspace's own mount.
func (s *Server) checkRegular(name string, st *unix.Statx_t) error {
	switch t := beneath.TypeOf(st); {
	case t == fs.ModeSymlink:
		return fmt.Errorf("%w: %s", ErrSymlink, name)
	case t == fs.ModeDir:
		return fmt.Errorf("%w: %s is a folder", ErrNotFile, name)
	case t != 0:
		return fmt.Errorf("%w: %s is a %s", ErrNotFile, name, kind(t))
	case !s.root.OnRootMount(st):
		return fmt.Errorf("%w: %s", ErrMount, name)
	case st.Nlink != 1:
		return fmt.Errorf("%w: %s has %d", ErrHardLink, name, st.Nlink)
	}
	return nil
}

func kind(t fs.FileMode) string {
	switch {
	case t&fs.ModeNamedPipe != 0:
		return "FIFO"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// openParent opens the folder holding the file name and returns it with
// the file's last component; the workspace itself is not a file.
func (s *Server) openParent(name string) (*beneath.Dir, string, error) {
	comps, err := split(name)
	if err != nil {
		return nil, "", err
	}
	if len(comps) == 0 {
		return nil, "", fmt.Errorf("%w: the workspace folder itself", ErrNotFile)
	}
	dir, last, err := s.root.OpenParent(name)
	if err != nil {
		return nil, "", notFolder(err)
	}
	return dir, last, nil
}

// openDir opens the folder name beneath the workspace.
func (s *Server) openDir(name string) (*beneath.Dir, error) {
	d, err := s.root.OpenDir(name)
	return d, notFolder(err)
}

// notFolder names ENOTDIR: some component is a file.
func notFolder(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && errors.Is(pe.Err, unix.ENOTDIR) {
		return fmt.Errorf("%w: %s", ErrNotFolder, pe.Path)
	}
	return err
}

// readFile reads name beneath the workspace. Its folder is opened by the
// walk; the file is looked at (no link followed) and opened with
// O_NOFOLLOW|O_NONBLOCK, so a FIFO cannot block the call; then what was
// opened is checked through its descriptor: the same file that was looked
// at, a regular file with one link, on the workspace's mount, at most
// maxRead bytes.
func (s *Server) readFile(name string) ([]byte, error) {
	dir, last, err := s.openParent(name)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	rel := dir.Join(last)
	lst, err := dir.Lstat(last)
	if err != nil {
		return nil, err
	}
	if err := s.checkRegular(rel, lst); err != nil {
		return nil, err
	}
	f, err := dir.OpenFile(last, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := beneath.Fstat(f)
	if err != nil {
		return nil, err
	}
	if err := s.checkRegular(rel, st); err != nil {
		return nil, err
	}
	if st.Ino != lst.Ino || st.Dev_major != lst.Dev_major || st.Dev_minor != lst.Dev_minor {
		return nil, fmt.Errorf("%w: %s", ErrRaced, rel)
	}
	if int64(st.Size) > s.maxRead {
		return nil, fmt.Errorf("%w: %s (%d bytes, limit %d)", ErrTooLarge, rel, st.Size, s.maxRead)
	}
	b, err := io.ReadAll(io.LimitReader(f, s.maxRead+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > s.maxRead {
		return nil, fmt.Errorf("%w: %s (limit %d bytes)", ErrTooLarge, rel, s.maxRead)
	}
	return b, nil
}

// writeFile replaces name beneath the workspace with data. In the folder
// opened by the walk it creates an exclusive temporary file
// (O_CREAT|O_EXCL|O_NOFOLLOW), writes and fsyncs it, and renames it over
// the target within that folder, so a reader never sees half a file, no
// link is followed, and the rename replaces a directory entry (never
// writes through it). The temporary file is removed on every failure.
// An existing target that is a symlink, not a regular file or hard-linked
// is refused; nothing under .parachute is written.
func (s *Server) writeFile(name string, data []byte) error {
	comps, err := split(name)
	if err != nil {
		return err
	}
	if protected(comps) {
		return fmt.Errorf("%w: %s", ErrProtected, strings.Join(comps, "/"))
	}
	if int64(len(data)) > s.maxWrite {
		return fmt.Errorf("%w: %s (%d bytes, limit %d)", ErrTooLarge, name, len(data), s.maxWrite)
	}
	dir, last, err := s.openParent(name)
	if err != nil {
		return err
	}
	defer dir.Close()
	rel := dir.Join(last)
	perm := uint32(0o644)
	switch st, err := dir.Lstat(last); {
	case err == nil:
		if err := s.checkRegular(rel, st); err != nil {
			return err
		}
		perm = uint32(st.Mode) & 0o777
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	tmp, err := tempName(last)
	if err != nil {
		return err
	}
	f, err := dir.OpenFile(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, perm)
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_ = dir.Remove(tmp)
		}
	}()
	err = s.fault(faultWrite, dir, tmp, last)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fault(faultRename, dir, tmp, last)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", rel, err)
	}
	if err := dir.Rename(tmp, dir, last); err != nil {
		return fmt.Errorf("writing %s: %w", rel, err)
	}
	done = true
	return nil
}

// tempPrefix marks the vault's temporary files: "." + name + tempPrefix + hex.
const tempPrefix = ".parachute-"

// tempName is a fresh hidden name for a temporary file beside name, short
// enough for NAME_MAX whatever the length of name.
func tempName(name string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	const room = 255 - 1 - len(tempPrefix) - 16
	for len(name) > room {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return "." + name + tempPrefix + hex.EncodeToString(b[:]), nil
}

// mkdirAll creates the folder name and its missing parents, each with
// mkdirat in the folder opened before it.
func (s *Server) mkdirAll(name string) error {
	comps, err := split(name)
	if err != nil {
		return err
	}
	if protected(comps) {
		return fmt.Errorf("%w: %s", ErrProtected, strings.Join(comps, "/"))
	}
	d, err := s.root.MkdirAll(name, 0o755)
	if err != nil {
		return notFolder(err)
	}
	return d.Close()
}

// move renames source to destination beneath the workspace, from the
// folder opened for one to the folder opened for the other. The source
// must be a regular file with one link or a folder; the destination must
// not exist, which the kernel checks in the same step (RENAME_NOREPLACE).
// Nothing moves into or out of .parachute.
func (s *Server) move(source, destination string) error {
	for _, p := range []string{source, destination} {
		comps, err := split(p)
		if err != nil {
			return err
		}
		if len(comps) == 0 {
			return fmt.Errorf("%w: the workspace folder itself cannot be moved", ErrBadName)
		}
		if protected(comps) {
			return fmt.Errorf("%w: %s", ErrProtected, strings.Join(comps, "/"))
		}
	}
	sdir, slast, err := s.openParent(source)
	if err != nil {
		return err
	}
	defer sdir.Close()
	ddir, dlast, err := s.openParent(destination)
	if err != nil {
		return err
	}
	defer ddir.Close()
	srel := sdir.Join(slast)
	st, err := sdir.Lstat(slast)
	if err != nil {
		return err
	}
	if beneath.TypeOf(st) == fs.ModeDir {
		if !s.root.OnRootMount(st) {
			return fmt.Errorf("%w: %s", ErrMount, srel)
		}
	} else if err := s.checkRegular(srel, st); err != nil {
		return err
	}
	err = sdir.RenameNoReplace(slast, ddir, dlast)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A filesystem without RENAME_NOREPLACE: check, then rename. The
		// gap only lets a file created in between be replaced, inside
		// the same folder the decision covered.
		if _, lerr := ddir.Lstat(dlast); lerr == nil {
			return fmt.Errorf("%w: %s", ErrExists, ddir.Join(dlast))
		} else if !errors.Is(lerr, fs.ErrNotExist) {
			return lerr
		}
		err = sdir.Rename(slast, ddir, dlast)
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExists, ddir.Join(dlast))
	}
	return err
}

// stat is name's status without following a link at its last component
// (a link anywhere before it is refused). The workspace itself is ".".
func (s *Server) stat(name string) (*unix.Statx_t, error) {
	comps, err := split(name)
	if err != nil {
		return nil, err
	}
	if len(comps) == 0 {
		d, err := s.openDir(".")
		if err != nil {
			return nil, err
		}
		defer d.Close()
		return d.Stat()
	}
	dir, last, err := s.openParent(name)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	st, err := dir.Lstat(last)
	if err != nil {
		return nil, err
	}
	if !s.root.OnRootMount(st) {
		return nil, fmt.Errorf("%w: %s", ErrMount, dir.Join(last))
	}
	return st, nil
}

// Points in writeFile where a test can inject a failure or a change.
const (
	faultWrite  = iota // the temporary file exists, nothing written yet
	faultRename        // written and synced, before the rename
)

// fault runs the test hook for point, if any.
func (s *Server) fault(point int, dir *beneath.Dir, tmp, name string) error {
	if s.faults == nil {
		return nil
	}
	return s.faults(point, dir, tmp, name)
}
