package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/config"
)

func TestMatrixChecks(t *testing.T) {
	dir := t.TempDir()
	readable := filepath.Join(dir, "readable.db")
	if err := os.WriteFile(readable, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	conn := func(store, recovery string) *config.Connector {
		return &config.Connector{Type: "matrix", Encryption: true, PickleKeyEnv: "PK", RecoveryKeyEnv: recovery, CryptoStore: store}
	}
	tests := []struct {
		name     string
		conn     *config.Connector
		env      map[string]string
		wantFail []string // check name suffixes that fail
	}{
		{"all good", conn(filepath.Join(dir, "new.db"), "RK"), map[string]string{"PK": strings.Repeat("k", 32), "RK": "EsT..."}, nil},
		{"no pickle key", conn(filepath.Join(dir, "new.db"), ""), nil, []string{"pickle key"}},
		{"short pickle key", conn(filepath.Join(dir, "new.db"), ""), map[string]string{"PK": "short"}, []string{"pickle key"}},
		{"recovery key named but unset", conn(filepath.Join(dir, "new.db"), "RK"), map[string]string{"PK": strings.Repeat("k", 32)}, []string{"recovery key"}},
		{"store readable by others", conn(readable, ""), map[string]string{"PK": strings.Repeat("k", 32)}, []string{"crypto store"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{StateDir: dir, Connectors: map[string]*config.Connector{"mx": tt.conn, "plain": {Type: "matrix"}}}
			checks := matrixChecks(cfg, func(k string) string { return tt.env[k] })
			var failed []string
			for _, c := range checks {
				if !strings.HasPrefix(c.Check, "matrix mx ") {
					t.Errorf("check %q: only encrypted connectors are checked", c.Check)
				}
				if c.Status != statusOK && !strings.HasSuffix(c.Check, "e2ee build") {
					failed = append(failed, strings.TrimPrefix(c.Check, "matrix mx "))
					if c.Fix == "" {
						t.Errorf("%s fails with no fix", c.Check)
					}
				}
			}
			if strings.Join(failed, ",") != strings.Join(tt.wantFail, ",") {
				t.Errorf("failed = %q, want %q (%+v)", failed, tt.wantFail, checks)
			}
		})
	}
}
