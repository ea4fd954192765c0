package bridge

import (
	"io"
	"net"
	"testing"
)

// BenchmarkBridgeThroughput measures one connection's round trip through
// the bridge to an echo socket, 64 KiB per iteration.
func BenchmarkBridgeThroughput(b *testing.B) {
	addr, _, _, _ := startBridge(b, echoSocket(b), 4)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	got := make([]byte, len(buf))
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		go func() { _, _ = c.Write(buf) }()
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
}
