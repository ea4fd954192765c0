package main

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/parachute-gateway/parachute/agentadapt"
	"github.com/parachute-gateway/parachute/runtime"
)

func init() {
	register(&command{name: "image build", summary: "build the sandbox image from a static binary (plus --agent claude-code|codex, --add BINARY, --add-dir HOST[:IMAGE]) and import it", run: imageBuild})
	register(&command{name: "image import", summary: "import an OCI image tar: FILE.tar [--ref REF]", run: imageImport})
}

func imageBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("image build", stderr)
	var cf containerdFlags
	cf.register(fs)
	binary := fs.String("binary", "", "static binary installed as /parachute (default: this executable)")
	busybox := fs.String("busybox", defaultBusybox(), `static busybox for a shell ("" for none)`)
	ref := fs.String("ref", runtime.DefaultImage, "image name")
	out := fs.String("out", "", "also keep the image tar at this path")
	noImport := fs.Bool("no-import", false, "only write the tar (needs --out)")
	var add, addDirs listFlag
	fs.Var(&add, "add", "host binary copied at the same path with its shared libraries (repeatable), e.g. /usr/bin/node")
	fs.Var(&addDirs, "add-dir", "host folder tree copied into the image, HOST[:IMAGE] (repeatable)")
	var agents listFlag
	fs.Var(&agents, "agent", "real agent copied in with its libraries and linked at /usr/bin/claude or /usr/bin/codex: claude-code or codex (repeatable; docs/agent.md)")
	npmRoot := fs.String("agent-npm-root", "", "node_modules folder where npm installed the agents (default: npm root -g)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	links := map[string]string{}
	for _, kind := range agents {
		if *npmRoot == "" {
			out, err := exec.CommandContext(ctx, "npm", "root", "-g").Output()
			if err != nil {
				return fmt.Errorf("--agent %s: npm root -g: %w (give --agent-npm-root)", kind, err)
			}
			*npmRoot = strings.TrimSpace(string(out))
		}
		p, err := agentadapt.NativeBinary(kind, *npmRoot)
		if err != nil {
			return fmt.Errorf("--agent: %w", err)
		}
		if p, err = filepath.EvalSymlinks(p); err != nil {
			return fmt.Errorf("--agent: %w", err)
		}
		add = append(add, p)
		links[agentadapt.ImagePath(kind)] = p
	}
	var dirs []runtime.DirCopy
	for _, a := range addDirs {
		d, err := runtime.ParseDirCopy(a)
		if err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		dirs = append(dirs, d)
	}
	if *noImport && *out == "" {
		return fmt.Errorf("%w: --no-import needs --out", errUsage)
	}
	bin := *binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return err
		}
	}
	for _, b := range []string{bin, *busybox} {
		if b == "" {
			continue
		}
		if err := checkStatic(b); err != nil {
			return err
		}
	}
	tar, err := runtime.BuildImage(ctx, runtime.BuildOptions{Binary: bin, Busybox: *busybox, Ref: *ref, Out: *out, Add: add, AddDirs: dirs, Links: links, Uncompressed: len(agents) > 0})
	if err != nil {
		return err
	}
	if *out == "" {
		defer os.Remove(tar)
	}
	if *noImport {
		fmt.Fprintf(stdout, "wrote %s (%s)\n", tar, *ref)
		return nil
	}
	rt, err := runtime.NewContainerd(ctx, cf.options())
	if err != nil {
		return err
	}
	defer rt.Close()
	if err := rt.ImportImage(ctx, tar, *ref); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %s into namespace %s\n", *ref, cf.namespace)
	return nil
}

func imageImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("image import FILE.tar", stderr)
	var cf containerdFlags
	cf.register(fs)
	ref := fs.String("ref", "", "name the image (default: the names in the tar)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: one image tar expected", errUsage)
	}
	rt, err := runtime.NewContainerd(ctx, cf.options())
	if err != nil {
		return err
	}
	defer rt.Close()
	if err := rt.ImportImage(ctx, fs.Arg(0), *ref); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %s\n", fs.Arg(0))
	return nil
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// checkStatic refuses a dynamically linked binary as /parachute or
// busybox: PID 1 must run before anything else, so it brings no
// libraries (binaries added with --add bring theirs).
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it static (CGO_ENABLED=0 go build), or add it beside /parachute with --add", path)
		}
	}
	return nil
}

func defaultBusybox() string {
	if _, err := os.Stat("/bin/busybox"); err == nil {
		return "/bin/busybox"
	}
	return ""
}
