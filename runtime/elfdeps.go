package runtime

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ELFDep is one file the dynamic loader opens to start a binary.
type ELFDep struct {
	Path   string // where the loader opens it: its path in the image
	Source string // the host file holding its bytes (symlinks resolved)
}

// ELFDeps returns the files glibc's (or musl's) dynamic loader maps to
// start bin: its PT_INTERP, then its DT_NEEDED libraries and theirs,
// recursively, each found the way the loader finds it: a name with a slash
// as is, else DT_RPATH (of the object and of the objects that loaded it,
// unless it has DT_RUNPATH), DT_RUNPATH, /etc/ld.so.cache (`ldconfig -p`)
// and the default folders, with $ORIGIN expanded. A name already loaded
// (by name or DT_SONAME) is not searched again, as in the loader. A
// static binary has none.
//
// The image has no ld.so.cache, so a library the host finds only through
// the cache, outside the default folders, gets a path in the first default
// folder, where the image's loader looks. Libraries a program dlopens at
// run time (NSS modules, plugins) are not DT_NEEDED and not included: add
// them with BuildOptions.Add.
func ELFDeps(bin string) ([]ELFDep, error) {
	if !filepath.IsAbs(bin) {
		return nil, fmt.Errorf("%w: binary %q: the path must be absolute", ErrInvalidSpec, bin)
	}
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	f, err := openELF(real)
	if err != nil {
		return nil, err
	}
	interp, err := elfInterp(f)
	main := elfObject{path: real}
	if err == nil {
		main.rpath, main.runpath, main.needed, _, err = elfDynamic(f)
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	if interp == "" {
		return nil, nil // static
	}
	if !filepath.IsAbs(interp) {
		return nil, fmt.Errorf("%w: %s: interpreter %q is not an absolute path", ErrInvalidSpec, bin, interp)
	}
	r := newELFResolver(f.Class, f.Machine, interp)
	r.loadCache()
	isrc, iso, err := r.candidate(interp)
	if err != nil || isrc == "" {
		return nil, fmt.Errorf("%w: %s: interpreter %s: not a usable ELF file (%v)", ErrInvalidSpec, bin, interp, err)
	}
	r.take(ELFDep{Path: interp, Source: isrc}, iso)
	// Breadth-first, as the loader maps them.
	queue := []elfObject{main}
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		// The RPATHs an object's dependencies search: its own (unless it
		// has a RUNPATH), then those of the objects that loaded it.
		var inherited []string
		if o.runpath == nil {
			inherited = append(r.expandAll(o.rpath, o.path), o.inherited...)
		} else {
			inherited = o.inherited
		}
		for _, n := range o.needed {
			if r.loaded[n] {
				continue
			}
			var rpath []string
			if o.runpath == nil {
				rpath = append(slices.Clone(o.rpath), o.inherited...)
			}
			d, err := r.find(n, o.path, rpath, o.runpath)
			if err != nil {
				return nil, err
			}
			r.loaded[n] = true
			if r.seen[d.Path] {
				continue
			}
			lf, err := openELF(d.Source)
			if err != nil {
				return nil, err
			}
			child := elfObject{path: d.Path, inherited: inherited}
			var soname string
			child.rpath, child.runpath, child.needed, soname, err = elfDynamic(lf)
			lf.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.Source, err)
			}
			r.take(d, soname)
			queue = append(queue, child)
		}
	}
	return r.out, nil
}

// elfObject is a loaded object whose dependencies are still to resolve.
type elfObject struct {
	path           string   // as the loader opened it ($ORIGIN is its folder)
	rpath, runpath []string // raw DT_RPATH / DT_RUNPATH entries (nil = none)
	needed         []string
	inherited      []string // expanded RPATHs of the objects that loaded it
}

// elfResolver finds libraries for one architecture and loader.
type elfResolver struct {
	class    elf.Class
	machine  elf.Machine
	musl     bool
	cache    map[string][]string // ld.so.cache: name -> paths, in ldconfig's order
	defaults []string            // the loader's default folders that exist
	loaded   map[string]bool     // names and sonames already mapped
	seen     map[string]bool     // image paths taken
	out      []ELFDep
}

// multiarch is Debian's library folder name per architecture.
var multiarch = map[elf.Machine]map[elf.Class]string{
	elf.EM_X86_64:  {elf.ELFCLASS64: "x86_64-linux-gnu", elf.ELFCLASS32: "x86_64-linux-gnux32"},
	elf.EM_386:     {elf.ELFCLASS32: "i386-linux-gnu"},
	elf.EM_AARCH64: {elf.ELFCLASS64: "aarch64-linux-gnu"},
	elf.EM_ARM:     {elf.ELFCLASS32: "arm-linux-gnueabihf"},
	elf.EM_RISCV:   {elf.ELFCLASS64: "riscv64-linux-gnu"},
	elf.EM_PPC64:   {elf.ELFCLASS64: "powerpc64le-linux-gnu"},
	elf.EM_S390:    {elf.ELFCLASS64: "s390x-linux-gnu"},
}

func newELFResolver(class elf.Class, machine elf.Machine, interp string) *elfResolver {
	r := &elfResolver{class: class, machine: machine, cache: map[string][]string{},
		loaded: map[string]bool{}, seen: map[string]bool{}}
	var dirs []string
	if strings.Contains(filepath.Base(interp), "musl") {
		r.musl = true
		dirs = []string{"/lib", "/usr/local/lib", "/usr/lib"}
	} else {
		if ma := multiarch[machine][class]; ma != "" {
			dirs = append(dirs, "/lib/"+ma, "/usr/lib/"+ma)
		}
		if class == elf.ELFCLASS64 {
			dirs = append(dirs, "/lib64", "/usr/lib64")
		}
		dirs = append(dirs, "/lib", "/usr/lib")
	}
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			r.defaults = append(r.defaults, d)
		}
	}
	return r
}

// loadCache reads glibc's ld.so.cache through `ldconfig -p`. Without
// ldconfig (musl, a minimal host) only the default folders are searched.
func (r *elfResolver) loadCache() {
	if r.musl {
		return
	}
	bin := ""
	for _, p := range []string{"/sbin/ldconfig", "/usr/sbin/ldconfig"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			bin = p
			break
		}
	}
	if bin == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-p").Output()
	if err != nil {
		return
	}
	r.cache = parseLdconfig(string(out))
}

// parseLdconfig reads `ldconfig -p` lines ("\tNAME (FLAGS) => PATH").
// Entries for glibc-hwcaps subfolders are skipped: the image's loader
// finds a library by name in the default folders, so the baseline build
// is the one that goes in.
func parseLdconfig(out string) map[string][]string {
	m := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "\t") {
			continue
		}
		lhs, p, ok := strings.Cut(strings.TrimSpace(l), " => ")
		if !ok || !filepath.IsAbs(p) {
			continue
		}
		name, flags, _ := strings.Cut(lhs, " (")
		if strings.Contains(flags, "hwcap") || strings.Contains(p, "/glibc-hwcaps/") {
			continue
		}
		m[name] = append(m[name], p)
	}
	return m
}

func (r *elfResolver) take(d ELFDep, soname string) {
	r.seen[d.Path] = true
	r.loaded[filepath.Base(d.Path)] = true
	if soname != "" {
		r.loaded[soname] = true
	}
	r.out = append(r.out, d)
}

// find resolves one DT_NEEDED name of the object at objPath. rpath is the
// object's DT_RPATH followed by the inherited ones (nil when the object
// has a DT_RUNPATH); runpath its DT_RUNPATH.
func (r *elfResolver) find(needed, objPath string, rpath, runpath []string) (ELFDep, error) {
	if strings.Contains(needed, "/") {
		if !filepath.IsAbs(needed) {
			return ELFDep{}, fmt.Errorf("%w: %s needs %q, a relative path (resolved against the working folder at run time)", ErrInvalidSpec, objPath, needed)
		}
		src, _, err := r.candidate(needed)
		if err != nil || src == "" {
			return ELFDep{}, fmt.Errorf("%w: %s needs %s: not a usable library (%v)", ErrInvalidSpec, objPath, needed, err)
		}
		return ELFDep{Path: needed, Source: src}, nil
	}
	var dirs []string
	for _, list := range [][]string{rpath, runpath} {
		for _, d := range list {
			e, err := expandOrigin(d, objPath)
			if err != nil {
				return ELFDep{}, err
			}
			if e != "" {
				dirs = append(dirs, e)
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, needed)
		if src, _, _ := r.candidate(p); src != "" {
			return ELFDep{Path: p, Source: src}, nil
		}
	}
	for _, p := range r.cache[needed] {
		src, _, _ := r.candidate(p)
		if src == "" {
			continue
		}
		if !slices.Contains(r.defaults, filepath.Dir(p)) && len(r.defaults) > 0 {
			p = filepath.Join(r.defaults[0], needed)
		}
		return ELFDep{Path: p, Source: src}, nil
	}
	for _, d := range r.defaults {
		p := filepath.Join(d, needed)
		if src, _, _ := r.candidate(p); src != "" {
			return ELFDep{Path: p, Source: src}, nil
		}
	}
	return ELFDep{}, fmt.Errorf("%w: library %s (needed by %s) not found in its RPATH/RUNPATH %v, ld.so.cache or %v",
		ErrInvalidSpec, needed, objPath, dirs, r.defaults)
}

// expandAll expands $ORIGIN in each entry; entries it cannot expand are
// kept as they are (find reports them).
func (r *elfResolver) expandAll(dirs []string, objPath string) []string {
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		if e, err := expandOrigin(d, objPath); err == nil {
			if e != "" {
				out = append(out, e)
			}
		} else {
			out = append(out, d)
		}
	}
	return out
}

// expandOrigin substitutes $ORIGIN (the object's folder). $LIB and
// $PLATFORM depend on the loader's build and the CPU; they are refused
// rather than guessed. An empty entry (the working folder) is dropped.
func expandOrigin(d, objPath string) (string, error) {
	origin := filepath.Dir(objPath)
	d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
	if strings.Contains(d, "$") {
		return "", fmt.Errorf("%w: %s: search path %q uses a substitution other than $ORIGIN; add the library with --add", ErrInvalidSpec, objPath, d)
	}
	if d == "" {
		return "", nil
	}
	if !filepath.IsAbs(d) {
		return "", nil // relative to the working folder at run time: never searched here
	}
	return filepath.Clean(d), nil
}

// candidate returns the resolved host file of p and its soname if p is a
// regular ELF file of the resolver's class and machine; "" if not.
func (r *elfResolver) candidate(p string) (string, string, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", "", err
	}
	f, err := openELF(real)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	if f.Class != r.class || f.Machine != r.machine {
		return "", "", nil
	}
	soname := ""
	if s, err := f.DynString(elf.DT_SONAME); err == nil && len(s) > 0 {
		soname = s[0]
	}
	return real, soname, nil
}

// openELF opens a regular file (never a FIFO or a device: O_NONBLOCK,
// then the opened file is checked) without following a final symlink,
// and parses its ELF header.
func openELF(p string) (*elfFile, error) {
	fd, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		fd.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file (%s)", ErrInvalidSpec, p, st.Mode().Type())
	}
	f, err := elf.NewFile(fd)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("%w: %s is not an ELF binary: %w", ErrInvalidSpec, p, err)
	}
	return &elfFile{File: f, fd: fd}, nil
}

// elfFile is a parsed ELF file and the file it was read from.
type elfFile struct {
	*elf.File
	fd *os.File
}

func (f *elfFile) Close() error { return f.fd.Close() }

// elfInterp returns the PT_INTERP path, "" for a static binary.
func elfInterp(f *elfFile) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		if p.Filesz > 4096 {
			return "", fmt.Errorf("%w: PT_INTERP of %d bytes", ErrInvalidSpec, p.Filesz)
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("read PT_INTERP: %w", err)
		}
		return string(bytes.TrimRight(b, "\x00")), nil
	}
	return "", nil
}

// elfDynamic returns DT_RPATH and DT_RUNPATH (split at ':'; nil when
// absent), DT_NEEDED and DT_SONAME.
func elfDynamic(f *elfFile) (rpath, runpath, needed []string, soname string, err error) {
	split := func(tag elf.DynTag) ([]string, error) {
		v, err := f.DynString(tag)
		if err != nil || len(v) == 0 {
			return nil, err
		}
		var out []string
		for _, s := range v {
			out = append(out, strings.Split(s, ":")...)
		}
		return out, nil
	}
	if rpath, err = split(elf.DT_RPATH); err != nil {
		return
	}
	if runpath, err = split(elf.DT_RUNPATH); err != nil {
		return
	}
	if needed, err = f.ImportedLibraries(); err != nil {
		return
	}
	if s, _ := f.DynString(elf.DT_SONAME); len(s) > 0 {
		soname = s[0]
	}
	return
}
