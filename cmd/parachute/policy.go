package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/parachute-gateway/parachute/engine"
)

// defaultPolicyDir is where the policy commands look when no folder is given.
const defaultPolicyDir = "policies"

func init() {
	register(&command{name: "policy test", summary: "run the policies' own tests (like opa test)", run: policyTest})
	register(&command{name: "policy check", summary: "compile the policies strictly and check every entry point", run: policyCheck})
	register(&command{name: "policy eval", summary: "decide one input: --entry tool --input FILE", run: policyEval})
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

// policyEval decides one input read from a file, with optional operator data,
// and prints the decision as JSON. --explain prints the evaluation trace.
func policyEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy eval", stderr)
	dir := fs.String("policies", defaultPolicyDir, "policy folder")
	entry := fs.String("entry", "", "entry point: "+entryList())
	inputPath := fs.String("input", "", "JSON file holding the input document")
	dataPath := fs.String("data", "", "JSON file holding operator data, either the config itself or {\"parachute\": {\"config\": …}}")
	explain := fs.Bool("explain", false, "print the evaluation trace")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !validEntry(*entry) {
		return fmt.Errorf("%w: --entry must be one of %s", errUsage, entryList())
	}
	if *inputPath == "" {
		return fmt.Errorf("%w: --input FILE is required", errUsage)
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
	}
	e, err := engine.New(ctx, engine.Options{PolicyDir: *dir, Data: data})
	if err != nil {
		return err
	}
	d := e.Decide(ctx, engine.RawInput{For: engine.Entry(*entry), Doc: input})
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
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if *explain {
		return explainTrace(ctx, *dir, data, *entry, input, stdout)
	}
	return nil
}

// explainTrace evaluates again with a tracer and prints OPA's trace. It is a
// separate, unprepared evaluation: slow, and only for people reading it.
func explainTrace(ctx context.Context, dir string, data map[string]any, entry string, input any, w io.Writer) error {
	res, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).Filtered([]string{dir},
		func(_ string, info os.FileInfo, _ int) bool {
			return !info.IsDir() && (!strings.HasSuffix(info.Name(), ".rego") || strings.HasSuffix(info.Name(), "_test.rego"))
		})
	if err != nil {
		return err
	}
	if data == nil {
		data = map[string]any{}
	}
	buf := topdown.NewBufferTracer()
	opts := []func(*rego.Rego){
		rego.Query("data.parachute." + entry + ".decision"),
		rego.Input(input),
		rego.QueryTracer(buf),
		rego.Store(inmem.NewFromObject(map[string]any{"parachute": map[string]any{"config": data}})),
	}
	for _, f := range res.Modules {
		opts = append(opts, rego.ParsedModule(f.Parsed))
	}
	r := rego.New(opts...)
	if _, err := r.Eval(ctx); err != nil {
		fmt.Fprintf(w, "trace evaluation error: %v\n", err)
	}
	fmt.Fprintln(w, "\ntrace:")
	topdown.PrettyTraceWithLocation(w, *buf)
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
