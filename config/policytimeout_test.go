package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// policy_timeout: default 250 ms (the engine's own), a duration between
// 10 ms and 10 s; anything else is refused naming the field and the bounds.
func TestPolicyTimeout(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		want        time.Duration // 0: refused, the error containing refused
		refused     string
	}{
		{"default", "", DefaultPolicyTimeout, ""},
		{"longer", "policy_timeout: 1s\n", time.Second, ""},
		{"minimum", "policy_timeout: 10ms\n", MinPolicyTimeout, ""},
		{"too short", "policy_timeout: 1ms\n", 0, "policy_timeout: 1ms: give a duration between 10ms and 10s"},
		{"too long", "policy_timeout: 1m\n", 0, "policy_timeout: 1m0s: give a duration between"},
		{"negative", "policy_timeout: -1s\n", 0, "policy_timeout"},
		{"not a duration", "policy_timeout: fast\n", 0, "into time.Duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte("vault: /v\n" + tt.value + "connectors:\n  l: {type: local}\n"))
			if tt.want == 0 {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("Parse = %v, want ErrInvalid saying %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.PolicyTimeout != tt.want {
				t.Fatalf("policy_timeout = %s, want %s", c.PolicyTimeout, tt.want)
			}
		})
	}
}
