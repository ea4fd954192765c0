package config

import (
	"errors"
	"strings"
	"testing"
)

// runtime.init_exec: on by default, off only when said; anything but a
// YAML boolean is refused naming the field.
func TestRuntimeInitExec(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		want        bool
		refused     string // non-empty: Parse refuses, the error containing it
	}{
		{"default on", "", true, ""},
		{"on", "init_exec: true", true, ""},
		{"off: runc exec per turn", "init_exec: false", false, ""},
		{"not a boolean", "init_exec: maybe", false, `runtime.init_exec: line 4: "maybe" is not a boolean: write true or false`},
		{"a string", `init_exec: "false"`, false, `runtime.init_exec: line 4: "false" is not a boolean`},
		{"a misspelt key", "init_execs: false", false, "init_execs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("vault: /v\nconnectors:\n  l: {type: local}\nruntime: {" + tt.value + "}\n"))
			if tt.refused != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("Parse = %v, want ErrInvalid saying %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Runtime.InitExecOn(); got != tt.want {
				t.Fatalf("InitExecOn = %v, want %v", got, tt.want)
			}
		})
	}
}
