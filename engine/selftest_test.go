package engine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyProductPolicies copies the product policy folder (policies, tests, data and
// examples; not the seccomp profiles) to a temporary folder.
func copyProductPolicies(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(productPolicies, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(productPolicies, path)
		if d.IsDir() {
			if rel == "seccomp" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// A hot reload runs the new revision's own tests and its documented
// examples before the swap; a revision that fails either is refused, the
// last good one stays in force, and the refusal is visible until a good
// reload.
func TestReloadSelfTest(t *testing.T) {
	ctx := context.Background()
	dir := copyProductPolicies(t)
	e, err := New(ctx, Options{PolicyDir: dir, TestOnReload: true})
	if err != nil {
		t.Fatalf("the shipped policies fail their own self-test: %v", err)
	}
	good := e.Revision()
	expected := filepath.Join(dir, "examples", "egress_not_allowed", "expected.json")
	orig, _ := os.ReadFile(expected)
	cases := []struct {
		name    string
		edit    func(t *testing.T)
		undo    func(t *testing.T)
		wantErr string
	}{
		{
			name:    "an example decides otherwise",
			edit:    func(t *testing.T) { write(t, expected, `{"allow": true, "reasons": []}`) },
			undo:    func(t *testing.T) { write(t, expected, string(orig)) },
			wantErr: "egress_not_allowed/input.json: allow=false reasons=[egress-host-not-allowed], expected allow=true",
		},
		{
			name: "a policy change its own example catches",
			edit: func(t *testing.T) {
				write(t, filepath.Join(dir, "zz_open.rego"), "package parachute.egress\n\nhost_allowed := true\n")
			},
			undo:    func(t *testing.T) { _ = os.Remove(filepath.Join(dir, "zz_open.rego")) },
			wantErr: "egress_test.rego:24: data.parachute.egress_test.test_unlisted_host_denied",
		},
		{
			name: "a failing policy test",
			edit: func(t *testing.T) {
				write(t, filepath.Join(dir, "zz_test.rego"), "package parachute.zz_test\n\ntest_fails if false\n")
			},
			undo:    func(t *testing.T) { _ = os.Remove(filepath.Join(dir, "zz_test.rego")) },
			wantErr: "zz_test.rego:3",
		},
		{
			name: "an erroring policy test",
			edit: func(t *testing.T) {
				write(t, filepath.Join(dir, "zz_test.rego"), "package parachute.zz_test\n\ntest_errors if to_number(\"x\") == 1\n")
			},
			undo:    func(t *testing.T) { _ = os.Remove(filepath.Join(dir, "zz_test.rego")) },
			wantErr: "zz_test.rego:3",
		},
		{
			name:    "an expected.json that is not one",
			edit:    func(t *testing.T) { write(t, expected, `{"reasons": []}`) },
			undo:    func(t *testing.T) { write(t, expected, string(orig)) },
			wantErr: `no boolean "allow"`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.edit(t)
			err := e.Reload(ctx)
			r := e.Refused()
			tc.undo(t)
			if err == nil || !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Reload: %v, want an ErrPolicy naming %q", err, tc.wantErr)
			}
			if e.Revision() != good {
				t.Fatalf("revision %s in force, want the last good %s", e.Revision(), good)
			}
			if r == nil || r.Err != err || r.Revision != good {
				t.Fatalf("Refused() = %+v", r)
			}
			if err := e.Reload(ctx); err != nil {
				t.Fatalf("Reload after undo: %v", err)
			}
			if e.Refused() != nil {
				t.Fatal("a good reload left the refusal visible")
			}
		})
	}
	if n := e.Refusals(); n != uint64(len(cases)) {
		t.Errorf("Refusals() = %d, want %d", n, len(cases))
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
