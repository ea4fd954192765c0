package mcpproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
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

	var swaps atomic.Int64
	stopSwapping := swapLoop(real, link, swap, &swaps)

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
					res, _ = s.call(context.Background(), e, raw)
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
	stopSwapping()
	if escapes.Load() != 0 {
		t.Fatalf("%d reads returned the canary", escapes.Load())
	}
	f.canaryIntact(t)
	t.Logf("%d calls, %d succeeded inside the workspace, %d swaps", calls, ok.Load(), swaps.Load())
}

// TestSwapRaceTargets is the swap race of issue 9 for both backends that
// face sessions, the built-in tools and the npm filesystem server in its
// sandbox: while a goroutine swaps ws/swap between a folder and a link to
// each target, reads and writes aimed through it run through the proxy.
// Nothing may be read or written outside the workspace and nothing may
// land under .parachute/hooks, whichever side of the swap a call meets.
func TestSwapRaceTargets(t *testing.T) {
	type target struct {
		name  string
		decoy func(f fixture) string        // a file in the folder side, so calls there succeed
		link  func(f fixture) string        // what ws/.link points to
		read  func(f fixture, i int) string // path read through swap
		write func(f fixture, i int) string // path written through swap
		check func(t *testing.T, f fixture) // nothing escaped
	}
	noNewFiles := func(dir string, want int) func(t *testing.T, f fixture) {
		return func(t *testing.T, f fixture) {
			entries, err := os.ReadDir(dir)
			must(t, err)
			if len(entries) != want {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("%s holds %v, want %d entries", dir, names, want)
			}
		}
	}
	targets := []target{
		{"link to /", func(f fixture) string { return strings.TrimPrefix(f.canary, "/") }, func(fixture) string { return "/" },
			func(f fixture, _ int) string { return "swap/" + strings.TrimPrefix(f.canary, "/") },
			func(f fixture, i int) string {
				return fmt.Sprintf("swap/%s/new-%d", strings.TrimPrefix(f.outside, "/"), i)
			},
			func(t *testing.T, f fixture) { noNewFiles(f.outside, 1)(t, f) }},
		{"link to a file outside", func(fixture) string { return "" }, func(f fixture) string { return f.canary },
			func(fixture, int) string { return "swap" },
			func(fixture, int) string { return "swap" },
			func(t *testing.T, f fixture) { noNewFiles(f.outside, 1)(t, f) }},
		{"link to ./.parachute/hooks", func(fixture) string { return "pre-session.sh" }, func(fixture) string { return "./.parachute/hooks" },
			func(fixture, int) string { return "swap/pre-session.sh" },
			func(fixture, int) string { return "swap/pre-session.sh" },
			func(t *testing.T, f fixture) { noNewFiles(filepath.Join(f.ws, ".parachute", "hooks"), 0)(t, f) }},
	}
	sessionBackends := []struct {
		backend
		calls int
	}{{backends[0], 5000}, {backends[2], 1500}}
	for _, b := range sessionBackends {
		t.Run(b.name, func(t *testing.T) {
			for _, tg := range targets {
				t.Run(tg.name, func(t *testing.T) {
					f := newFixture(t)
					opts := b.opts(t, f)
					opts.Decider = newFastEngine(t, nil)
					p, err := New(context.Background(), opts)
					must(t, err)
					t.Cleanup(func() { p.Close() })
					s, err := p.NewSession(context.Background(), SessionOptions{
						Facts: func() engine.SessionFacts { return facts(false) }, ClientRoot: "/workspace"})
					must(t, err)
					t.Cleanup(func() { s.Close() })

					real, link, swap := filepath.Join(f.ws, ".real"), filepath.Join(f.ws, ".link"), filepath.Join(f.ws, "swap")
					must(t, os.MkdirAll(real, 0o755))
					if d := tg.decoy(f); d != "" {
						must(t, os.MkdirAll(filepath.Dir(filepath.Join(real, d)), 0o755))
						must(t, os.WriteFile(filepath.Join(real, d), []byte("decoy"), 0o644))
					} else {
						// The folder side is a plain file: a read or write of "swap" then succeeds.
						must(t, os.Remove(real))
						must(t, os.WriteFile(real, []byte("decoy"), 0o644))
					}
					must(t, os.Symlink(tg.link(f), link))
					stopSwapping := swapLoop(real, link, swap, nil)
					const workers = 4
					var escapes, allowed atomic.Int64
					var cwg sync.WaitGroup
					for w := range workers {
						cwg.Add(1)
						go func() {
							defer cwg.Done()
							for i := w; i < b.calls; i += workers {
								name, args := "read_file", map[string]any{"path": tg.read(f, i)}
								if i%2 == 1 {
									name, args = "write_file", map[string]any{"path": tg.write(f, i), "content": "escaped"}
								}
								if b.name != "builtin" && name == "read_file" {
									name = "read_text_file" // the npm server's name for it
								}
								raw, _ := json.Marshal(args)
								res, _ := s.call(context.Background(), p.catalog.byName[name], raw)
								if len(res.Content) > 0 && strings.Contains(res.Content[0].(*mcp.TextContent).Text, canaryText) {
									escapes.Add(1)
								}
								if !res.IsError {
									allowed.Add(1)
								}
							}
						}()
					}
					cwg.Wait()
					stopSwapping()
					if escapes.Load() != 0 {
						t.Fatalf("%d reads returned the canary", escapes.Load())
					}
					f.canaryIntact(t)
					tg.check(t, f)
					if b.name == "builtin" && allowed.Load() == 0 {
						t.Fatal("no call was carried out: the race never met the folder side")
					}
					_ = os.Rename(swap, real) // leave the folder side for the scan below
					must(t, filepath.WalkDir(f.ws, func(p string, d fs.DirEntry, err error) error {
						if err == nil && strings.Contains(d.Name(), ".parachute-") {
							t.Errorf("temporary file left: %s", p)
						}
						return nil
					}))
					t.Logf("%d calls, %d carried out inside the workspace", b.calls, allowed.Load())
				})
			}
		})
	}
}

// swapLoop keeps moving the folder side (real) and the link side (link) in
// and out of swap until the returned stop is called (which waits for it),
// counting rounds in swaps if given.
func swapLoop(real, link, swap string, swaps *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = os.Rename(real, swap)
			_ = os.Rename(swap, real)
			_ = os.Rename(link, swap)
			_ = os.Rename(swap, link)
			if swaps != nil {
				swaps.Add(1)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
