// Package prereq is the one rule for tests that need something a machine
// may lack (root, containerd, Chromium, an npm agent): outside CI they skip
// and say what is missing; under CI=true, where `make deps` installed
// everything, a missing prerequisite fails the test.
package prereq

import (
	"os"
	"testing"
)

// Unavailable skips t, or fails it under CI=true. what names the kind of
// prerequisite ("containerd", "browser"), or is empty.
func Unavailable(t testing.TB, what, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		if what != "" {
			what += " "
		}
		t.Fatalf("%sprerequisite missing under CI=true: %s", what, why)
	}
	t.Skipf("skipping: %s (set CI=true to make this a failure)", why)
}
