package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// checkExamples decides every documented example of the policy folder
// (examples/<entry>_<name>/input.json, with examples/data.json as the
// operator data) and compares allow and reasons with the example's
// expected.json. A folder without examples/data.json has no examples; an
// example without expected.json is not checked. Any difference, or an
// example that cannot be read, is an error wrapping ErrPolicy that names
// the example's file.
func checkExamples(ctx context.Context, dir string, src *source, timeout time.Duration) error {
	root := filepath.Join(dir, "examples")
	b, err := os.ReadFile(filepath.Join(root, "data.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: examples: %w", ErrPolicy, err)
	}
	var doc struct {
		Parachute struct {
			Config map[string]any `json:"config"`
		} `json:"parachute"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPolicy, filepath.Join(root, "data.json"), err)
	}
	set, err := compile(ctx, src, doc.Parachute.Config, false, 0)
	if err != nil {
		return err
	}
	inputs, _ := filepath.Glob(filepath.Join(root, "*", "input.json"))
	var bad []string
	for _, in := range inputs {
		if msg := checkExample(ctx, set, in, timeout); msg != "" {
			bad = append(bad, msg)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %d policy example(s) decided otherwise than expected:\n%s", ErrPolicy, len(bad), strings.Join(bad, "\n"))
	}
	return nil
}

// checkExample returns what is wrong with one example, or "".
func checkExample(ctx context.Context, set *policySet, inputPath string, timeout time.Duration) string {
	expPath := filepath.Join(filepath.Dir(inputPath), "expected.json")
	eb, err := os.ReadFile(expPath)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	var want struct {
		Allow   *bool    `json:"allow"`
		Reasons []string `json:"reasons"`
	}
	if err == nil {
		err = json.Unmarshal(eb, &want)
	}
	if err == nil && want.Allow == nil {
		err = errors.New(`no boolean "allow"`)
	}
	if err != nil {
		return fmt.Sprintf("%s: %v", expPath, err)
	}
	ib, err := os.ReadFile(inputPath)
	var input any
	if err == nil {
		err = json.Unmarshal(ib, &input)
	}
	if err != nil {
		return fmt.Sprintf("%s: %v", inputPath, err)
	}
	name := filepath.Base(filepath.Dir(inputPath))
	entry, _, _ := strings.Cut(name, "_")
	e := &Engine{timeout: timeout}
	d := Decision{Entry: Entry(entry), Revision: set.revision}
	e.evaluate(ctx, set, RawInput{For: Entry(entry), Doc: input}, &d)
	if d.Allow != *want.Allow || !slices.Equal(d.Reasons, want.Reasons) && !(len(d.Reasons) == 0 && len(want.Reasons) == 0) {
		got := fmt.Sprintf("allow=%v reasons=%v", d.Allow, d.Reasons)
		if d.Err != nil {
			got += " (" + d.Err.Error() + ")"
		}
		return fmt.Sprintf("%s: %s, expected allow=%v reasons=%v", inputPath, got, *want.Allow, want.Reasons)
	}
	return ""
}
