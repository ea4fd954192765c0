package strictjson

import (
	"errors"
	"strings"
	"testing"
)

// nested is {"a": [[[ … ]]] } with depth levels of arrays.
func nested(depth int) []byte {
	return []byte(`{"a":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
}

// A deeply nested value from a sandboxed agent (a tool call, a model
// request) must be refused at once, not walked with a path string rebuilt
// at every level: before, 40,000 levels (80 KB) took 12.6 s and 120,000
// levels did not finish in 100 s, in every reader of this package.
func TestDeepNestingIsRefusedCheaply(t *testing.T) {
	type args struct {
		A any `json:"a"`
	}
	for _, tc := range []struct {
		name  string
		depth int
		want  error
	}{
		{"at the limit", MaxDepth - 1, nil}, // the object is one level more
		{"one past", MaxDepth, ErrTooDeep},
		{"a million levels", 1_000_000, ErrTooDeep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := nested(tc.depth)
			for name, read := range map[string]func() error{
				"Validate":  func() error { return Validate(raw) },
				"Object":    func() error { _, err := Object(raw); return err },
				"Unmarshal": func() error { var v args; return Unmarshal(raw, &v) },
			} {
				err := read()
				if tc.want == nil && err != nil {
					t.Errorf("%s: refused at depth %d: %v", name, tc.depth, err)
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("%s: depth %d: err %v, want %v", name, tc.depth, err, tc.want)
				}
			}
		})
	}
}

// The path in an error still names where the problem is.
func TestErrorPathsAfterLazyPaths(t *testing.T) {
	err := Validate([]byte(`{"a":[{"b":1},{"c":{"d":1,"d":2}}]}`))
	if !errors.Is(err, ErrDuplicateKey) || !strings.Contains(err.Error(), `"d" in a[1].c`) {
		t.Fatalf("err %v, want a duplicate \"d\" in a[1].c", err)
	}
	type inner struct {
		X int `json:"x"`
	}
	type outer struct {
		L []inner `json:"l"`
	}
	var v outer
	err = Unmarshal([]byte(`{"l":[{"x":1},{"X":2}]}`), &v)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), `"X" in l[1]`) {
		t.Fatalf("err %v, want unknown \"X\" in l[1]", err)
	}
}

func BenchmarkDeepNesting(b *testing.B) {
	raw := nested(MaxDepth - 1)
	for b.Loop() {
		if err := Validate(raw); err != nil {
			b.Fatal(err)
		}
	}
}
