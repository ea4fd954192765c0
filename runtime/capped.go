package runtime

import (
	"io"
	"sync"
)

// cappedWriter passes at most limit bytes to w and drops the rest, so a
// chatty process never blocks on a full pipe and never floods the gateway.
// A write error from w is remembered and later bytes are dropped too.
type cappedWriter struct {
	mu        sync.Mutex
	w         io.Writer
	left      int64
	truncated bool
}

func newCappedWriter(w io.Writer, limit int64) *cappedWriter {
	if w == nil {
		w = io.Discard
	}
	if limit <= 0 {
		limit = DefaultOutputLimit
	}
	return &cappedWriter{w: w, left: limit}
}

// Write always reports the whole of p as written.
func (c *cappedWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := int64(len(p))
	if n > c.left {
		c.truncated = true
		p = p[:c.left]
	}
	if len(p) > 0 {
		if _, err := c.w.Write(p); err != nil {
			c.left = 0
			c.truncated = true
			return int(n), nil
		}
		c.left -= int64(len(p))
	}
	return int(n), nil
}

// Truncated reports whether any byte was dropped.
func (c *cappedWriter) Truncated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.truncated
}
