// Package beneath opens files and folders beneath one root folder without
// following a symbolic link or crossing a mount point at any component.
//
// A path is never resolved by name from the root again once something has
// been opened: callers hold folder file descriptors (Dir) and open, create,
// rename and list relative to them, so a symlink or mount swapped in between
// two steps is met by the kernel at the step it affects and refused there.
//
// Where the kernel has openat2 (Linux 5.6), a whole path is opened in one
// call with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|
// RESOLVE_NO_XDEV: the kernel refuses a symlink at any component (the last
// included), a magic link (/proc/self/fd/…), a ".." that climbs out and any
// mount crossing. Where it is missing (ENOSYS, or EPERM from a seccomp
// filter), the same rules hold through a walk one component at a time: each
// component is opened with openat(O_NOFOLLOW|O_CLOEXEC), "." and ".." are
// refused as components, and what was opened is fstat'ed and must be on the
// root's device and, where the kernel reports it (statx STATX_MNT_ID, else
// /proc/self/fdinfo), on the root's mount, so a bind mount of the same
// filesystem is caught too.
//
// Names are relative, slash-separated paths; they are cleaned lexically
// (a/./b, a//b, a/x/../b) before they are opened, which is what the kernel
// would do with no symlink allowed, and a path whose cleaned form starts
// with ".." is refused as leaving the root.
package beneath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Errors a path is refused with, wrapped with the workspace-relative name
// of the component that caused it.
var (
	ErrSymlink = errors.New("refusing to follow a symbolic link")
	ErrMount   = errors.New("refusing to cross a mount point")
	ErrEscape  = errors.New("path leaves the root folder")
	ErrBadName = errors.New("path must be relative to the root folder")
	ErrTooMany = errors.New("folder has too many entries")
)

// resolve is what openat2 must refuse at every component.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// statMask is what a check needs from statx.
const statMask = unix.STATX_TYPE | unix.STATX_MODE | unix.STATX_NLINK | unix.STATX_INO |
	unix.STATX_SIZE | unix.STATX_MTIME | unix.STATX_MNT_ID

// Options configure Open.
type Options struct {
	// Walk forces the component-by-component walk even where openat2
	// exists, so the fallback can be tested on any kernel.
	Walk bool
}

// Root is an open root folder. It is safe for concurrent use.
type Root struct {
	dir    *Dir
	major  uint32 // device of the root folder
	minor  uint32
	mnt    uint64 // mount ID of the root folder, if known
	hasMnt bool
	walk   bool // openat2 is missing (or Options.Walk)
}

// Open opens the folder path as a root. path itself is the operator's
// (the gateway's workspace folder) and is opened as given.
func Open(path string, opts Options) (*Root, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	r := &Root{walk: opts.Walk}
	r.dir = &Dir{r: r, fd: fd, name: "."}
	st, err := statFd(fd)
	if err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	r.major, r.minor = st.Dev_major, st.Dev_minor
	// Without a mount ID (no statx STATX_MNT_ID, no /proc) the walk can
	// compare only devices, which a bind mount of the same filesystem
	// passes; openat2's RESOLVE_NO_XDEV has no such gap.
	r.mnt, r.hasMnt = mountID(fd, st)
	if !r.walk {
		probe, err := unix.Openat2(fd, ".", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolve})
		switch {
		case err == nil:
			unix.Close(probe)
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
			r.walk = true
		default:
			unix.Close(fd)
			return nil, &fs.PathError{Op: "openat2", Path: path, Err: err}
		}
	}
	return r, nil
}

// Walking reports whether the root uses the component walk (no openat2).
func (r *Root) Walking() bool { return r.walk }

// Close releases the root folder.
func (r *Root) Close() error { return r.dir.Close() }

// Split cleans a relative name into its components; the root itself is
// no components.
func Split(name string) ([]string, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("%w: %q", ErrBadName, name)
	}
	if filepath.IsAbs(name) {
		return nil, fmt.Errorf("%w: %q", ErrBadName, name)
	}
	c := filepath.ToSlash(filepath.Clean(name))
	if c == "." {
		return nil, nil
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return nil, fmt.Errorf("%w: %q", ErrEscape, name)
	}
	return strings.Split(c, "/"), nil
}

// OpenDir opens the folder name beneath the root.
func (r *Root) OpenDir(name string) (*Dir, error) {
	comps, err := Split(name)
	if err != nil {
		return nil, err
	}
	return r.openDir(comps)
}

// OpenParent opens the folder that holds name and returns it with name's
// last component. name must not be the root itself.
func (r *Root) OpenParent(name string) (*Dir, string, error) {
	comps, err := Split(name)
	if err != nil {
		return nil, "", err
	}
	if len(comps) == 0 {
		return nil, "", fmt.Errorf("%w: the root folder has no parent here", ErrBadName)
	}
	d, err := r.openDir(comps[:len(comps)-1])
	if err != nil {
		return nil, "", err
	}
	return d, comps[len(comps)-1], nil
}

// MkdirAll opens the folder name, creating each missing component with
// mkdirat relative to the folder before it, and returns it open.
func (r *Root) MkdirAll(name string, perm uint32) (*Dir, error) {
	comps, err := Split(name)
	if err != nil {
		return nil, err
	}
	cur := r.dir
	for _, c := range comps {
		next, err := cur.OpenDir(c)
		if errors.Is(err, fs.ErrNotExist) {
			if err = cur.Mkdir(c, perm); err == nil || errors.Is(err, fs.ErrExist) {
				next, err = cur.OpenDir(c)
			}
		}
		if cur != r.dir {
			cur.Close()
		}
		if err != nil {
			return nil, err
		}
		cur = next
	}
	if cur == r.dir {
		return r.dir.reopen()
	}
	return cur, nil
}

func (r *Root) openDir(comps []string) (*Dir, error) {
	if len(comps) == 0 {
		return r.dir.reopen()
	}
	name := strings.Join(comps, "/")
	if !r.walk {
		fd, err := unix.Openat2(r.dir.fd, name, &unix.OpenHow{
			Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolve})
		if err == nil {
			return &Dir{r: r, fd: fd, name: name}, nil
		}
		if !refusal(err) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		// The kernel refused a link or a mount somewhere on the path;
		// walk it to name the component. If the walk now succeeds the
		// path changed in between: the refusal stands, named by the path.
		d, werr := r.walkDir(comps)
		if werr != nil {
			return nil, werr
		}
		d.Close()
		return nil, r.classify(name, err)
	}
	return r.walkDir(comps)
}

func (r *Root) walkDir(comps []string) (*Dir, error) {
	cur := r.dir
	for _, c := range comps {
		next, err := cur.OpenDir(c)
		if cur != r.dir {
			cur.Close()
		}
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// refusal reports whether err is openat2 refusing a link or a mount.
func refusal(err error) bool {
	return errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR)
}

// classify names a refusal at name.
func (r *Root) classify(name string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %s", ErrSymlink, name)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: %s", ErrMount, name)
	}
	return &fs.PathError{Op: "open", Path: name, Err: err}
}

// Dir is an open folder beneath a root. Its methods take one component
// (no "/", not "." or "..") and act relative to the folder's descriptor.
type Dir struct {
	r    *Root
	fd   int
	name string // root-relative path, for messages
}

// Name is the folder's root-relative path as it was opened.
func (d *Dir) Name() string { return d.name }

// Fd is the folder's descriptor, valid until Close.
func (d *Dir) Fd() int { return d.fd }

// Close releases the folder.
func (d *Dir) Close() error { return unix.Close(d.fd) }

func (d *Dir) reopen() (*Dir, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.name, Err: err}
	}
	return &Dir{r: d.r, fd: fd, name: d.name}, nil
}

// Join is the root-relative path of comp in d.
func (d *Dir) Join(comp string) string {
	if d.name == "." {
		return comp
	}
	return d.name + "/" + comp
}

func checkComp(comp string) error {
	if comp == "" || comp == "." || comp == ".." || strings.ContainsAny(comp, "/\x00") {
		return fmt.Errorf("%w: %q is not one folder entry", ErrBadName, comp)
	}
	return nil
}

// open opens comp in d with flags (O_NOFOLLOW and O_CLOEXEC added),
// refusing a symlink and a mount crossing.
func (d *Dir) open(comp string, flags int, perm uint32) (int, error) {
	if err := checkComp(comp); err != nil {
		return -1, err
	}
	name := d.Join(comp)
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !d.r.walk {
		how := &unix.OpenHow{Flags: uint64(flags), Resolve: resolve}
		if flags&unix.O_CREAT != 0 {
			how.Mode = uint64(perm)
		}
		fd, err := unix.Openat2(d.fd, comp, how)
		if err != nil {
			return -1, d.explain(comp, name, err)
		}
		return fd, nil
	}
	fd, err := unix.Openat(d.fd, comp, flags, perm)
	if err != nil {
		return -1, d.explain(comp, name, err)
	}
	if err := d.r.sameMount(fd); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%w: %s", err, name)
	}
	return fd, nil
}

// explain turns an open error at comp into a named refusal.
func (d *Dir) explain(comp, name string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %s", ErrSymlink, name)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: %s", ErrMount, name)
	case errors.Is(err, unix.ENOTDIR):
		// O_DIRECTORY|O_NOFOLLOW on a link may say ENOTDIR.
		if st, serr := d.Lstat(comp); serr == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("%w: %s", ErrSymlink, name)
		}
	}
	return &fs.PathError{Op: "open", Path: name, Err: err}
}

// sameMount refuses an open file that is not on the root's device and, if
// known, the root's mount.
func (r *Root) sameMount(fd int) error {
	st, err := statFd(fd)
	if err != nil {
		return err
	}
	if st.Dev_major != r.major || st.Dev_minor != r.minor {
		return ErrMount
	}
	if r.hasMnt {
		if mnt, ok := mountID(fd, st); ok && mnt != r.mnt {
			return ErrMount
		}
	}
	return nil
}

// OpenDir opens the folder comp in d.
func (d *Dir) OpenDir(comp string) (*Dir, error) {
	fd, err := d.open(comp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	return &Dir{r: d.r, fd: fd, name: d.Join(comp)}, nil
}

// OpenFile opens comp in d with flags as an *os.File.
func (d *Dir) OpenFile(comp string, flags int, perm uint32) (*os.File, error) {
	fd, err := d.open(comp, flags, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), d.Join(comp)), nil
}

// Lstat is comp's status without following a link. A mount point reports
// the mounted folder; MountPoint tells.
func (d *Dir) Lstat(comp string) (*unix.Statx_t, error) {
	if err := checkComp(comp); err != nil {
		return nil, err
	}
	var st unix.Statx_t
	if err := unix.Statx(d.fd, comp, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, statMask, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: d.Join(comp), Err: err}
	}
	return &st, nil
}

// Stat is the folder's own status.
func (d *Dir) Stat() (*unix.Statx_t, error) { return statFd(d.fd) }

// OnRootMount reports whether st (from Lstat or a file's fstat) is on the
// root's device and, where known, mount.
func (r *Root) OnRootMount(st *unix.Statx_t) bool {
	if st.Dev_major != r.major || st.Dev_minor != r.minor {
		return false
	}
	return !r.hasMnt || st.Mask&unix.STATX_MNT_ID == 0 || st.Mnt_id == r.mnt
}

// Root is the root d lies beneath.
func (d *Dir) Root() *Root { return d.r }

// Mkdir creates the folder comp in d.
func (d *Dir) Mkdir(comp string, perm uint32) error {
	if err := checkComp(comp); err != nil {
		return err
	}
	if err := unix.Mkdirat(d.fd, comp, perm); err != nil {
		return &fs.PathError{Op: "mkdir", Path: d.Join(comp), Err: err}
	}
	return nil
}

// Remove unlinks the file (not folder) comp in d.
func (d *Dir) Remove(comp string) error {
	if err := checkComp(comp); err != nil {
		return err
	}
	if err := unix.Unlinkat(d.fd, comp, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: d.Join(comp), Err: err}
	}
	return nil
}

// Rename moves comp in d over toComp in to (replacing a file there).
func (d *Dir) Rename(comp string, to *Dir, toComp string) error {
	if err := errors.Join(checkComp(comp), checkComp(toComp)); err != nil {
		return err
	}
	if err := unix.Renameat(d.fd, comp, to.fd, toComp); err != nil {
		return &os.LinkError{Op: "rename", Old: d.Join(comp), New: to.Join(toComp), Err: err}
	}
	return nil
}

// RenameNoReplace moves comp in d to toComp in to, failing with
// fs.ErrExist if toComp exists: the kernel checks and moves in one step
// (renameat2 RENAME_NOREPLACE).
func (d *Dir) RenameNoReplace(comp string, to *Dir, toComp string) error {
	if err := errors.Join(checkComp(comp), checkComp(toComp)); err != nil {
		return err
	}
	if err := unix.Renameat2(d.fd, comp, to.fd, toComp, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "rename", Old: d.Join(comp), New: to.Join(toComp), Err: err}
	}
	return nil
}

// Entry is one name in a folder and its type bits (fs.ModeDir,
// fs.ModeSymlink, 0 for a regular file, fs.ModeIrregular and the like
// otherwise), read from the folder itself, never by a path.
type Entry struct {
	Name string
	Type fs.FileMode
}

// IsDir reports whether the entry is a folder (never a link to one).
func (e Entry) IsDir() bool { return e.Type == fs.ModeDir }

// ReadDir lists d with getdents, sorted by name, refusing more than max
// entries. Entries the filesystem gives no type for are typed with statx
// on d's descriptor.
func (d *Dir) ReadDir(max int) ([]Entry, error) {
	// A fresh descriptor so each listing starts at the beginning and
	// concurrent listings of one Dir do not share an offset.
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.name, Err: err}
	}
	defer unix.Close(fd)
	var out []Entry
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, &fs.PathError{Op: "getdents", Path: d.name, Err: err}
		}
		if n <= 0 {
			break
		}
		for off := 0; off+19 <= n; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			ino := binary.NativeEndian.Uint64(buf[off:])
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			if reclen < 19 || off+reclen > n {
				return nil, &fs.PathError{Op: "getdents", Path: d.name, Err: unix.EINVAL}
			}
			typ := buf[off+18]
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			off += reclen
			if ino == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			if len(out) >= max {
				return nil, fmt.Errorf("%w: more than %d in %s", ErrTooMany, max, d.name)
			}
			e := Entry{Name: string(name)}
			if e.Type, err = d.entryType(e.Name, typ); err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (d *Dir) entryType(name string, typ uint8) (fs.FileMode, error) {
	switch typ {
	case unix.DT_DIR:
		return fs.ModeDir, nil
	case unix.DT_REG:
		return 0, nil
	case unix.DT_LNK:
		return fs.ModeSymlink, nil
	case unix.DT_FIFO:
		return fs.ModeNamedPipe, nil
	case unix.DT_SOCK:
		return fs.ModeSocket, nil
	case unix.DT_CHR:
		return fs.ModeDevice | fs.ModeCharDevice, nil
	case unix.DT_BLK:
		return fs.ModeDevice, nil
	}
	st, err := d.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return fs.ModeIrregular, nil // gone since the listing
	}
	if err != nil {
		return 0, err
	}
	return TypeOf(st), nil
}

// TypeOf is the fs.FileMode type bits of st.
func TypeOf(st *unix.Statx_t) fs.FileMode {
	switch uint32(st.Mode) & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFREG:
		return 0
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

// Fstat is the status of the open file f, through its descriptor.
func Fstat(f *os.File) (*unix.Statx_t, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var st *unix.Statx_t
	var serr error
	if err := rc.Control(func(fd uintptr) { st, serr = statFd(int(fd)) }); err != nil {
		return nil, err
	}
	return st, serr
}

func statFd(fd int) (*unix.Statx_t, error) {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, statMask, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// mountID is the mount ID of the open fd: from statx where the kernel
// reports it (5.8), else from /proc/self/fdinfo (3.15).
func mountID(fd int, st *unix.Statx_t) (uint64, bool) {
	if st.Mask&unix.STATX_MNT_ID != 0 {
		return st.Mnt_id, true
	}
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return id, err == nil
		}
	}
	return 0, false
}
