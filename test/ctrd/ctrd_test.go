package ctrd

import (
	"context"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

func TestStartAnswers(t *testing.T) {
	addr := Start(t)
	if len(addr) >= 108 {
		t.Fatalf("socket path %q is %d bytes, over the unix limit", addr, len(addr))
	}
	c, err := containerd.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("containerd %s at %s", v.Version, addr)
}
