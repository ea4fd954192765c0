package unixsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenIsPrivateAndNamesItsPeer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st, err := os.Lstat(path)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v, want a 0600 socket", st, err)
	}
	done := make(chan struct{})
	var uid int
	var perr error
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			perr = err
			return
		}
		defer c.Close()
		uid, _, perr = PeerCred(c)
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-done
	if perr != nil || uid != os.Getuid() {
		t.Fatalf("peer uid %d (%v), want %d", uid, perr, os.Getuid())
	}
	// A stale socket is replaced.
	ln.Close()
	ln2, err := Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
}

func TestListenRefusesWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{target, link, dir} {
		if ln, err := Listen(p); err == nil || !strings.Contains(err.Error(), "not a socket") {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("Listen(%s) = %v, want a refusal naming it", p, err)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatal("the file behind the link changed")
	}
}

func TestPeerCredNeedsUnix(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, _, err := PeerCred(a); !errors.Is(err, ErrNotUnix) {
		t.Fatalf("PeerCred on a pipe: %v", err)
	}
}
