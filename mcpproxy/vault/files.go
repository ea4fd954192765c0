package vault

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Errors the file operations refuse with. Tool results carry their text.
var (
	ErrTooLarge  = errors.New("file is larger than the limit")
	ErrSymlink   = errors.New("refusing to follow a symbolic link")
	ErrHardLink  = errors.New("refusing a file with more than one hard link")
	ErrNotFile   = errors.New("not a regular file")
	ErrBadName   = errors.New("path must be relative to the workspace")
	ErrExists    = errors.New("destination already exists")
	ErrNotFolder = errors.New("not a folder")
	ErrRaced     = errors.New("the file changed while it was being opened")
)

// clean turns a tool's path argument into a name for os.Root: relative,
// cleaned, "." for the workspace itself. os.Root refuses anything that
// escapes; this only refuses what is never meant relative to it.
func clean(name string) (string, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", ErrBadName
	}
	if filepath.IsAbs(name) {
		return "", fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return filepath.Clean(name), nil
}

// nlink is the hard-link count of a file, or 1 if unknown.
func nlink(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// checkRegular refuses anything but a regular file with one link.
func checkRegular(fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return ErrSymlink
	case !fi.Mode().IsRegular():
		return ErrNotFile
	case nlink(fi) > 1:
		return ErrHardLink
	}
	return nil
}

// readFile reads name beneath the root. The final component is opened
// without following a symlink and without blocking on a FIFO; the open file
// must be a regular file with a single link and at most max bytes.
func (s *Server) readFile(name string) ([]byte, error) {
	name, err := clean(name)
	if err != nil {
		return nil, err
	}
	// os.Root follows a link at the last component as long as it stays
	// beneath the root, so look first, then check that what was opened is
	// what was looked at: a link swapped in between is caught either way.
	lfi, err := s.root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if err := checkRegular(lfi); err != nil {
		return nil, err
	}
	f, err := s.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, symlinkErr(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkRegular(fi); err != nil {
		return nil, err
	}
	if !os.SameFile(lfi, fi) {
		return nil, ErrRaced
	}
	if fi.Size() > s.maxRead {
		return nil, fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, fi.Size(), s.maxRead)
	}
	b, err := io.ReadAll(io.LimitReader(f, s.maxRead+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > s.maxRead {
		return nil, fmt.Errorf("%w (limit %d bytes)", ErrTooLarge, s.maxRead)
	}
	return b, nil
}

// writeFile replaces name beneath the root with data: it writes an
// exclusive temporary file beside it and renames it over the target, so a
// reader never sees half a file and the write never follows a link. An
// existing target that is a symlink, not a regular file or hard-linked is
// refused.
func (s *Server) writeFile(name string, data []byte) error {
	name, err := clean(name)
	if err != nil {
		return err
	}
	if name == "." {
		return ErrNotFile
	}
	if int64(len(data)) > s.maxWrite {
		return fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, len(data), s.maxWrite)
	}
	perm := fs.FileMode(0o644)
	switch fi, err := s.root.Lstat(name); {
	case err == nil:
		if err := checkRegular(fi); err != nil {
			return err
		}
		perm = fi.Mode().Perm()
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	tmp, err := s.tempName(name)
	if err != nil {
		return err
	}
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = s.root.Remove(tmp)
		return err
	}
	if err := s.root.Rename(tmp, name); err != nil {
		_ = s.root.Remove(tmp)
		return err
	}
	return nil
}

// tempName is a fresh hidden name in the folder of name.
func (s *Server) tempName(name string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".parachute-"+hex.EncodeToString(b[:])), nil
}

// move renames source to destination beneath the root. Neither may be a
// hard-linked file; the destination must not exist.
func (s *Server) move(source, destination string) error {
	src, err := clean(source)
	if err != nil {
		return err
	}
	dst, err := clean(destination)
	if err != nil {
		return err
	}
	if src == "." || dst == "." {
		return ErrBadName
	}
	fi, err := s.root.Lstat(src)
	if err != nil {
		return err
	}
	if fi.Mode().IsRegular() && nlink(fi) > 1 {
		return ErrHardLink
	}
	if _, err := s.root.Lstat(dst); err == nil {
		return ErrExists
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return s.root.Rename(src, dst)
}

// symlinkErr names the refusal when O_NOFOLLOW met a link.
func symlinkErr(err error) error {
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("%w: %w", ErrSymlink, err)
	}
	return err
}
