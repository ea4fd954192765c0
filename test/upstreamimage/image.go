// Package upstreamimage builds, for tests, the sandbox image third-party
// MCP upstreams run in: the parachute binary as PID 1 (`sandbox init`),
// node with its ELF dependency closure, and the npm filesystem server
// (test/deps/20-mcp-filesystem.sh) under /opt/npm. Nothing is fetched: the
// inputs are the host's node and the npm tree the deps script installed.
//
// The image tar is written under test/.state/images and imported into the
// containerd a test uses, once per test binary.
package upstreamimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"testing"

	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/test/ctrd"
)

// Ref is the image's name.
const Ref = "parachute.local/upstream-node:test"

// FilesystemServer is the npm filesystem server's entry point in the image.
const FilesystemServer = "/opt/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"

// Command runs the filesystem server over the sandbox's workspace.
var Command = []string{"/usr/bin/node", FilesystemServer, "/workspace"}

var (
	once sync.Once
	tar  string
	err  error
)

// Import builds the image (once per test binary) and imports it into rt.
// A missing node or npm server skips t, or fails it under CI=true.
func Import(t testing.TB, rt *runtime.Containerd) {
	t.Helper()
	root := repoRoot()
	npm := filepath.Join(root, "test", ".state", "npm")
	if _, err := os.Stat(filepath.Join(npm, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js")); err != nil {
		ctrd.Unavailable(t, "the npm filesystem server is not installed (run test/deps/20-mcp-filesystem.sh)")
	}
	if _, err := os.Stat("/usr/bin/node"); err != nil {
		ctrd.Unavailable(t, "/usr/bin/node is not installed (apt-get install nodejs)")
	}
	once.Do(func() { tar, err = build(root, npm) })
	if err != nil {
		t.Fatalf("upstream image: %v", err)
	}
	if err := rt.ImportImage(context.Background(), tar, Ref); err != nil {
		t.Fatalf("upstream image: import: %v", err)
	}
}

func build(root, npm string) (string, error) {
	dir := filepath.Join(root, "test", ".state", "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "parachute-upstream-init")
	cmd := exec.Command(filepath.Join(goruntime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", bin, "./cmd/parachute")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return runtime.BuildImage(context.Background(), runtime.BuildOptions{
		Binary: bin, Ref: Ref, Out: filepath.Join(dir, "upstream-node-mcpproxy.tar"),
		Add: []string{"/usr/bin/node"}, AddDirs: []runtime.DirCopy{{Host: npm, Image: "/opt/npm"}},
	})
}

func repoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}
