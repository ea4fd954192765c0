package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/parachute-gateway/parachute/audit"
)

func init() {
	register(&command{name: "logs", summary: "print the audit log: [key=value …] [--follow] [--json] [--since …] [--config FILE]", run: logsCmd})
	register(&command{name: "audit verify", summary: "check the audit log's hash chain and signed checkpoints: [DIR] [--config FILE] [--pubkey FILE] [--checkpoint FILE]", run: auditVerify})
}

// auditFlags pick the audit log: the config's audit.dir (the gateway's
// config, found as every operator command finds it), or --dir.
type auditFlags struct{ config, dir *string }

func addAuditFlags(fs *flag.FlagSet) auditFlags {
	return auditFlags{
		config: configFlag(fs),
		dir:    fs.String("dir", "", "an audit log folder to read instead of the config's audit.dir"),
	}
}

// resolve returns the audit folder and, when it came from a config, that
// config (nil with --dir or a folder given as an argument).
func (f auditFlags) resolve(arg string) (string, *opConfig, error) {
	switch {
	case arg != "":
		return arg, nil, nil
	case *f.dir != "":
		return *f.dir, nil, nil
	}
	op, err := loadOpConfig(*f.config)
	if err != nil {
		return "", nil, err
	}
	if err := op.mustExist("audit log folder (audit.dir)", op.Cfg.Audit.Dir); err != nil {
		return "", nil, err
	}
	return op.Cfg.Audit.Dir, op, nil
}

func logsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("logs [key=value …]", stderr)
	af := addAuditFlags(fs)
	follow := fs.Bool("follow", false, "keep printing new records as they are appended")
	asJSON := fs.Bool("json", false, "print the JSON lines (control, bidi and format characters \\u-escaped)")
	since := fs.String("since", "", "only records since a duration ago (10m, 24h) or an RFC 3339 time")
	kind := fs.String("kind", "", "only records of this kind (as kind=KIND): "+audit.KindList())
	// Accept flags and filters in any order.
	var filters []string
	rest := args
	for len(rest) > 0 {
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		filters = append(filters, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if *kind != "" {
		filters = append(filters, "kind="+*kind)
	}
	filter, err := audit.ParseFilter(filters)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	dir, _, err := af.resolve("")
	if err != nil {
		return err
	}
	opts := audit.ReadOptions{Filter: filter}
	if *since != "" {
		if opts.Since, err = parseSince(*since, time.Now()); err != nil {
			return fmt.Errorf("%w: --since: %w", errUsage, err)
		}
	}
	print := func(e audit.Entry) error {
		var err error
		if *asJSON {
			// encoding/json leaves DEL, C1 controls and bidi marks as they
			// are; a terminal must not get them.
			_, err = fmt.Fprintf(stdout, "%s\n", audit.EscapeJSON(e.Raw))
		} else {
			_, err = fmt.Fprintln(stdout, audit.Format(e.Record))
		}
		return err
	}
	if *follow {
		return audit.Follow(ctx, dir, opts, 250*time.Millisecond, print)
	}
	return audit.Read(dir, opts, print)
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("duration must not be negative")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (10m, 24h) nor an RFC 3339 time", s)
	}
	return t, nil
}

func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify [DIR]", stderr)
	af := addAuditFlags(fs)
	pubFlag := fs.String("pubkey", "", "public key file (default: "+audit.PublicKeyFileName+" in the folder above DIR, the state dir)")
	anchorFlag := fs.String("checkpoint", "", "a checkpoint note kept elsewhere that the log must hold (default: "+audit.CheckpointFileName+" in the state dir)")
	// Flags may come before or after the folder.
	var dirs []string
	for rest := args; ; rest = fs.Args()[1:] {
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		dirs = append(dirs, fs.Arg(0))
	}
	if len(dirs) > 1 {
		return fmt.Errorf("%w: one folder at most", errUsage)
	}
	arg := ""
	if len(dirs) == 1 {
		arg = dirs[0]
	}
	dir, op, err := af.resolve(arg)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// The key and the newest checkpoint are the gateway's, in its state dir
	// (a bare folder: the folder above it).
	state := filepath.Dir(abs)
	pubDefault := filepath.Join(state, audit.PublicKeyFileName)
	if op != nil {
		state = op.Cfg.StateDir
		pubDefault = op.Cfg.Audit.KeyFile + audit.PublicKeySuffix
	}
	opts := audit.VerifyOptions{}
	pubPath := *pubFlag
	if pubPath == "" {
		if p := pubDefault; fileExists(p) {
			pubPath = p
		}
	}
	if pubPath != "" {
		k, err := audit.LoadPublicKey(pubPath)
		if err != nil {
			return err
		}
		opts.Key = &k
		fmt.Fprintf(stdout, "key: %s (%s)\n", k.KeyID(), pubPath)
	}
	anchorPath := *anchorFlag
	if anchorPath == "" {
		if p := filepath.Join(state, audit.CheckpointFileName); fileExists(p) {
			anchorPath = p
		}
	}
	if anchorPath != "" {
		b, err := os.ReadFile(anchorPath)
		if err != nil {
			return err
		}
		opts.Anchor, opts.AnchorName = string(b), anchorPath
		fmt.Fprintf(stdout, "anchor: %s\n", anchorPath)
	}
	rep, err := audit.VerifyWith(dir, opts)
	if err != nil {
		return err
	}
	if rep.Files == 0 {
		return fmt.Errorf("no audit log in %s", dir)
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, audit.Escape(p.String()))
	}
	for _, g := range rep.Gaps {
		fmt.Fprintln(stdout, audit.Escape(g.String()))
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(stdout, "warning: "+audit.Escape(w.String()))
	}
	fmt.Fprintf(stdout, "%d records in %d files; head seq %d hash %s\n", rep.Records, rep.Files, rep.HeadSeq, rep.HeadHash)
	if rep.Last != nil {
		fmt.Fprintf(stdout, "%d checkpoints; last at seq %d (%s:%d)\n", rep.Checkpoints, rep.Last.Seq, rep.Last.File, rep.Last.Line)
	}
	if !rep.OK() {
		return fmt.Errorf("audit log in %s is not intact: %d problem(s)", dir, len(rep.Problems))
	}
	if !rep.Signed {
		fmt.Fprintf(stdout, "hash chain intact, but NOT tamper-evident: no public key (looked for %s; pass --pubkey FILE). "+
			"Anyone who can write %s can rewrite the chain consistently.\n", pubDefault, dir)
		return nil
	}
	fmt.Fprintf(stdout, "ok: chain intact and signed by key %s", opts.Key.KeyID())
	if rep.UnsignedTail > 0 {
		fmt.Fprintf(stdout, " up to seq %d; %d newer records not yet signed", rep.Last.Seq, rep.UnsignedTail)
	}
	if len(rep.Gaps) > 0 {
		fmt.Fprintf(stdout, "; %d outage(s) recorded", len(rep.Gaps))
	}
	fmt.Fprintln(stdout)
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
