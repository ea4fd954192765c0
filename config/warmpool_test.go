package config

import (
	"errors"
	"strings"
	"testing"
)

// runtime.warm_pool_max: unset keeps the pool fixed at warm_pool; set, it
// is between warm_pool and 64 and needs a warm pool; anything else is
// refused naming the field and the fix.
func TestRuntimeWarmPoolMax(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		want        int // the parsed warm_pool_max when accepted
		refused     string
	}{
		{"unset", "warm_pool: 2", 0, ""},
		{"grows", "warm_pool: 1, warm_pool_max: 16", 16, ""},
		{"equal", "warm_pool: 4, warm_pool_max: 4", 4, ""},
		{"the bound", "warm_pool: 1, warm_pool_max: 64", 64, ""},
		{"past the bound", "warm_pool: 1, warm_pool_max: 65", 0, "runtime.warm_pool_max: 65 is not between warm_pool and 64"},
		{"negative", "warm_pool: 1, warm_pool_max: -1", 0, "runtime.warm_pool_max: -1"},
		{"below warm_pool", "warm_pool: 8, warm_pool_max: 4", 0, "runtime.warm_pool_max: 4 is below runtime.warm_pool 8"},
		{"without a pool", "warm_pool_max: 8", 0, "set runtime.warm_pool (at least 1) too"},
		{"not a number", "warm_pool: 1, warm_pool_max: lots", 0, "cannot unmarshal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("vault: /v\nconnectors:\n  l: {type: local}\nruntime: {" + tt.value + "}\n"))
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("Parse = %v, want an error saying %q", err, tt.refused)
				}
				if !strings.Contains(tt.refused, "unmarshal") && !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Runtime.WarmPoolMax != tt.want {
				t.Fatalf("warm_pool_max = %d, want %d", c.Runtime.WarmPoolMax, tt.want)
			}
		})
	}
}
