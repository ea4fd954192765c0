package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/parachute-gateway/parachute/runtime"
)

func init() {
	register(&command{name: "doctor", summary: "audit the config's security and check this host can run it: [--config FILE] [--json]; non-zero exit on a failing check", run: doctor})
}

// Finding statuses.
const (
	statusOK   = "ok"
	statusWarn = "warn" // risky, or worth a look; does not fail the run
	statusFail = "fail"
)

// finding is one check's result.
type finding struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

func doctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("doctor", stderr)
	var cf containerdFlags
	cf.register(fs)
	image := fs.String("image", runtime.DefaultImage, "sandbox image that must be present (default: the config's runtime.image)")
	cfgFlag := configFlag(fs)
	asJSON := fs.Bool("json", false, "print the findings as a JSON array")
	envFile := fs.String("env-file", DefaultEnvFile, "the service's environment file: secrets set there count as set")
	configOnly := fs.Bool("config-only", false, "audit the config only, not this host's containerd, runc, cgroups, image and sandboxes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var findings []finding
	path, err := findConfig(*cfgFlag)
	switch {
	case err == nil:
		fc, cfg := configChecks(ctx, path, *envFile)
		findings = append(findings, fc...)
		if cfg != nil {
			// The host checks run against what the config names, unless
			// a flag says otherwise.
			if !set["address"] && cfg.Runtime.Socket != "" {
				cf.address = cfg.Runtime.Socket
			}
			if !set["namespace"] {
				cf.namespace = cfg.Runtime.Namespace
			}
			if !set["seccomp-dir"] {
				cf.seccompDir = filepath.Join(cfg.Policies, "seccomp")
			}
			if !set["image"] && cfg.Runtime.Image != "" {
				*image = cfg.Runtime.Image
			}
		}
	case *cfgFlag != "" || !errors.Is(err, errNoConfig):
		return err
	default:
		findings = append(findings, finding{Check: "config", Status: statusWarn,
			Detail: "no config found: only this host's sandbox support is checked",
			Fix:    "pass --config FILE (or set " + EnvConfig + ") to audit the gateway's config too"})
	}
	if !*configOnly {
		for _, c := range runtime.Doctor(ctx, runtime.DoctorOptions{Containerd: cf.options(), Image: *image}) {
			f := finding{Check: c.Name, Status: statusOK, Detail: c.Detail}
			if !c.OK {
				f.Status, f.Fix = statusFail, c.Fix
			}
			findings = append(findings, f)
		}
	}

	failed, warned := 0, 0
	for _, f := range findings {
		switch f.Status {
		case statusFail:
			failed++
		case statusWarn:
			warned++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return err
		}
	} else {
		for _, f := range findings {
			label := map[string]string{statusOK: "ok  ", statusWarn: "WARN", statusFail: "FAIL"}[f.Status]
			fmt.Fprintf(stdout, "%s  %-34s %s\n", label, f.Check, f.Detail)
			if f.Fix != "" && f.Status != statusOK {
				fmt.Fprintf(stdout, "      %-34s fix: %s\n", "", f.Fix)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	if !*asJSON {
		if warned > 0 {
			fmt.Fprintf(stdout, "no check failed; %d warning(s) above\n", warned)
		} else {
			fmt.Fprintln(stdout, "no check failed")
		}
	}
	return nil
}
