package runtime

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
)

// Runtime classes: which OCI runtime runs a containerd sandbox. The
// parachute.session decision names one (runtime_class); Spec.Profile
// carries it. An empty class is runc (the Go API's default; the engine's
// typed view fills in gvisor when a decision names none).
const (
	// ClassRunc: runc, namespaces and seccomp on the host kernel.
	ClassRunc = "runc"
	// ClassGVisor: runsc (gVisor). The sandbox's system calls are served
	// by gVisor's user-space kernel (the Sentry), itself confined by its
	// own seccomp filter on the host: a kernel bug reachable from the
	// sandbox is one in gVisor, not in the host's kernel.
	ClassGVisor = "gvisor"
)

// Defaults of the gVisor class.
const (
	DefaultRunscPath    = "/usr/bin/runsc"             // Debian's package runsc
	DefaultRunscWrapper = "/run/parachute-runsc/runsc" // written by the runtime, root-only folder
)

// ReasonRuntimeClassUnavailable is the reason of a session refused because
// the class its decision named cannot run on this host.
const ReasonRuntimeClassUnavailable = "runtime-class-unavailable"

// ErrClassUnavailable: the profile's runtime class is not installed or not
// working here. It wraps ErrProfile: the sandbox does not start, and
// nothing weaker starts in its place.
var ErrClassUnavailable = fmt.Errorf("%w: runtime class unavailable", ErrProfile)

// ClassError says which class is missing and how to install it.
type ClassError struct {
	Class  string
	Detail string // what is missing
	Fix    string // how to install it
}

func (e *ClassError) Error() string {
	return fmt.Sprintf("runtime class %s unavailable: %s (%s, then check with parachute doctor)", e.Class, e.Detail, e.Fix)
}

func (e *ClassError) Unwrap() error { return ErrClassUnavailable }

// Reason is the denial reason for the session.
func (e *ClassError) Reason() string { return ReasonRuntimeClassUnavailable }

// Reply is what the user is told: the session needs a sandbox this
// gateway cannot start, and the operator can fix it.
func (e *ClassError) Reply() string {
	return fmt.Sprintf("Your session cannot start: it must run in the %s sandbox, which is not installed on this gateway (%s). The operator can install it: %s.", e.Class, ReasonRuntimeClassUnavailable, e.Fix)
}

// runscWrapper is the script containerd's runc shim runs as its runc
// binary (BinaryName) for the gvisor class. The shim passes runc's
// arguments; runsc takes the same ones plus these flags:
//   - --network=none: the sandbox gets gVisor's own loopback and nothing
//     else (runsc refuses to run in the host's network namespace, which is
//     where the runc shim starts it, and the wall is no network anyway);
//   - --oci-seccomp: the spec's seccomp filter (the policy's profile) is
//     applied inside gVisor too, so a profile means the same under both
//     classes.
const runscWrapperScript = "#!/bin/sh\n# Written by parachute (runtime class gvisor). Do not edit: it is rewritten.\nexec %s --network=none --host-uds=open --oci-seccomp \"$@\"\n"

// classRuntime returns the containerd runtime and its options for a class.
func (c *Containerd) classRuntime(class string) (string, any, error) {
	switch class {
	case "", ClassRunc:
		return c.opts.Runtime, nil, nil
	case ClassGVisor:
		if err := c.gvisorInstalled(); err != nil {
			return "", nil, err
		}
		if err := c.writeRunscWrapper(); err != nil {
			return "", nil, &ClassError{Class: ClassGVisor, Detail: err.Error(), Fix: "make " + filepath.Dir(c.opts.RunscWrapper) + " writable by the gateway (root)"}
		}
		// runsc's state goes under the wrapper's root-only folder, one
		// folder per containerd socket (the shim adds the namespace), not
		// in the runc shim's /run/containerd/runc/<namespace>, which
		// every containerd on the host shares.
		sum := sha256.Sum256([]byte(c.opts.Address))
		root := filepath.Join(filepath.Dir(c.opts.RunscWrapper), "state", hex.EncodeToString(sum[:6]))
		return DefaultRuntime, &runcoptions.Options{BinaryName: c.opts.RunscWrapper, Root: root}, nil
	}
	return "", nil, fmt.Errorf("%w: runtime class %q (want %s or %s)", ErrProfile, class, ClassRunc, ClassGVisor)
}

// gvisorInstalled checks that runsc is there: a root-owned executable file.
func (c *Containerd) gvisorInstalled() error {
	const fix = "apt-get install runsc"
	st, err := os.Stat(c.opts.RunscPath)
	if err != nil {
		return &ClassError{Class: ClassGVisor, Detail: err.Error(), Fix: fix}
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0:
		return &ClassError{Class: ClassGVisor, Detail: c.opts.RunscPath + " is not an executable file", Fix: fix}
	case sys == nil || sys.Uid != 0 || st.Mode().Perm()&0o022 != 0:
		return &ClassError{Class: ClassGVisor, Detail: c.opts.RunscPath + " is not root-owned or is writable by others", Fix: "reinstall it: apt-get install --reinstall runsc"}
	}
	return nil
}

// writeRunscWrapper writes the wrapper (0755) in a root-only folder (0700),
// unless it is there already with the same bytes. It is replaced by a
// rename, so the shim never runs a half-written script.
func (c *Containerd) writeRunscWrapper() error {
	c.wrapperMu.Lock()
	defer c.wrapperMu.Unlock()
	want := []byte(fmt.Sprintf(runscWrapperScript, c.opts.RunscPath))
	if b, err := os.ReadFile(c.opts.RunscWrapper); err == nil && bytes.Equal(b, want) {
		return nil
	}
	dir := filepath.Dir(c.opts.RunscWrapper)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() || st.Mode().Perm()&0o022 != 0 {
		return errors.Join(fmt.Errorf("runsc wrapper folder %s must be a folder not writable by others", dir), err)
	}
	tmp, err := os.CreateTemp(dir, ".runsc-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(want); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), c.opts.RunscWrapper)
}

// ClassAvailable reports whether sandboxes of class can start here (nil)
// or why not (a *ClassError).
func (c *Containerd) ClassAvailable(class string) error {
	_, _, err := c.classRuntime(class)
	return err
}
