package main

import (
	"context"
	"fmt"
	"io"

	"github.com/parachute-gateway/parachute/runtime"
)

func init() {
	register(&command{name: "doctor", summary: "check this host can run sandboxes, and say how to fix what is missing", run: doctor})
}

func doctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("doctor", stderr)
	var cf containerdFlags
	cf.register(fs)
	image := fs.String("image", runtime.DefaultImage, "sandbox image that must be present")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	failed := 0
	for _, c := range runtime.Doctor(ctx, runtime.DoctorOptions{Containerd: cf.options(), Image: *image}) {
		if c.OK {
			fmt.Fprintf(stdout, "ok    %-24s %s\n", c.Name, c.Detail)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL  %-24s %s\n      fix: %s\n", c.Name, c.Detail, c.Fix)
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	fmt.Fprintln(stdout, "all checks passed")
	return nil
}
