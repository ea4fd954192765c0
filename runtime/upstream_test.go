package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/test/ctrd"
)

// upstreamRef is the test image for upstreams: the probe as /parachute
// (PID 1), node with its libraries, and test/.state/npm at /opt/npm. No
// busybox: nothing else is in it.
const upstreamRef = "parachute.local/upstream-node:test"

const fsServer = "/opt/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"

// imagePasswd is the image's whole /etc/passwd (see composeLayer).
const imagePasswd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/false\n"

// importUpstream builds the upstream image into test/.state/images and
// imports it, unless the daemon has it. The npm filesystem server comes
// from test/deps/20-mcp-filesystem.sh.
func importUpstream(t testing.TB, rt *Containerd) {
	t.Helper()
	ctx := context.Background()
	if _, err := rt.Client().GetImage(rt.ns(ctx), upstreamRef); err == nil {
		return
	}
	npm, err := filepath.Abs("../test/.state/npm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(npm, strings.TrimPrefix(fsServer, "/opt/npm/"))); err != nil {
		ctrd.Unavailable(t, "the npm filesystem server is not installed (run test/deps/20-mcp-filesystem.sh)")
	}
	if _, err := os.Stat("/usr/bin/node"); err != nil {
		ctrd.Unavailable(t, "/usr/bin/node is not installed (apt-get install nodejs)")
	}
	dir := filepath.Join(filepath.Dir(npm), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tar, err := BuildImage(ctx, BuildOptions{
		Binary: buildProbe(t), Ref: upstreamRef, Out: filepath.Join(dir, "upstream-node.tar"),
		Add: []string{"/usr/bin/node"}, AddDirs: []DirCopy{{Host: npm, Image: "/opt/npm"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	built := time.Now()
	if err := rt.ImportImage(ctx, tar, ""); err != nil {
		t.Fatal(err)
	}
	t.Logf("upstream image: built in %v, imported in %v", built.Sub(start).Round(time.Millisecond), time.Since(built).Round(time.Millisecond))
}

// upstreamWorkspace is a vault as an attacker would leave it: a file to
// read, the hooks folder, and a link to the root.
func upstreamWorkspace(t testing.TB) string {
	t.Helper()
	ws := t.TempDir()
	for p, body := range map[string]string{"hello.txt": "hello from the workspace\n", ".parachute/hooks/.keep": ""} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ws, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ws, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/", filepath.Join(ws, "root")); err != nil {
		t.Fatal(err)
	}
	return ws
}

func upstreamSpec(t testing.TB, ws string) Spec {
	sessionN++
	p := limitsProfile("strict", false)
	p.MemoryMB = 512
	return Spec{SessionID: fmt.Sprintf("up-%d-%d", os.Getpid(), sessionN), Owner: "local:tester", Image: upstreamRef, Workspace: ws, Profile: p}
}

// signalWriter collects stderr and closes a channel when want appears.
type signalWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
	once sync.Once
}

func newSignalWriter(want string) *signalWriter {
	return &signalWriter{want: want, seen: make(chan struct{})}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.want != "" && strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// connect speaks MCP to the process over its stdio.
func connect(t testing.TB, p *Process, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "parachute-test", Version: "1"}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: p.Stdout(), Writer: p.Stdin()}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// call calls a tool and returns its text and whether it was an error.
func call(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s %v: %v", tool, args, err)
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	t.Logf("%s %v: error=%v %q", tool, args["path"], res.IsError, text.String())
	return text.String(), res.IsError
}

// hostOnlyLines are lines of the host's /etc/passwd the image does not
// have: seeing one means the host's file was read.
func hostOnlyLines(t *testing.T) []string {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.Contains(imagePasswd, l) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		t.Fatal("the host's /etc/passwd has no line the image lacks; the test could not tell them apart")
	}
	return out
}

// TestUpstreamFilesystemServer runs the npm MCP filesystem server in a
// sandbox, drives it with the go-sdk client over the container's stdio and
// shows the walls hold even for a server that is told to serve "/".
func TestUpstreamFilesystemServer(t *testing.T) {
	rt := testRuntime(t)
	importUpstream(t, rt)
	ws := upstreamWorkspace(t)
	hostSecret := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(hostSecret, []byte("host secret\n"), 0o644)
	hostLines := hostOnlyLines(t)
	assertNotHost := func(t *testing.T, what, text string) {
		t.Helper()
		for _, l := range hostLines {
			if strings.Contains(text, l) {
				t.Errorf("%s returned the host's /etc/passwd (%q)", what, l)
			}
		}
	}
	assertUntouched := func(t *testing.T) {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(ws, ".parachute", "hooks", "x")); err == nil {
			t.Error(".parachute/hooks/x was written on the host")
		}
		if _, err := os.Lstat("/pwned"); err == nil {
			t.Error("/pwned was written on the host")
		}
	}

	stderr := newSignalWriter("Updated allowed directories from MCP roots")
	p, err := rt.StartProcess(context.Background(), upstreamSpec(t, ws),
		ProcessSpec{Upstream: "filesystem", Args: []string{"/usr/bin/node", fsServer, WorkspaceDir}, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	// No roots capability: the server keeps /workspace.
	cs := connect(t, p, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v (stderr %s)", err, stderr)
	}
	names := map[string]bool{}
	for _, tool := range tools.Tools {
		names[tool.Name] = true
	}
	for _, want := range []string{"read_text_file", "write_file", "list_directory"} {
		if !names[want] {
			t.Errorf("tools/list lacks %s: %v", want, names)
		}
	}

	t.Run("reads the workspace", func(t *testing.T) {
		if text, isErr := call(t, cs, "read_text_file", map[string]any{"path": "/workspace/hello.txt"}); isErr || text != "hello from the workspace\n" {
			t.Errorf("read: %q (error %v)", text, isErr)
		}
		if text, isErr := call(t, cs, "write_file", map[string]any{"path": "/workspace/new.txt", "content": "written"}); isErr {
			t.Errorf("write in the workspace: %s", text)
		}
		if b, err := os.ReadFile(filepath.Join(ws, "new.txt")); err != nil || string(b) != "written" {
			t.Errorf("the workspace write did not reach the host: %q %v", b, err)
		}
	})
	t.Run("hooks read-only", func(t *testing.T) {
		text, isErr := call(t, cs, "write_file", map[string]any{"path": "/workspace/.parachute/hooks/x", "content": "echo pwned"})
		if !isErr || !strings.Contains(text, "read-only file system") {
			t.Errorf("write into .parachute/hooks: %q (error %v), want EROFS", text, isErr)
		}
		assertUntouched(t)
	})
	t.Run("link to / stays in the sandbox", func(t *testing.T) {
		text, _ := call(t, cs, "read_text_file", map[string]any{"path": "/workspace/root/etc/passwd"})
		assertNotHost(t, "read through the workspace link", text)
	})

	// The same server with its allowed folder widened to "/" by the
	// client (MCP roots): a server that checks nothing. What it reaches is
	// the sandbox, not the host.
	t.Run("a server serving / sees the sandbox's root", func(t *testing.T) {
		p2, err := rt.StartProcess(context.Background(), upstreamSpec(t, ws),
			ProcessSpec{Upstream: "filesystem-wide", Args: []string{"/usr/bin/node", fsServer, WorkspaceDir}, Stderr: stderr})
		if err != nil {
			t.Fatal(err)
		}
		defer p2.Close()
		c := mcp.NewClient(&mcp.Implementation{Name: "parachute-test", Version: "1"}, nil)
		c.AddRoots(&mcp.Root{URI: "file:///", Name: "everything"})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cs2, err := c.Connect(ctx, &mcp.IOTransport{Reader: p2.Stdout(), Writer: p2.Stdin()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs2.Close()
		select {
		case <-stderr.seen:
		case <-ctx.Done():
			t.Fatalf("the server never took the roots: %s", stderr)
		}
		for _, path := range []string{"/etc/passwd", "/workspace/root/etc/passwd"} {
			text, isErr := call(t, cs2, "read_text_file", map[string]any{"path": path})
			if isErr || text != imagePasswd {
				t.Errorf("read %s: %q (error %v), want the image's passwd", path, text, isErr)
			}
			assertNotHost(t, "read "+path, text)
		}
		if text, isErr := call(t, cs2, "read_text_file", map[string]any{"path": hostSecret}); !isErr || strings.Contains(text, "host secret") {
			t.Errorf("read a host file outside the workspace: %q (error %v)", text, isErr)
		}
		for _, path := range []string{"/workspace/.parachute/hooks/x", "/workspace/root/workspace/.parachute/hooks/x", "/pwned", "/etc/x"} {
			if text, isErr := call(t, cs2, "write_file", map[string]any{"path": path, "content": "pwned"}); !isErr || !strings.Contains(text, "read-only file system") {
				t.Errorf("write %s: %q (error %v), want EROFS", path, text, isErr)
			}
		}
		assertUntouched(t)
	})

	// The upstream exiting tears the sandbox down.
	cs.Close()
	p.Stdin().Close()
	select {
	case <-p.Done():
	case <-time.After(time.Minute):
		t.Fatal("the server did not exit on stdin EOF")
	}
	assertGone(t, rt, p.ID())
}

// BenchmarkUpstreamColdStart: StartProcess of the npm filesystem server
// until tools/list is answered (p50/p99 ms); Close is not counted.
func BenchmarkUpstreamColdStart(b *testing.B) {
	rt := testRuntime(b)
	importUpstream(b, rt)
	ws := upstreamWorkspace(b)
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		p, err := rt.StartProcess(context.Background(), upstreamSpec(b, ws),
			ProcessSpec{Upstream: "filesystem", Args: []string{"/usr/bin/node", fsServer, WorkspaceDir}})
		if err != nil {
			b.Fatal(err)
		}
		c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
		cs, err := c.Connect(context.Background(), &mcp.IOTransport{Reader: p.Stdout(), Writer: p.Stdin()}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cs.ListTools(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
		b.StopTimer()
		cs.Close()
		p.Close()
		b.StartTimer()
	}
	reportPercentiles(b, samples)
}
