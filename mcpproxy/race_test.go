package mcpproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
)

// unlimited lifts the owner's tool-call rate limit, for tests and
// benchmarks that make many calls.
var unlimited = map[string]any{"roles": map[string]any{
	"owner": map[string]any{"tool_calls_per_minute": 1e12, "tool_call_burst": 1e12},
}}

func newFastEngine(t testing.TB, rec engine.Recorder) *engine.Engine {
	t.Helper()
	eng, err := engine.New(context.Background(), engine.Options{
		PolicyDir: filepath.Join(repoRoot(t), "policies"), Data: unlimited, Recorder: rec,
	})
	must(t, err)
	return eng
}

// TestSymlinkSwapRace: while a goroutine keeps swapping a folder in the
// workspace with a symlink to "/", 10,000 reads and writes aimed through it
// at the canary run through the proxy and straight at the built-in server.
// None may read or write outside the workspace.
func TestSymlinkSwapRace(t *testing.T) {
	f := newFixture(t)
	p, err := New(context.Background(), Options{Decider: newFastEngine(t, nil), Vault: f.vault, Builtin: true})
	must(t, err)
	s, err := p.NewSession(context.Background(), SessionOptions{Facts: func() engine.SessionFacts { return facts(false) }})
	must(t, err)
	defer s.Close()

	// swap/<outside path> is a harmless copy while swap is a folder, and the
	// canary itself while swap is the link to "/".
	rel := strings.TrimPrefix(f.outside, "/")
	real, link := filepath.Join(f.ws, ".real"), filepath.Join(f.ws, ".link")
	must(t, os.MkdirAll(filepath.Join(real, rel), 0o755))
	must(t, os.WriteFile(filepath.Join(real, rel, "canary"), []byte("decoy"), 0o644))
	must(t, os.Symlink("/", link))
	swap := filepath.Join(f.ws, "swap")

	stop := make(chan struct{})
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.Rename(real, swap)
			_ = os.Rename(swap, real)
			_ = os.Rename(link, swap)
			_ = os.Rename(swap, link)
			swaps.Add(1)
		}
	}()

	const calls = 10000
	const workers = 8
	var escapes, ok atomic.Int64
	var cwg sync.WaitGroup
	for wkr := range workers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for i := wkr; i < calls; i += workers {
				target := "swap/" + rel + "/canary"
				name, args := "read_file", map[string]any{"path": target}
				if i%2 == 1 {
					name, args = "write_file", map[string]any{"path": fmt.Sprintf("swap/%s/new-%d", rel, i), "content": "escaped"}
				}
				raw, _ := json.Marshal(args)
				var res *mcp.CallToolResult
				if i%4 < 2 {
					e := p.catalog.byName[name]
					res = s.call(context.Background(), e, raw)
				} else {
					res, _ = s.vault.Call(context.Background(), name, raw)
				}
				text := res.Content[0].(*mcp.TextContent).Text
				if strings.Contains(text, canaryText) {
					escapes.Add(1)
				}
				if !res.IsError {
					ok.Add(1)
				}
			}
		}()
	}
	cwg.Wait()
	close(stop)
	wg.Wait()
	if escapes.Load() != 0 {
		t.Fatalf("%d reads returned the canary", escapes.Load())
	}
	f.canaryIntact(t)
	t.Logf("%d calls, %d succeeded inside the workspace, %d swaps", calls, ok.Load(), swaps.Load())
}
