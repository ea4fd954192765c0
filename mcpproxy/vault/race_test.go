package vault

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sys/unix"
)

// TestSwapRace: while a goroutine keeps swapping ws/a between a real
// folder and symlinks to "/", to a file outside the workspace, to a folder
// outside holding a canary pre-session.sh, and to ./.parachute/hooks, 5,000
// reads and writes of a/pre-session.sh (and reads of a) run against both
// resolvers. No file may appear in the hooks, nothing outside may be read
// or written, and no temporary file may be left anywhere.
func TestSwapRace(t *testing.T) {
	base := t.TempDir()
	ws, out := filepath.Join(base, "ws"), filepath.Join(base, "out")
	hooks := filepath.Join(ws, ".parachute", "hooks")
	for _, d := range []string{ws + "/.real", hooks, out + "/dir"} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(ws+"/.real/pre-session.sh", []byte("decoy"), 0o644))
	must(t, os.WriteFile(out+"/secret", []byte(canary), 0o644))
	must(t, os.WriteFile(out+"/dir/pre-session.sh", []byte(canary), 0o644))
	const hostFile = "/pre-session.sh"
	if _, err := os.Lstat(hostFile); err == nil {
		t.Fatalf("%s exists before the test; cannot tell an escape from it", hostFile)
	}
	// ws/a starts as the real folder; the links are exchanged with it in
	// turn (RENAME_EXCHANGE), so a always exists and is the real folder
	// half of the time.
	a := ws + "/a"
	must(t, os.Rename(ws+"/.real", a))
	var parked []string
	for i, target := range []string{"/", out + "/secret", out + "/dir", "./.parachute/hooks"} {
		l := fmt.Sprintf("%s/.link%d", ws, i)
		must(t, os.Symlink(target, l))
		parked = append(parked, l)
	}
	servers := make([]*Server, len(modes))
	for i, m := range modes {
		servers[i] = newServer(t, ws, m.walk, Options{})
	}

	stop := make(chan struct{})
	var swaps atomic.Int64
	var swg sync.WaitGroup
	swg.Add(1)
	go func() {
		defer swg.Done()
		for {
			for _, p := range parked {
				select {
				case <-stop:
					return
				default:
				}
				for range 2 { // the link in, the folder back
					if err := unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, a, unix.RENAME_EXCHANGE); err != nil {
						t.Errorf("exchange %s with a: %v", p, err)
						return
					}
				}
			}
			swaps.Add(1)
		}
	}()

	const calls, workers = 5000, 8
	var escapes, reads, writes atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < calls; i += workers {
				s := servers[i%len(servers)]
				tool, raw := "read_file", pathArg("a/pre-session.sh")
				switch i % 4 {
				case 1, 3:
					tool, raw = "write_file", js(map[string]any{"path": "a/pre-session.sh", "content": "written"})
				case 2:
					if i%8 == 2 {
						raw = pathArg("a")
					}
				}
				res, err := s.Call(t.Context(), tool, []byte(raw))
				if err != nil {
					t.Error(err)
					return
				}
				text := res.Content[0].(*mcp.TextContent).Text
				if strings.Contains(text, canary) || strings.Contains(text, "root:") {
					escapes.Add(1)
				}
				if !res.IsError {
					if tool == "read_file" {
						reads.Add(1)
					} else {
						writes.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	swg.Wait()

	if n := escapes.Load(); n != 0 {
		t.Errorf("%d reads returned a file outside the workspace", n)
	}
	if names := tree(t, hooks); len(names) != 0 {
		t.Errorf("files in .parachute/hooks: %v", names)
	}
	for f, want := range map[string]string{out + "/secret": canary, out + "/dir/pre-session.sh": canary} {
		if b, err := os.ReadFile(f); err != nil || string(b) != want {
			t.Errorf("%s changed: %q %v", f, b, err)
		}
	}
	if names := tree(t, out); strings.Join(names, " ") != "dir dir/pre-session.sh secret" {
		t.Errorf("outside folder changed: %v", names)
	}
	if _, err := os.Lstat(hostFile); err == nil {
		t.Errorf("%s was written", hostFile)
	}
	if left, _ := filepath.Glob("/." + filepath.Base(hostFile) + tempPrefix + "*"); len(left) > 0 {
		t.Errorf("temporary files left in /: %v", left)
	}
	if left := temps(t, ws); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if left := temps(t, out); len(left) > 0 {
		t.Errorf("temporary files left outside: %v", left)
	}
	if reads.Load() == 0 || writes.Load() == 0 {
		t.Errorf("no call succeeded (%d reads, %d writes): the race never had a real folder to hit", reads.Load(), writes.Load())
	}
	t.Logf("%d calls: %d reads and %d writes succeeded inside the workspace; %d swap rounds", calls, reads.Load(), writes.Load(), swaps.Load())
}
