package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// ErrPolicy marks a policy set that cannot be used: a parse or compile
// error, a missing entry point, or failing policy tests. Its message names
// the file and line.
var ErrPolicy = errors.New("invalid policy")

// Required entry points: a policy set without them is refused. Egress is
// optional; without it every egress request is denied.
var required = []Entry{Message, Session, Tool, Model}

// policySet is one compiled, immutable version of the policies and data.
// Decisions read it through an atomic pointer, so a reload never blocks or
// tears a decision.
type policySet struct {
	revision string
	queries  map[Entry]*rego.PreparedEvalQuery
	files    int
	// uncached names the first non-deterministic builtin call in the
	// policy ("" when there is none); cache is nil then, or when caching
	// is off. A new set starts with an empty cache: a reload or a data
	// change flushes it by replacing it.
	uncached string
	cache    *decisionCache
	reads    map[Entry]*readNode // the input paths each entry's rules can read: its cache key
}

// source is what a policy set is built from.
type source struct {
	modules map[string]*ast.Module // runtime modules by file path
	tests   map[string]*ast.Module // *_test.rego modules
	// defaults is the policy folder's own data.json (data.parachute.defaults
	// and the like), loaded as `opa test` and `opa eval -d` load it.
	defaults map[string]any
	digest   []byte // sha256 over the file names and contents
}

// DefaultsFile is the data file at the root of the policy folder that the
// engine loads beside the operator data. It must not define
// parachute.config, which is the operator's.
const DefaultsFile = "data.json"

// readSource parses every .rego file under dir. Parse errors name file:line.
func readSource(dir string) (*source, error) {
	src := &source{modules: map[string]*ast.Module{}, tests: map[string]*ast.Module{}}
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".rego") {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrPolicy, dir, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no .rego files in %s", ErrPolicy, dir)
	}
	sort.Strings(names)
	h := sha256.New()
	var errs ast.Errors
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
		}
		rel, _ := filepath.Rel(dir, name)
		isTest := strings.HasSuffix(name, "_test.rego")
		if !isTest {
			fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
			h.Write(b)
		}
		m, err := ast.ParseModuleWithOpts(name, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			var pe ast.Errors
			if errors.As(err, &pe) {
				errs = append(errs, pe...)
				continue
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrPolicy, name, err)
		}
		if isTest {
			src.tests[name] = m
		} else {
			src.modules[name] = m
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrPolicy, formatErrors(errs))
	}
	if b, err := os.ReadFile(filepath.Join(dir, DefaultsFile)); err == nil {
		if err := json.Unmarshal(b, &src.defaults); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrPolicy, filepath.Join(dir, DefaultsFile), err)
		}
		if p, ok := src.defaults["parachute"].(map[string]any); ok {
			if _, ok := p["config"]; ok {
				return nil, fmt.Errorf("%w: %s defines parachute.config, which only the gateway's config may set",
					ErrPolicy, filepath.Join(dir, DefaultsFile))
			}
		}
		fmt.Fprintf(h, "%s\x00%d\x00", DefaultsFile, len(b))
		h.Write(b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	src.digest = h.Sum(nil)
	return src, nil
}

// formatErrors renders OPA errors one per line as file:line: message.
func formatErrors(errs ast.Errors) string {
	lines := make([]string, 0, len(errs))
	for _, e := range errs {
		if e.Location != nil {
			lines = append(lines, fmt.Sprintf("%s:%d: %s", e.Location.File, e.Location.Row, e.Message))
		} else {
			lines = append(lines, e.Message)
		}
	}
	return strings.Join(lines, "\n")
}

// newStore holds the operator data at data.parachute.config, prepared for
// policy (prepareData: role settings merged and rates computed, membership
// lists keyed by ID). The data is round-tripped through JSON first so that
// any Go value from a config decoder becomes plain JSON types.
func newStore(defaults, data map[string]any) (storage.Store, []byte, error) {
	if data == nil {
		data = map[string]any{}
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: operator data is not JSON-compatible: %w", ErrPolicy, err)
	}
	var plain map[string]any
	if err := json.Unmarshal(b, &plain); err != nil {
		return nil, nil, fmt.Errorf("%w: operator data: %w", ErrPolicy, err)
	}
	if err := prepareData(defaults, plain); err != nil {
		return nil, nil, err
	}
	doc := map[string]any{}
	for k, v := range defaults {
		doc[k] = v
	}
	parachute, _ := doc["parachute"].(map[string]any)
	merged := map[string]any{"config": plain}
	for k, v := range parachute {
		merged[k] = v
	}
	doc["parachute"] = merged
	return inmem.NewFromObjectWithOpts(doc, inmem.OptReturnASTValuesOnRead(true)), b, nil
}

// compile builds a policy set from src and data, preparing one query per
// entry point. When runTests is set the policy's own tests must pass too.
func compile(ctx context.Context, src *source, data map[string]any, runTests bool, testTimeout time.Duration) (*policySet, error) {
	store, dataJSON, err := newStore(src.defaults, data)
	if err != nil {
		return nil, err
	}
	compiler := ast.NewCompiler()
	if compiler.Compile(src.modules); compiler.Failed() {
		return nil, fmt.Errorf("%w: %s", ErrPolicy, formatErrors(compiler.Errors))
	}
	for _, entry := range required {
		if len(compiler.GetRulesExact(decisionRef(entry))) == 0 {
			return nil, fmt.Errorf("%w: entry point %s is missing: no rule `decision` in package parachute.%s",
				ErrPolicy, decisionRef(entry), entry)
		}
	}
	if runTests {
		if err := runPolicyTests(ctx, src, testTimeout); err != nil {
			return nil, err
		}
	}
	h := sha256.New()
	h.Write(src.digest)
	h.Write(dataJSON)
	set := &policySet{
		revision: hex.EncodeToString(h.Sum(nil))[:16],
		queries:  make(map[Entry]*rego.PreparedEvalQuery, len(Entries)),
		files:    len(src.modules),
		uncached: nondeterministicCall(compiler),
		reads:    make(map[Entry]*readNode, len(Entries)),
	}
	for _, entry := range Entries {
		pq, err := rego.New(
			rego.Query(decisionRef(entry).String()),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.StrictBuiltinErrors(true),
		).PrepareForEval(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: preparing %s: %w", ErrPolicy, entry, err)
		}
		set.queries[entry] = &pq
		set.reads[entry] = inputReads(compiler, entry)
	}
	return set, nil
}

func decisionRef(e Entry) ast.Ref {
	return ast.MustParseRef("data.parachute." + string(e) + ".decision")
}

// TestFailure is one failing or erroring policy test.
type TestFailure struct {
	Name     string // package and rule, e.g. data.parachute.tool_test.test_x
	Location string // file:line
	Err      string // evaluation error, if the test errored rather than failed
}

// TestReport is the outcome of a policy test run.
type TestReport struct {
	Passed   int
	Failures []TestFailure
}

// RunTests runs the *_test.rego tests of the policy folder dir with an empty
// data document, as `opa test dir` does.
func RunTests(ctx context.Context, dir string) (TestReport, error) {
	src, err := readSource(dir)
	if err != nil {
		return TestReport{}, err
	}
	return testSource(ctx, src, time.Minute)
}

func testSource(ctx context.Context, src *source, timeout time.Duration) (TestReport, error) {
	all := make(map[string]*ast.Module, len(src.modules)+len(src.tests))
	for k, v := range src.modules {
		all[k] = v
	}
	for k, v := range src.tests {
		all[k] = v
	}
	store, _, err := newStore(src.defaults, nil)
	if err != nil {
		return TestReport{}, err
	}
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return TestReport{}, err
	}
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler()).
		SetStore(store).
		SetModules(all).
		SetTimeout(timeout).
		RaiseBuiltinErrors(true).
		RunTests(ctx, txn)
	if err != nil {
		var ae ast.Errors
		if errors.As(err, &ae) {
			return TestReport{}, fmt.Errorf("%w: %s", ErrPolicy, formatErrors(ae))
		}
		return TestReport{}, fmt.Errorf("%w: running tests: %w", ErrPolicy, err)
	}
	var rep TestReport
	for r := range ch {
		if r.Skip {
			continue
		}
		if r.Pass() {
			rep.Passed++
			continue
		}
		f := TestFailure{Name: r.Package + "." + r.Name}
		if r.Location != nil {
			f.Location = fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
		}
		if r.Error != nil {
			f.Err = r.Error.Error()
		}
		rep.Failures = append(rep.Failures, f)
	}
	return rep, nil
}

func runPolicyTests(ctx context.Context, src *source, timeout time.Duration) error {
	rep, err := testSource(ctx, src, timeout)
	if err != nil {
		return err
	}
	if len(rep.Failures) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "%d policy test(s) failed:", len(rep.Failures))
		for _, f := range rep.Failures {
			fmt.Fprintf(&b, "\n%s: %s", f.Location, f.Name)
			if f.Err != "" {
				fmt.Fprintf(&b, ": %s", f.Err)
			}
		}
		return fmt.Errorf("%w: %s", ErrPolicy, b.String())
	}
	return nil
}
