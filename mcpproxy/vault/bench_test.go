package vault

import (
	"context"
	"os"
	"testing"
)

// BenchmarkVaultCall is one built-in read_file and one write_file (fsync
// included) on a two-level path, without transport or policy, for each
// resolver.
func BenchmarkVaultCall(b *testing.B) {
	ws := b.TempDir()
	must(b, os.MkdirAll(ws+"/notes/2026", 0o755))
	must(b, os.WriteFile(ws+"/notes/2026/today.md", []byte("hello notes\n"), 0o644))
	for _, m := range modes {
		s, err := New(ws, Options{walk: m.walk})
		must(b, err)
		defer s.Close()
		for _, c := range []struct{ tool, raw string }{
			{"read_file", `{"path":"notes/2026/today.md"}`},
			{"write_file", `{"path":"notes/2026/out.md","content":"hello"}`},
		} {
			b.Run(m.name+"/"+c.tool, func(b *testing.B) {
				for b.Loop() {
					res, err := s.Call(context.Background(), c.tool, []byte(c.raw))
					if err != nil || res.IsError {
						b.Fatal(err, res)
					}
				}
			})
		}
	}
}
