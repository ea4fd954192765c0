package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/engine"
)

// defaultPolicyDir is where the policy commands look when no folder is given.
const defaultPolicyDir = "policies"

func init() {
	register(&command{name: "policy test", summary: "run the policies' own tests (like opa test)", run: policyTest})
	register(&command{name: "policy check", summary: "compile the policies strictly and check every entry point", run: policyCheck})
	register(&command{name: "policy eval", summary: "decide one input with the config's data: --entry tool --input FILE [--config FILE] [--explain]", run: policyEval})
	register(&command{name: "policy replay", summary: "decide a recorded decision's input again with the current policy: DECISION-ID|SEQ [--config FILE]", run: policyReplay})
}

func policyDirArg(fs interface{ Args() []string }) (string, error) {
	switch args := fs.Args(); len(args) {
	case 0:
		return defaultPolicyDir, nil
	case 1:
		return args[0], nil
	default:
		return "", fmt.Errorf("%w: one policy folder at most, got %q", errUsage, args)
	}
}

func policyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy test [DIR]", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := policyDirArg(fs)
	if err != nil {
		return err
	}
	rep, err := engine.RunTests(ctx, dir)
	if err != nil {
		return err
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(stdout, "FAIL %s %s", f.Location, f.Name)
		if f.Err != "" {
			fmt.Fprintf(stdout, ": %s", f.Err)
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", rep.Passed, len(rep.Failures))
	if len(rep.Failures) > 0 {
		return fmt.Errorf("%d policy test(s) failed", len(rep.Failures))
	}
	if rep.Passed == 0 {
		return errors.New("no policy tests found: write *_test.rego files beside the policies")
	}
	return nil
}

// policyCheck compiles the folder in strict mode (as `opa check --strict`)
// and then as the engine does, so a folder that passes will load at start.
func policyCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy check [DIR]", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := policyDirArg(fs)
	if err != nil {
		return err
	}
	res, err := loader.NewFileLoader().
		WithRegoVersion(ast.RegoV1).
		Filtered([]string{dir}, func(_ string, info os.FileInfo, _ int) bool {
			return !info.IsDir() && !strings.HasSuffix(info.Name(), ".rego")
		})
	if err != nil {
		return fmt.Errorf("%w: %w", engine.ErrPolicy, err)
	}
	modules := map[string]*ast.Module{}
	for name, f := range res.Modules {
		modules[name] = f.Parsed
	}
	c := ast.NewCompiler().WithStrict(true)
	if c.Compile(modules); c.Failed() {
		return fmt.Errorf("%w: %v", engine.ErrPolicy, c.Errors)
	}
	e, err := engine.New(ctx, engine.Options{PolicyDir: dir})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ok: %d files, revision %s, entry points %s\n", len(modules), e.Revision(), entryList())
	return nil
}

func entryList() string {
	names := make([]string, len(engine.Entries))
	for i, e := range engine.Entries {
		names[i] = string(e)
	}
	return strings.Join(names, ", ")
}

// policyEval decides one input read from a file and prints the decision as
// JSON. The operator data is the gateway's config (--config, else
// $PARACHUTE_CONFIG or a default config, as every operator command finds
// it) or a JSON file (--data); the policy folder is the config's unless
// --policies names one. The decision is evaluated only (no rate-limit
// token, no record). --explain prints the trace of that same evaluation.
func policyEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy eval", stderr)
	dir := fs.String("policies", defaultPolicyDir, "policy folder (default: the config's policies, else ./policies)")
	configPath := configFlag(fs)
	entry := fs.String("entry", "", "entry point: "+entryList())
	inputPath := fs.String("input", "", "JSON file holding the input document")
	dataPath := fs.String("data", "", "JSON file holding operator data, either the config's policy data itself or {\"parachute\": {\"config\": …}} (instead of --config)")
	explain := fs.Bool("explain", false, "print the trace of the evaluation whose decision is printed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !validEntry(*entry) {
		return fmt.Errorf("%w: --entry must be one of %s", errUsage, entryList())
	}
	if *inputPath == "" {
		return fmt.Errorf("%w: --input FILE is required", errUsage)
	}
	if *dataPath != "" && *configPath != "" {
		return fmt.Errorf("%w: --data and --config both give the operator data; pass one", errUsage)
	}
	var input any
	if err := readJSON(*inputPath, &input); err != nil {
		return err
	}
	var data map[string]any
	if *dataPath != "" {
		if err := readJSON(*dataPath, &data); err != nil {
			return err
		}
		if p, ok := data["parachute"].(map[string]any); ok {
			if c, ok := p["config"].(map[string]any); ok {
				data = c
			}
		}
	} else {
		op, err := loadOpConfig(*configPath)
		switch {
		case errors.Is(err, errNoConfig):
			fmt.Fprintln(stderr, "policy eval: no config found, so no operator data: connectors, users and roles are empty (pass --config FILE or --data FILE)")
		case err != nil:
			return err
		default:
			data = op.Cfg.PolicyData()
			if !flagSet(fs, "policies") {
				*dir = op.Cfg.Policies
			}
			fmt.Fprintf(stderr, "policy eval: operator data from %s, policies from %s\n", op.Path, *dir)
		}
	}
	e, err := engine.New(ctx, engine.Options{PolicyDir: *dir, Data: data})
	if err != nil {
		return err
	}
	in := engine.RawInput{For: engine.Entry(*entry), Doc: input}
	if !*explain {
		d := e.Evaluate(ctx, in)
		return printDecision(stdout, decisionJSON(&d))
	}
	d, trace := e.Explain(ctx, in)
	if err := printDecision(stdout, decisionJSON(&d)); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\ntrace:")
	topdown.PrettyTraceWithLocation(stdout, trace)
	return nil
}

// flagSet reports whether the flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// decisionJSON is the printed form of a decision.
func decisionJSON(d *engine.Decision) map[string]any {
	out := map[string]any{
		"decision_id": d.ID,
		"entry":       d.Entry,
		"allow":       d.Allow,
		"reasons":     d.Reasons,
		"revision":    d.Revision,
		"latency_us":  d.Latency.Microseconds(),
	}
	if d.Err != nil {
		out["error"] = d.Err.Error()
	}
	if d.RetryAfter > 0 {
		out["retry_after_seconds"] = d.RetryAfter.Seconds()
	}
	if d.Fields != nil {
		out["decision"] = d.Fields
	}
	return out
}

func printDecision(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// commitReasons are added when a decision takes effect (engine.Commit), not
// by policy: a replay, which only evaluates, never reproduces them.
var commitReasons = []string{engine.ReasonRateLimited, engine.ReasonAuditUnavailable, engine.ReasonNoReason}

// policyReplay decides a recorded decision's input again against the
// current policy files and the config's current data, and prints both.
func policyReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy replay [--config FILE] DECISION-ID|SEQ", stderr)
	configPath := configFlag(fs)
	dir := fs.String("policies", "", "policy folder (default: the config's policies)")
	explain := fs.Bool("explain", false, "print the trace of the replayed evaluation")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: give one record: its decision_id, or its seq number", errUsage)
	}
	want := fs.Arg(0)
	op, err := loadOpConfig(*configPath)
	if err != nil {
		return err
	}
	if err := op.mustExist("audit log folder (audit.dir)", op.Cfg.Audit.Dir); err != nil {
		return err
	}
	if *dir == "" {
		*dir = op.Cfg.Policies
	}
	var rec *audit.Record
	errFound := errors.New("found")
	err = audit.Read(op.Cfg.Audit.Dir, audit.ReadOptions{}, func(e audit.Entry) error {
		if (e.Record.DecisionID == want && validEntry(string(e.Record.Kind))) || strconv.FormatUint(e.Record.Seq, 10) == want { // a message's text, recorded just before its decision, carries the decision's ID
			r := e.Record
			rec = &r
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return err
	}
	if rec == nil {
		return fmt.Errorf("no record with decision_id or seq %q in %s", want, op.Cfg.Audit.Dir)
	}
	if !validEntry(string(rec.Kind)) {
		return fmt.Errorf("record %s is a %s record, not a policy decision: only %s decisions can be replayed", want, rec.Kind, entryList())
	}
	if len(rec.Input) == 0 {
		return fmt.Errorf("record %s has no stored input (written by a gateway older than input recording): its input cannot be rebuilt from the record's fields, so it cannot be replayed; "+
			"use `parachute policy eval --entry %s --input FILE` with an input written by hand", want, rec.Kind)
	}
	var input any
	if err := json.Unmarshal(rec.Input, &input); err != nil {
		return fmt.Errorf("record %s: stored input: %w", want, err)
	}
	e, err := engine.New(ctx, engine.Options{PolicyDir: *dir, Data: op.Cfg.PolicyData()})
	if err != nil {
		return err
	}
	in := engine.RawInput{For: engine.Entry(rec.Kind), Doc: input}
	var d engine.Decision
	var trace []*topdown.Event
	if *explain {
		d, trace = e.Explain(ctx, in)
	} else {
		d = e.Evaluate(ctx, in)
	}
	recorded := slices.DeleteFunc(slices.Clone(rec.Reasons), func(r string) bool { return slices.Contains(commitReasons, r) })
	now := slices.Clone(d.Reasons)
	if now == nil {
		now = []string{}
	}
	if recorded == nil {
		recorded = []string{}
	}
	slices.Sort(recorded)
	slices.Sort(now)
	out := map[string]any{
		"record": map[string]any{
			"seq": rec.Seq, "time": rec.Time, "decision_id": rec.DecisionID, "entry": rec.Kind,
			"allow": rec.Decision == "allow", "reasons": rec.Reasons, "revision": rec.PolicyRevision,
		},
		"replay":  decisionJSON(&d),
		"changed": (rec.Decision == "allow") != d.Allow || !slices.Equal(recorded, now),
		"note":    "policy only: rate limits, token budgets and the audit log's state are applied when a decision takes effect and are not replayed",
	}
	fmt.Fprintf(stderr, "policy replay: record %s from %s, against policies %s (revision %s) and the data of %s\n", want, op.Cfg.Audit.Dir, *dir, d.Revision, op.Path)
	if err := printDecision(stdout, out); err != nil {
		return err
	}
	if *explain {
		fmt.Fprintln(stdout, "\ntrace:")
		topdown.PrettyTraceWithLocation(stdout, trace)
	}
	return nil
}

func validEntry(s string) bool {
	for _, e := range engine.Entries {
		if string(e) == s {
			return true
		}
	}
	return false
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: not valid JSON: %w", path, err)
	}
	return nil
}
