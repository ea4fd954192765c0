package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The documented examples (policies/examples) decide as policies/README.md
// says when run through the engine with the example operator data.
func TestPolicyExamples(t *testing.T) {
	var doc struct {
		Parachute struct {
			Config map[string]any `json:"config"`
		} `json:"parachute"`
	}
	b, err := os.ReadFile(filepath.Join(productPolicies, "examples", "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	e, err := New(context.Background(), Options{PolicyDir: productPolicies, Data: doc.Parachute.Config})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		allow   bool
		reasons string
	}{
		"message_stranger_private_bot": {false, "unknown-user"},
		"message_owner_direct":         {true, ""},
		"session_public_guest":         {true, ""},
		"tool_write_hooks":             {false, "hooks-write-forbidden,path-outside-workspace"},
		"tool_read_outside_workspace":  {false, "path-outside-workspace"},
		"model_budget_exhausted":       {false, "token-budget-exhausted"},
		"egress_not_allowed":           {false, "egress-host-not-allowed"},
	}
	dirs, _ := filepath.Glob(filepath.Join(productPolicies, "examples", "*", "input.json"))
	if len(dirs) != len(want) {
		t.Fatalf("%d examples on disk, %d expected here: keep the table in step", len(dirs), len(want))
	}
	for _, path := range dirs {
		name := filepath.Base(filepath.Dir(path))
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("example %s has no expectation", name)
			}
			var input any
			b, _ := os.ReadFile(path)
			if err := json.Unmarshal(b, &input); err != nil {
				t.Fatal(err)
			}
			entry := Entry(strings.SplitN(name, "_", 2)[0])
			d := e.Decide(context.Background(), RawInput{For: entry, Doc: input})
			if d.Allow != w.allow || strings.Join(d.Reasons, ",") != w.reasons {
				t.Fatalf("allow=%v reasons=%v (err %v), want allow=%v reasons=%s", d.Allow, d.Reasons, d.Err, w.allow, w.reasons)
			}
		})
	}
}
