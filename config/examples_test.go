package config

import (
	"os"
	"path/filepath"
	"testing"
)

// Every example config in examples/ must validate: they are what operators
// copy.
func TestExampleConfigsValidate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want at least 4 example configs, found %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(b); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		})
	}
}
