package ctrd

import (
	"context"
	"errors"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

func withNS(ctx context.Context, ns string) context.Context {
	return namespaces.WithNamespace(ctx, ns)
}

// RemoveAll kills and deletes every container of ctx's namespace with its
// snapshot. Tests use it to leave nothing behind.
func RemoveAll(ctx context.Context, c *containerd.Client) error {
	cs, err := c.Containers(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ctr := range cs {
		if t, err := ctr.Task(ctx, nil); err == nil {
			t.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
			if ch, err := t.Wait(ctx); err == nil {
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
				}
			}
			if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
		if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
