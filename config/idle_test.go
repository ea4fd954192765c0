package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// runtime.idle_timeout: default 10 minutes, a duration of at least 30 s;
// anything else is refused naming the field and the bound.
func TestRuntimeIdleTimeout(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		want        time.Duration // 0: refused, the error containing refused
		refused     string
	}{
		{"default", "", DefaultIdleTimeout, ""},
		{"minutes", "idle_timeout: 2m", 2 * time.Minute, ""},
		{"minimum", "idle_timeout: 30s", MinIdleTimeout, ""},
		{"too short", "idle_timeout: 5s", 0, "runtime.idle_timeout: 5s: give a duration of at least 30s"},
		{"negative", "idle_timeout: -1m", 0, "runtime.idle_timeout"},
		{"not a duration", "idle_timeout: soon", 0, "into time.Duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("vault: /v\nconnectors:\n  l: {type: local}\nruntime: {" + tt.value + "}\n"))
			if tt.want == 0 {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("Parse = %v, want ErrInvalid saying %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Runtime.IdleTimeout != tt.want {
				t.Fatalf("idle_timeout = %s, want %s", c.Runtime.IdleTimeout, tt.want)
			}
		})
	}
}
