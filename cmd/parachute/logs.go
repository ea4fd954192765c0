package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/parachute-gateway/parachute/audit"
)

// defaultAuditDir is where the gateway keeps its audit log unless the config
// or PARACHUTE_AUDIT_DIR says otherwise.
const defaultAuditDir = "/var/lib/parachute/audit"

func init() {
	register(&command{name: "logs", summary: "print the audit log: [key=value …] [--follow] [--json] [--since …]", run: logsCmd})
	register(&command{name: "audit verify", summary: "check the audit log's hash chain and name any gap or edit", run: auditVerify})
}

func auditDirFlag(fs interface {
	StringVar(*string, string, string, string)
}, dir *string) {
	def := os.Getenv("PARACHUTE_AUDIT_DIR")
	if def == "" {
		def = defaultAuditDir
	}
	fs.StringVar(dir, "dir", def, "audit log folder (default $PARACHUTE_AUDIT_DIR or "+defaultAuditDir+")")
}

func logsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("logs [key=value …]", stderr)
	var dir string
	auditDirFlag(fs, &dir)
	follow := fs.Bool("follow", false, "keep printing new records as they are appended")
	asJSON := fs.Bool("json", false, "print the raw JSON lines")
	since := fs.String("since", "", "only records since a duration ago (10m, 24h) or an RFC 3339 time")
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
	filter, err := audit.ParseFilter(filters)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
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
			_, err = fmt.Fprintf(stdout, "%s\n", e.Raw)
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
	var dir string
	auditDirFlag(fs, &dir)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("%w: one folder at most", errUsage)
	}
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	rep, err := audit.Verify(dir)
	if err != nil {
		return err
	}
	if rep.Files == 0 {
		return fmt.Errorf("no audit log in %s", dir)
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, p)
	}
	fmt.Fprintf(stdout, "%d records in %d files; head seq %d hash %s\n", rep.Records, rep.Files, rep.HeadSeq, rep.HeadHash)
	if !rep.OK() {
		return fmt.Errorf("audit log in %s is not intact: %d problem(s)", dir, len(rep.Problems))
	}
	fmt.Fprintln(stdout, "ok: chain intact")
	return nil
}
