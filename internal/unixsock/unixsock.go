// Package unixsock is the gateway's private unix sockets: a listener that
// is mode 0600 from its first instant, and the credentials of whoever
// connects. The local connector's socket and the operator API use it.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// Listen listens on path with mode 0600 from the first instant: the socket
// is bound inside a fresh 0700 folder next to path, chmodded, then renamed
// into place, so no other user can ever connect to it. A stale socket at
// path is replaced; anything else there (a file, a symlink, a folder) is
// refused, never followed. The caller removes the socket when done (it is
// not unlinked on Close, as it was moved).
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket (%s); remove it or choose another path", path, st.Mode().Type())
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, ".sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(bound, 0o600); err != nil {
		ul.Close()
		return nil, err
	}
	if err := os.Rename(bound, path); err != nil {
		ul.Close()
		return nil, err
	}
	return ul, nil
}

// ErrNotUnix: the connection is not a unix socket connection, so it has
// no peer credentials.
var ErrNotUnix = errors.New("not a unix connection")

// PeerCred reads the uid and pid of the process on the other end of conn
// (SO_PEERCRED: what the kernel recorded when it connected).
func PeerCred(conn net.Conn) (uid, pid int, err error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return -1, -1, ErrNotUnix
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, -1, err
	}
	uid, pid = -1, -1
	cerr := raw.Control(func(fd uintptr) {
		var cred *syscall.Ucred
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		if err == nil {
			uid, pid = int(cred.Uid), int(cred.Pid)
		}
	})
	return uid, pid, errors.Join(err, cerr)
}
