package sandboxinit

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/parachute-gateway/parachute/internal/strictjson"
)

// Every request init acts on is read the one way; anything a lenient
// parser would take differently is refused.
func TestParseRequest(t *testing.T) {
	ok := `{"op":"start","turn":1,"args":["/bin/true"],"env":["PATH=/bin"],"dir":"/workspace"}`
	for _, tc := range []struct {
		name string
		raw  string
		nfds int
		want error // nil: accepted
	}{
		{"start", ok, 3, nil},
		{"kill", `{"op":"kill","turn":4}`, 0, nil},
		{"duplicate op", `{"op":"kill","op":"start","turn":1,"args":["/bin/true"],"dir":"/workspace"}`, 3, strictjson.ErrDuplicateKey},
		{"duplicate args", `{"op":"start","turn":1,"args":["/bin/true"],"args":["/bin/sh"],"dir":"/workspace"}`, 3, strictjson.ErrDuplicateKey},
		{"case of a name", `{"Op":"start","turn":1,"args":["/bin/true"],"dir":"/workspace"}`, 3, strictjson.ErrUnknownKey},
		{"unknown member", `{"op":"start","turn":1,"args":["/bin/true"],"dir":"/workspace","uid":0}`, 3, strictjson.ErrUnknownKey},
		{"trailing data", ok + `{"op":"kill","turn":1}`, 3, strictjson.ErrTrailingData},
		{"invalid UTF-8", `{"op":"start","turn":1,"args":["/bin/` + "\xff" + `"],"dir":"/workspace"}`, 3, strictjson.ErrInvalidUTF8},
		{"lone surrogate", `{"op":"start","turn":1,"args":["/bin/\ud800"],"dir":"/workspace"}`, 3, strictjson.ErrSurrogate},
		{"not JSON", `start /bin/true`, 3, strictjson.ErrSyntax},
		{"empty", ``, 0, ErrRequest},
		{"two descriptors", ok, 2, ErrRequest},
		{"four descriptors", ok, 4, ErrRequest},
		{"no command", `{"op":"start","turn":1,"args":[],"dir":"/workspace"}`, 3, ErrRequest},
		{"empty command", `{"op":"start","turn":1,"args":[""],"dir":"/workspace"}`, 3, ErrRequest},
		{"relative dir", `{"op":"start","turn":1,"args":["/bin/true"],"dir":"workspace"}`, 3, ErrRequest},
		{"unclean dir", `{"op":"start","turn":1,"args":["/bin/true"],"dir":"/workspace/../etc"}`, 3, ErrRequest},
		{"NUL in an argument", `{"op":"start","turn":1,"args":["/bin/true","a\u0000b"],"dir":"/workspace"}`, 3, ErrRequest},
		{"env without =", `{"op":"start","turn":1,"args":["/bin/true"],"env":["PATH"],"dir":"/workspace"}`, 3, ErrRequest},
		{"turn 0", `{"op":"start","turn":0,"args":["/bin/true"],"dir":"/workspace"}`, 3, ErrRequest},
		{"kill with descriptors", `{"op":"kill","turn":1}`, 1, ErrRequest},
		{"kill with a command", `{"op":"kill","turn":1,"args":["/bin/sh"]}`, 0, ErrRequest},
		{"unknown op", `{"op":"exec","turn":1}`, 0, ErrRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(tc.raw), tc.nfds)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("err %v, want %v", err, tc.want)
			case tc.want != nil && !errors.Is(err, ErrRequest) && !strings.Contains(err.Error(), "control request"):
				t.Fatalf("err %v does not say it is a bad control request", err)
			}
		})
	}
}

func TestParseReplyStrict(t *testing.T) {
	for _, raw := range []string{
		`{"op":"exit","turn":1,"code":0,"code":1}`,
		`{"op":"exit","turn":1,"Code":1}`,
		`{"op":"exit","turn":1,"signal":9}`,
		`{"op":"spawned","turn":1}`,
	} {
		if _, err := ParseReply([]byte(raw)); err == nil {
			t.Errorf("%s: accepted", raw)
		}
	}
}

// host is the test's end of a control channel served by a real server in
// this process (it forks real children; the reaper runs on SIGCHLD).
type host struct {
	fd    int
	s     *server
	swept chan struct{}
}

func newHost(t *testing.T) *host {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// As connect does in PID 1 (this test binary inherits descriptors
	// from whatever started it).
	if err := closeOnExecAll(); err != nil {
		t.Fatal(err)
	}
	s := newServer(fds[1])
	swept := make(chan struct{}, 8)
	s.sweep = func() { swept <- struct{}{} }
	go s.serve()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD)
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(50 * time.Millisecond) // SIGCHLDs coalesce, as in Run
		defer tick.Stop()
		for {
			select {
			case <-sigs:
			case <-tick.C:
			case <-stop:
				return
			}
			s.reap()
		}
	}()
	t.Cleanup(func() {
		signal.Stop(sigs)
		close(stop)
		// Only the host's end: the server then reads EOF and stops on
		// its own descriptor. Closing that one under its goroutines would
		// let them act on the number once a later test reuses it.
		unix.Close(fds[0])
	})
	return &host{fd: fds[0], s: s, swept: swept}
}

func (h *host) sendRaw(t testing.TB, raw string, files ...*os.File) {
	t.Helper()
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(h.fd, []byte(raw), oob, nil, 0); err != nil {
		t.Fatal(err)
	}
}

func (h *host) recv(t testing.TB) Reply {
	t.Helper()
	buf := make([]byte, MaxMessage)
	tv := unix.NsecToTimeval(int64(30 * time.Second))
	unix.SetsockoptTimeval(h.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	n, _, _, _, err := unix.Recvmsg(h.fd, buf, nil, 0)
	for errors.Is(err, unix.EINTR) { // SIGCHLD; a receive timeout makes it not restart
		n, _, _, _, err = unix.Recvmsg(h.fd, buf, nil, 0)
	}
	if err != nil {
		t.Fatalf("no reply from init: %v", err)
	}
	r, err := ParseReply(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pipes returns the turn's three pipes: the ends to send and the host's.
type pipes struct{ inR, inW, outR, outW, errR, errW *os.File }

func newPipes(t *testing.T) *pipes {
	t.Helper()
	var p pipes
	var err error
	if p.inR, p.inW, err = os.Pipe(); err == nil {
		if p.outR, p.outW, err = os.Pipe(); err == nil {
			p.errR, p.errW, err = os.Pipe()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, f := range []*os.File{p.inR, p.inW, p.outR, p.outW, p.errR, p.errW} {
			f.Close()
		}
	})
	return &p
}

// sent closes the host's copies of what went to init.
func (p *pipes) sent() { p.inR.Close(); p.outW.Close(); p.errW.Close() }

func startReq(turn uint64, args ...string) string {
	b, _ := MarshalRequest(Request{Op: OpStart, Turn: turn, Args: args, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/"})
	return string(b)
}

// readAll reads r to EOF, failing if that takes more than 10 s (a
// descriptor init kept open would hold it forever).
func readAll(t *testing.T, r *os.File) string {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v (is a copy of the write end still open?)", err)
	}
	return string(b)
}

func TestServerRunsTurns(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	h := newHost(t)
	turn := uint64(0)
	run := func(t *testing.T, stdin string, args ...string) (Reply, string, string) {
		t.Helper()
		turn++
		p := newPipes(t)
		h.sendRaw(t, startReq(turn, args...), p.inR, p.outW, p.errW)
		p.sent()
		r := h.recv(t)
		if r.Op != OpStarted || r.Turn != turn || r.Pid <= 0 {
			t.Fatalf("start: %+v", r)
		}
		go func() { io.WriteString(p.inW, stdin); p.inW.Close() }()
		out, errOut := readAll(t, p.outR), readAll(t, p.errR)
		return h.recv(t), out, errOut
	}
	t.Run("exit code and streams", func(t *testing.T) {
		r, out, errOut := run(t, "", "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
		if r.Op != OpExit || r.Code != 3 || out != "out\n" || errOut != "err\n" {
			t.Fatalf("reply %+v, stdout %q, stderr %q", r, out, errOut)
		}
	})
	t.Run("stdin to EOF", func(t *testing.T) {
		r, out, _ := run(t, "hello init", "cat") // found in the turn's PATH
		if r.Code != 0 || out != "hello init" {
			t.Fatalf("reply %+v, stdout %q", r, out)
		}
	})
	t.Run("death by signal is 128+N", func(t *testing.T) {
		r, _, _ := run(t, "", "/bin/sh", "-c", "kill -TERM $$")
		if r.Code != 128+int(syscall.SIGTERM) {
			t.Fatalf("reply %+v, want code %d", r, 128+int(syscall.SIGTERM))
		}
	})
	t.Run("only 0, 1 and 2 are open in the turn", func(t *testing.T) {
		// ls's own listing descriptor is 3.
		_, out, _ := run(t, "", "/bin/ls", "/proc/self/fd")
		fds := strings.Fields(out)
		sort.Strings(fds)
		if strings.Join(fds, " ") != "0 1 2 3" {
			t.Fatalf("descriptors open in the turn: %v, want 0 1 2 (and ls's 3)", fds)
		}
	})
	t.Run("own process group", func(t *testing.T) {
		_, out, _ := run(t, "", "/bin/sh", "-c", `echo $$; cut -d' ' -f5 /proc/$$/stat`)
		if f := strings.Fields(out); len(f) != 2 || f[0] != f[1] {
			t.Fatalf("pid and process group: %q, want equal", out)
		}
	})
	t.Run("not found", func(t *testing.T) {
		turn++
		p := newPipes(t)
		h.sendRaw(t, startReq(turn, "no-such-command"), p.inR, p.outW, p.errW)
		p.sent()
		if r := h.recv(t); r.Op != OpError || !strings.Contains(r.Error, "not found") {
			t.Fatalf("reply %+v, want not found", r)
		}
	})
}

// A malformed request starts nothing, is answered with an error, and the
// descriptors that came with it are closed in init (the host's read end
// then sees EOF at once).
func TestServerRefusesMalformedRequests(t *testing.T) {
	h := newHost(t)
	for _, tc := range []struct {
		name  string
		raw   string
		extra bool // send a fourth descriptor
	}{
		{"duplicate op", `{"op":"kill","op":"start","turn":1,"args":["/bin/sh","-c","echo ran"],"env":[],"dir":"/"}`, false},
		{"case-folded name", `{"op":"start","turn":2,"Args":["/bin/sh","-c","echo ran"],"env":[],"dir":"/"}`, false},
		{"unknown member", `{"op":"start","turn":3,"args":["/bin/sh","-c","echo ran"],"env":[],"dir":"/","setuid":0}`, false},
		{"four descriptors", startReq(4, "/bin/sh", "-c", "echo ran"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPipes(t)
			files := []*os.File{p.inR, p.outW, p.errW}
			if tc.extra {
				files = append(files, p.inW)
			}
			h.sendRaw(t, tc.raw, files...)
			p.sent()
			if r := h.recv(t); r.Op != OpError || r.Error == "" {
				t.Fatalf("reply %+v, want an error", r)
			}
			if out := readAll(t, p.outR); out != "" {
				t.Fatalf("a refused request ran: %q", out)
			}
		})
	}
}

// One turn at a time; kill ends the turn's whole process group (and
// sweeps) and its exit is reported as 128+9.
func TestServerKill(t *testing.T) {
	h := newHost(t)
	p := newPipes(t)
	h.sendRaw(t, startReq(1, "/bin/sh", "-c", "sleep 300 & sleep 301"), p.inR, p.outW, p.errW)
	p.sent()
	if r := h.recv(t); r.Op != OpStarted {
		t.Fatalf("start: %+v", r)
	}
	q := newPipes(t)
	h.sendRaw(t, startReq(2, "/bin/true"), q.inR, q.outW, q.errW)
	q.sent()
	if r := h.recv(t); r.Op != OpError || r.Turn != 2 {
		t.Fatalf("a second turn while one runs: %+v, want refused", r)
	}
	h.sendRaw(t, `{"op":"kill","turn":1}`)
	select {
	case <-h.swept:
	case <-time.After(10 * time.Second):
		t.Fatal("kill did not sweep")
	}
	if r := h.recv(t); r.Op != OpExit || r.Turn != 1 || r.Code != 128+9 {
		t.Fatalf("exit %+v, want 137", r)
	}
	// The background sleep was in the group: the pipe's last writer is gone.
	if out := readAll(t, p.outR); out != "" {
		t.Fatalf("stdout %q", out)
	}
}

// After a kill, the turn's exit is reported only once every process left
// has died and been reaped. Here the straggler is in another session, so
// the group kill misses it (in a sandbox the sweep would not) and it ends
// on its own a second later; this test process stands in for PID 1 as a
// child subreaper, so the orphan comes to it.
func TestServerKillWaitsForStragglers(t *testing.T) {
	if _, err := os.Stat("/usr/bin/setsid"); err != nil {
		t.Skip("no setsid")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	h := newHost(t)
	p := newPipes(t)
	h.sendRaw(t, startReq(1, "/bin/sh", "-c", "/usr/bin/setsid /bin/sh -c 'echo forked; exec sleep 1' </dev/null 2>/dev/null & exec sleep 300"), p.inR, p.outW, p.errW)
	p.sent()
	if r := h.recv(t); r.Op != OpStarted {
		t.Fatalf("start: %+v", r)
	}
	// Kill only once the straggler is in its own session (it says so).
	p.outR.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(p.outR).ReadString('\n'); line != "forked\n" {
		t.Fatalf("turn said %q, %v", line, err)
	}
	killed := time.Now()
	h.sendRaw(t, `{"op":"kill","turn":1}`)
	r := h.recv(t)
	if r.Op != OpExit || r.Code != 128+9 {
		t.Fatalf("exit %+v, want 137", r)
	}
	if d := time.Since(killed); d < 500*time.Millisecond {
		t.Fatalf("exit reported %v after the kill, while the straggler (1 s) still lived", d)
	}
}
