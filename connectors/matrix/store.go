package matrix

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CheckStorePath checks, without creating or opening anything, that path
// can be the E2EE store: if it exists, a regular file (not a symbolic
// link) of this user, mode 0600; its folder, if it exists, a folder
// nobody else can write. The connector applies the same rules when it
// opens the store (without following links); doctor reports them early.
func CheckStorePath(path string) error {
	dir := filepath.Dir(path)
	if fi, err := os.Lstat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("crypto store folder %s is not a folder (a symbolic link?)", dir)
		}
		if fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("crypto store folder %s is writable by others (mode %o): chmod go-w %s", dir, fi.Mode().Perm(), dir)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("crypto store folder %s: %w", dir, err)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // made at the first start
	}
	if err != nil {
		return fmt.Errorf("crypto store %s: %w", path, err)
	}
	return checkStoreFile(path, fi)
}

func checkStoreFile(path string, fi fs.FileInfo) error {
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("crypto store %s is a symbolic link; give the real path", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("crypto store %s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("crypto store %s is readable by others (mode %o): chmod 600 %s", path, fi.Mode().Perm(), path)
	case st != nil && int(st.Uid) != os.Geteuid():
		return fmt.Errorf("crypto store %s belongs to uid %d, not to the gateway's user (%d)", path, st.Uid, os.Geteuid())
	}
	return nil
}
