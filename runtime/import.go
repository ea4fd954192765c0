package runtime

import (
	"context"
	"fmt"
	"os"

	containerd "github.com/containerd/containerd/v2/client"
)

// ImportImage imports an OCI image tar (as BuildImage writes) into our
// namespace and unpacks it for the snapshotter. With ref set, the image is
// (also) recorded under that name; otherwise under the names the tar
// carries.
func (c *Containerd) ImportImage(ctx context.Context, tarPath string, ref string) error {
	ctx = c.ns(ctx)
	// A lease keeps containerd's garbage collector off the blobs (the index
	// above all, which no image references until the import ends) while
	// they are written and unpacked.
	ctx, done, err := c.client.WithLease(ctx)
	if err != nil {
		return c.wrap("import image", err)
	}
	defer done(context.WithoutCancel(ctx)) //nolint:errcheck // the lease expires anyway
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	var opts []containerd.ImportOpt
	if ref != "" {
		opts = append(opts, containerd.WithIndexName(ref))
	}
	imgs, err := c.client.Import(ctx, f, opts...)
	if err != nil {
		return c.wrap("import image", err)
	}
	if len(imgs) == 0 {
		return fmt.Errorf("import %s: the tar names no image; pass a ref", tarPath)
	}
	for _, rec := range imgs {
		img := containerd.NewImage(c.client, rec)
		if err := img.Unpack(ctx, c.opts.Snapshotter); err != nil {
			return c.wrap("unpack image "+rec.Name, err)
		}
		c.unpacked.Delete(rec.Name)
	}
	return nil
}
