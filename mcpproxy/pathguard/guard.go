// Package pathguard turns a path argument of an MCP tool call into the facts
// policy decides on, and into the one host path the call may then use.
//
// The rules, in order (see docs/mcpproxy.md):
//
//  1. The raw string must be non-empty, valid UTF-8, without NUL, and at
//     most MaxLen bytes. Nothing is ever percent-decoded: "%2e%2e" is a file
//     name of six characters.
//  2. It is put in Unicode NFC, so NFD spellings name the same entry as the
//     policy's checks.
//  3. It is mapped from the client's view to the host: an absolute path under
//     the client root ("/workspace" in a sandbox, the host workspace folder
//     for a direct or stdio session) or a relative path is taken relative to
//     the workspace; any other absolute path is taken as a host path as is.
//  4. ".", ".." and "//" are folded lexically on that absolute path.
//  5. Symlinks are resolved on the host one component at a time, dangling
//     links included, so a planted link pointing at a file that does not
//     exist yet still resolves to where a write would land. The part of the
//     path that does not exist is appended as is.
//  6. The result is made vault-relative; it is inside the workspace only if
//     it is the workspace folder or lies beneath it (component-wise: the
//     sibling "users/ab" is not inside "users/a").
//  7. A regular file inside the workspace with more than one hard link is
//     refused: it may be the same file as one outside, which no path shows.
//
// The resolved path is a decision input, not a capability: callers must still
// open it beneath the workspace root (os.Root) so that a symlink swapped in
// after the check cannot lead outside.
package pathguard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/parachute-gateway/parachute/engine"
)

// MaxLen bounds a raw path argument in bytes (Linux PATH_MAX).
const MaxLen = 4096

// maxLinks bounds the symlinks followed while resolving one path (as the
// kernel's MAXSYMLINKS).
const maxLinks = 40

// Errors a path can fail with; PathFacts.Error carries their text.
var (
	ErrEmpty       = errors.New("empty path")
	ErrNUL         = errors.New("path contains a NUL byte")
	ErrUTF8        = errors.New("path is not valid UTF-8")
	ErrTooLong     = errors.New("path is too long")
	ErrLinkLoop    = errors.New("too many levels of symbolic links")
	ErrNotDir      = errors.New("a path component is not a directory")
	ErrUnresolved  = errors.New("path could not be resolved")
	ErrNotAbsolute = errors.New("root folder must be an absolute path")
	// ErrHardLink: a regular file with more than one link may be the same
	// file as one outside the workspace, which no path check can see.
	ErrHardLink = errors.New("file has more than one hard link")
	// ErrNotFile: only regular files and folders are ever handed on.
	ErrNotFile = errors.New("not a regular file or folder (FIFO, socket or device)")
)

// Guard resolves path arguments for one workspace. It is safe for
// concurrent use; it holds no open files.
type Guard struct {
	vault      string // host vault folder, absolute, symlinks resolved
	workspace  string // vault-relative workspace, slash-separated
	host       string // host workspace folder, absolute, symlinks resolved
	clientRoot string // the workspace as the client names it; "" if only relative paths map
}

// New returns a Guard for the vault-relative workspace ws inside the host
// folder vault. clientRoot is how the client names the workspace folder
// ("/workspace" in a sandbox, the host folder for a stdio proxy); it may be
// empty. The workspace folder must exist and must not lead out of the vault.
func New(vault, ws, clientRoot string) (*Guard, error) {
	if !filepath.IsAbs(vault) {
		return nil, fmt.Errorf("pathguard: vault %q: %w", vault, ErrNotAbsolute)
	}
	if clientRoot != "" && !strings.HasPrefix(clientRoot, "/") {
		return nil, fmt.Errorf("pathguard: client root %q: %w", clientRoot, ErrNotAbsolute)
	}
	realVault, err := filepath.EvalSymlinks(vault)
	if err != nil {
		return nil, fmt.Errorf("pathguard: vault: %w", err)
	}
	ws = filepath.ToSlash(filepath.Clean(ws))
	if ws == "." || ws == ".." || strings.HasPrefix(ws, "../") || filepath.IsAbs(ws) {
		return nil, fmt.Errorf("pathguard: workspace %q is not a folder inside the vault", ws)
	}
	realHost, err := filepath.EvalSymlinks(filepath.Join(realVault, ws))
	if err != nil {
		return nil, fmt.Errorf("pathguard: workspace: %w", err)
	}
	if rel, ok := within(realVault, realHost); !ok || rel != ws {
		return nil, fmt.Errorf("pathguard: workspace %q resolves to %s, not to itself inside the vault", ws, realHost)
	}
	g := &Guard{vault: realVault, workspace: ws, host: realHost}
	if clientRoot != "" {
		g.clientRoot = filepath.Clean(clientRoot)
	}
	return g, nil
}

// HostRoot is the host workspace folder, symlinks resolved.
func (g *Guard) HostRoot() string { return g.host }

// Workspace is the vault-relative workspace.
func (g *Guard) Workspace() string { return g.workspace }

// Path is one resolved path argument.
type Path struct {
	// Facts is what policy decides on.
	Facts engine.PathFacts
	// Host is the absolute host path, symlinks resolved ("" on error or
	// when it lies outside the vault).
	Host string
	// Rel is Host relative to the workspace folder ("." for the folder
	// itself); "" unless Facts.InsideWorkspace.
	Rel string
}

// Resolve normalises and resolves raw, the value of argument arg, which the
// call will access as access ("read" or "write"). It never fails: a path
// that cannot be resolved carries the reason in Facts.Error.
func (g *Guard) Resolve(arg, raw, access string) Path {
	p := Path{Facts: engine.PathFacts{Arg: arg, Raw: raw, Access: access}}
	abs, err := g.hostPath(raw)
	if err != nil {
		p.Facts.Error = err.Error()
		return p
	}
	real, err := g.resolve(abs)
	if err != nil {
		p.Facts.Error = err.Error()
		return p
	}
	rel, ok := within(g.vault, real)
	if !ok {
		// Outside the vault altogether: nothing vault-relative to name.
		return p
	}
	p.Host = real
	p.Facts.Resolved = rel
	if wsRel, ok := within(g.host, real); ok {
		if fi, err := os.Lstat(real); err == nil {
			switch {
			case fi.Mode().IsRegular() && hardLinked(fi):
				return Path{Facts: engine.PathFacts{Arg: arg, Raw: raw, Access: access, Error: ErrHardLink.Error()}}
			case !fi.Mode().IsRegular() && !fi.IsDir():
				// A FIFO blocks whoever opens it (an upstream's call hung
				// until its timeout); a device or socket is never a file.
				return Path{Facts: engine.PathFacts{Arg: arg, Raw: raw, Access: access, Error: ErrNotFile.Error()}}
			}
		}
		p.Facts.InsideWorkspace = true
		p.Rel = wsRel
	}
	return p
}

// hostPath validates raw and maps it to a cleaned absolute host path,
// symlinks not yet resolved.
func (g *Guard) hostPath(raw string) (string, error) {
	switch {
	case raw == "":
		return "", ErrEmpty
	case len(raw) > MaxLen:
		return "", ErrTooLong
	case strings.IndexByte(raw, 0) >= 0:
		return "", ErrNUL
	case !utf8.ValidString(raw):
		return "", ErrUTF8
	}
	p := norm.NFC.String(raw)
	if !strings.HasPrefix(p, "/") {
		return filepath.Join(g.host, p), nil
	}
	p = filepath.Clean(p)
	if g.clientRoot != "" {
		if rest, ok := within(g.clientRoot, p); ok {
			return filepath.Join(g.host, rest), nil
		}
	}
	return p, nil
}

// within reports whether p is root or lies beneath it, and p relative to
// root ("." for root itself). Both must be clean absolute paths.
func within(root, p string) (string, bool) {
	if p == root {
		return ".", true
	}
	prefix := root
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if !strings.HasPrefix(p, prefix) {
		return "", false
	}
	return p[len(prefix):], true
}

// resolve resolves every symlink in the clean absolute path abs, one
// component at a time. A component that does not exist ends the walk: it and
// the rest are appended as they are. A dangling link is followed to where it
// points. resolve never opens a file.
//
// A path beneath the workspace folder starts from it rather than from "/":
// the folder and its ancestors were resolved by New and are not the
// client's to change (the workspace is the only thing it can write to).
func (g *Guard) resolve(abs string) (string, error) {
	done, rest := "/", strings.TrimPrefix(abs, "/")
	if r, ok := within(g.host, abs); ok {
		done, rest = g.host, r
	}
	todo := strings.Split(rest, "/")
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, name)
		fi, err := os.Lstat(next)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return appendRest(next, todo)
		case errors.Is(err, syscall.ENOTDIR):
			return "", ErrNotDir
		case err != nil:
			return "", fmt.Errorf("%w: %w", ErrUnresolved, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if !onlyDots(todo) && !fi.IsDir() {
				return "", ErrNotDir
			}
			done = next
			continue
		}
		links++
		if links > maxLinks {
			return "", ErrLinkLoop
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrUnresolved, err)
		}
		if strings.HasPrefix(target, "/") {
			done = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return done, nil
}

// appendRest joins the components that do not exist yet onto base. Nothing
// below a missing entry exists, so no symlink can change what they mean. A
// ".." below a missing entry (it can only come from a link target) is
// refused: the kernel would fail on it, and folding it would skip a
// component that was never resolved.
func appendRest(base string, rest []string) (string, error) {
	for _, s := range rest {
		if s == ".." {
			return "", fmt.Errorf("%w: %q below a missing folder", ErrUnresolved, "..")
		}
	}
	return filepath.Join(append([]string{base}, rest...)...), nil
}

func onlyDots(parts []string) bool {
	for _, s := range parts {
		if s != "" && s != "." {
			return false
		}
	}
	return true
}

func hardLinked(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink > 1
}
