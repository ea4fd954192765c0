//go:build !goolm

package matrix_test

import (
	"os"
	"testing"

	"github.com/parachute-gateway/parachute/connectors/matrix"
)

// The E2EE tests (e2ee_test.go) need the goolm build tag; make test sets it.
func TestMatrixE2EEBuilt(t *testing.T) {
	if matrix.EncryptionBuilt {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but built without -tags goolm: the Matrix end-to-end encryption tests did not run (make test passes the tag)")
	}
	t.Skip("built without -tags goolm: the Matrix end-to-end encryption tests are skipped (go test -tags goolm ./connectors/matrix/)")
}

func TestMatrixEncryptionRefusedWithoutBuild(t *testing.T) {
	_, err := matrix.New(matrix.Options{Name: "mx", Homeserver: "http://x", UserID: "@a:x", AccessToken: "t",
		Encryption: &matrix.Encryption{StorePath: "/tmp/x.db", PickleKey: make([]byte, 32)}, Recorder: nil})
	if err == nil {
		t.Fatal("encryption accepted by a build without it")
	}
}
