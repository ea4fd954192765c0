package main

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"

	"github.com/parachute-gateway/parachute/runtime"
)

func init() {
	register(&command{name: "image build", summary: "build the sandbox image from a static binary and import it", run: imageBuild})
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
	if err := parseFlags(fs, args); err != nil {
		return err
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
	tar, err := runtime.BuildImage(ctx, runtime.BuildOptions{Binary: bin, Busybox: *busybox, Ref: *ref, Out: *out})
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

// checkStatic refuses a dynamically linked binary: the image has no
// libraries, so it could not run there.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it static (CGO_ENABLED=0 go build)", path)
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
