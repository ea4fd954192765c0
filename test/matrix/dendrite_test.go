package matrixtest_test

import (
	"testing"

	matrixtest "github.com/parachute-gateway/parachute/test/matrix"
)

func TestHomeserverStarts(t *testing.T) {
	h := matrixtest.Start(t)
	u := h.Register(t, "alice")
	if u.UserID != "@alice:localhost" || u.AccessToken == "" {
		t.Fatalf("registered %+v", u)
	}
}
