package load

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/gateway"
	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/test/ctrd"
)

var (
	ladderFlag = flag.String("ladder", os.Getenv("LADDER"),
		"comma-separated numbers of concurrent users, one rung each, e.g. 50,100,200 (env LADDER); unset, the ladder is skipped")
	warmPoolFlag = flag.Int("warm-pool", envInt("WARM_POOL", 1),
		"runtime.warm_pool of the gateway under load (env WARM_POOL)")
	warmPoolMaxFlag = flag.Int("warm-pool-max", envInt("WARM_POOL_MAX", 0),
		"runtime.warm_pool_max, 0 to leave it unset (env WARM_POOL_MAX)")
	rampFlag = flag.Duration("ramp", envDuration("RAMP", 0),
		"spread the users' arrivals evenly over this long instead of all at once (env RAMP)")
)

// results collects the rungs run, printed as one table at the end.
var (
	resultsMu sync.Mutex
	results   []Result
)

func TestMain(m *testing.M) {
	ctrd.Main(m, func() {
		resultsMu.Lock()
		defer resultsMu.Unlock()
		if len(results) > 0 {
			fmt.Println()
			WriteTable(os.Stdout, results)
		}
	})
}

// loadToken is the local connector's bearer token (the connector has an
// owner, so it must have one).
const loadToken = "load-ladder-token-0123456789abcdef"

// laterTurns is how many /cat follow each user's /write.
const laterTurns = 5

// BenchmarkLoadLadder runs, for each N of -ladder, N users at once
// against a fresh gateway: each sends one /write and five /cat, each
// turn's answer checked. Run it with -benchtime 1x (make bench-load).
func BenchmarkLoadLadder(b *testing.B) {
	if *ladderFlag == "" {
		b.Skip("the load ladder takes minutes: opt in with -ladder 50,100,200 (or make bench-load)")
	}
	addr := ctrd.Start(b)
	ref := sandboxImage(b, addr)
	rungs, err := parseLadder(*ladderFlag)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range rungs {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			for range b.N {
				r := runRung(b, addr, ref, n)
				report(b, r)
			}
		})
	}
}

func parseLadder(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("-ladder %q: each rung is a number of users between 1 and 1000", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func report(b *testing.B, r Result) {
	failed, by := r.Failed()
	b.ReportMetric(r.TurnsPerSecond(), "turns/s")
	b.ReportMetric(msf(r.Percentile(true, 50)), "first-p50-ms")
	b.ReportMetric(msf(r.Percentile(true, 95)), "first-p95-ms")
	b.ReportMetric(msf(r.Percentile(false, 50)), "later-p50-ms")
	b.ReportMetric(msf(r.Percentile(false, 95)), "later-p95-ms")
	b.ReportMetric(float64(failed), "failed-turns")
	b.ReportMetric(r.IdleMemMB, "idle-cgroup-MB")
	b.ReportMetric(r.IdlePssMB, "idle-pss-MB")
	b.ReportMetric(0, "ns/op") // the wall time of a rung says nothing per op
	var buf bytes.Buffer
	WriteTable(&buf, []Result{r})
	b.Logf("\n%s", buf.String())
	if failed > 0 {
		b.Logf("failed turns by cause: %v", by)
	}
	if r.MemoryNote != "" {
		b.Logf("memory: %s", r.MemoryNote)
	}
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// runRung starts a gateway, runs n users at once and stops it.
func runRung(b *testing.B, addr, ref string, n int) Result {
	b.Helper()
	dir, err := os.MkdirTemp("", "load")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("u%04d", i)
	}
	pool := strconv.Itoa(*warmPoolFlag)
	extra := ""
	if *warmPoolMaxFlag > 0 {
		extra = fmt.Sprintf("\n  warm_pool_max: %d", *warmPoolMaxFlag)
		pool += ".." + strconv.Itoa(*warmPoolMaxFlag)
	}
	// Members' message rate is raised so the ladder measures the gateway,
	// not the rate limiter (six messages in a few seconds exceed the
	// default burst of 5), and their disk quota is off (N loop-mounted
	// 1 GiB images would measure mkfs and take N GiB of disk).
	yaml := fmt.Sprintf(`
vault: %[1]s/vault
state_dir: %[1]s/state
policies: %[2]s/policies
admin: {listen: "127.0.0.1:0"}
connectors:
  load:
    type: local
    listen: 127.0.0.1:0
    token_env: LOAD_TOKEN
    owners: [owner]
    allowed_users: [%[3]s]
    default_trust_level: sandboxed
    network_enabled: false
roles:
  member: {messages_per_minute: 600, message_burst: 20, disk_mb: 0}
runtime:
  containerd_socket: %[4]s
  image: %[5]s
  warm_pool: %[6]d%[7]s
model:
  provider: none
`, dir, repoRoot(), strings.Join(append([]string{"warmup"}, users...), ", "), addr, ref, *warmPoolFlag, extra)
	if err := os.MkdirAll(filepath.Join(dir, "vault"), 0o755); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		b.Fatalf("config: %v\n%s", err, yaml)
	}
	logPath := filepath.Join(repoRoot(), "test", ".state", "load", fmt.Sprintf("gateway-users=%d.log", n))
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	g, err := gateway.New(context.Background(), cfg, gateway.Options{
		Logger: zerolog.New(logf).With().Timestamp().Logger().Level(zerolog.InfoLevel),
		Getenv: func(k string) string { return map[string]string{"LOAD_TOKEN": loadToken}[k] },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		t0 := time.Now()
		if err := <-done; err != nil {
			b.Errorf("gateway Run: %v", err)
		}
		b.Logf("gateway stopped in %s (log: %s)", time.Since(t0).Round(time.Millisecond), logPath)
	}
	defer stop()
	<-g.Ready()
	var conn *local.Connector
	for _, c := range g.Connectors() {
		if lc, ok := c.(*local.Connector); ok {
			conn = lc
		}
	}
	select {
	case <-conn.Listening():
	case err := <-done:
		b.Fatalf("gateway stopped before its connector listened: %v", err)
	}
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConns: n + 10, MaxIdleConnsPerHost: n + 10},
		Timeout:   10 * time.Minute,
	}
	url := "http://" + conn.Addr().String() + "/v1/messages"

	// One session first, so the pool learns the profile, then wait until
	// warm_pool sandboxes are ready: the burst starts against a warm pool.
	if r := send(client, url, "warmup", "/write w.txt warm", ""); r.Cause != "" {
		b.Fatalf("warm-up turn failed: %s %s", r.Cause, r.Detail)
	}
	if *warmPoolFlag > 0 {
		waitPoolReady(b, g, *warmPoolFlag, 2*time.Minute)
	}

	if *rampFlag > 0 {
		pool += " ramp " + rampFlag.String()
	}
	res := Result{Users: n, WarmPool: pool, Turns: make([]Turn, 0, n*(1+laterTurns))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if *rampFlag > 0 {
				time.Sleep(*rampFlag * time.Duration(i) / time.Duration(n)) // the arrival schedule, not a wait for an event
			}
			word := "load-" + u + "-" + randomHex()
			turns := []Turn{send(client, url, u, "/write notes.txt "+word, "")}
			turns[0].First = true
			for range laterTurns {
				t := send(client, url, u, "/cat notes.txt", word)
				if turns[0].Cause != "" && t.Cause == FailErrorText && strings.Contains(t.Detail, "no such file") {
					t.Cause = FailAfterWrite
				}
				turns = append(turns, t)
			}
			mu.Lock()
			res.Turns = append(res.Turns, turns...)
			mu.Unlock()
		}()
	}
	self0, host0, procs0 := selfCPU(), hostCPU(), procCPU()
	t0 := time.Now()
	close(start)
	wg.Wait()
	res.Wall = time.Since(t0)
	self, host := selfCPU()-self0, hostCPU()-host0
	b.Logf("CPU during the burst: this process (gateway and load generator) %.1f s, the whole host %.1f s, over %.1f s wall on %d cores",
		self.Seconds(), host.Seconds(), res.Wall.Seconds(), goruntime.NumCPU())
	b.Logf("CPU during the burst by program (with reaped children): %s", topCPU(procs0, procCPU(), 10))

	logFailures(b, res)
	logMetrics(b, g)
	b.Logf("host load average at the end of the burst: %s (2 cores, shared)", loadAvg())
	var pooled int
	res.IdleMemMB, res.IdlePssMB, res.Sandboxes, pooled, res.MemoryNote = idleMemory(addr, cfg.Runtime.Namespace)
	b.Logf("session sandboxes: %d, of which %d came from the warm pool", res.Sandboxes, pooled)
	stop()
	return res
}

// send posts one message and classifies the answer.
func send(client *http.Client, url, user, text, want string) Turn {
	body, _ := json.Marshal(local.Request{User: user, Text: text})
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+loadToken)
	t0 := time.Now()
	resp, err := client.Do(req)
	var status int
	var reply string
	if err == nil {
		status = resp.StatusCode
		var out struct {
			Reply string `json:"reply"`
			Error string `json:"error"`
		}
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		err = rerr
		if jerr := json.Unmarshal(b, &out); err == nil && jerr != nil {
			err = fmt.Errorf("answer is not JSON: %w: %q", jerr, b)
		}
		reply = out.Reply
		if reply == "" {
			reply = out.Error
		}
	}
	t := Turn{Latency: time.Since(t0)}
	t.Cause, t.Detail = Classify(err, status, reply, want)
	return t
}

// logFailures prints the first failure of each cause with what was seen.
func logFailures(b *testing.B, r Result) {
	seen := map[string]int{}
	for _, t := range r.Turns {
		if t.Cause == "" {
			continue
		}
		seen[t.Cause]++
		if seen[t.Cause] <= 3 {
			d := t.Detail
			if len(d) > 300 {
				d = d[:300] + "…"
			}
			b.Logf("failed turn (%s, first=%v, %s): %q", t.Cause, t.First, t.Latency.Round(time.Millisecond), d)
		}
	}
}

// logMetrics prints, from the gateway's own metrics, how long decisions
// and durable audit appends took during the rung, and how many sandbox
// starts there were: where a slow turn's time went.
func logMetrics(b *testing.B, g *gateway.Gateway) {
	resp, err := http.Get("http://" + g.AdminAddr().String() + "/metrics")
	if err != nil {
		b.Logf("metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Logf("metrics: %v", err)
		return
	}
	hist := func(name string, over ...float64) {
		f := fams[name]
		if f == nil {
			return
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			n := h.GetSampleCount()
			if n == 0 {
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			line := fmt.Sprintf("%s{%s}: %d, mean %.1fms", name, strings.Join(labels, ","), n, h.GetSampleSum()/float64(n)*1000)
			for _, o := range over {
				var le uint64
				for _, bk := range h.GetBucket() {
					if bk.GetUpperBound() <= o {
						le = bk.GetCumulativeCount()
					}
				}
				line += fmt.Sprintf(", over %gms %.1f%%", o*1000, float64(n-le)/float64(n)*100)
			}
			b.Log(line)
		}
	}
	hist("parachute_decision_seconds", 0.025, 0.25)
	hist("parachute_audit_append_seconds", 0.025, 0.1)
	if f := fams["parachute_sandbox_starts_total"]; f != nil {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			b.Logf("parachute_sandbox_starts_total{%s}: %.0f", strings.Join(labels, ","), m.GetCounter().GetValue())
		}
	}
}

// selfCPU is the user and system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// hostCPU is the busy CPU time of the whole host (every core, every
// process: other users of the machine included), from /proc/stat.
func hostCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i > 7 {
			break
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return time.Duration(busy / 100 * float64(time.Second)) // USER_HZ is 100 on Linux
}

// procCPU is, for every process now, its name and the CPU time it and
// its reaped children used (utime+stime+cutime+cstime), by PID.
type procTime struct {
	comm  string
	start string  // start time: a reused PID is another process
	cpu   float64 // clock ticks
}

func procCPU() map[int]procTime {
	out := map[int]procTime{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(string(b[close+1:])) // from state: utime is f[11]
		if len(f) < 20 {
			continue
		}
		var t float64
		for _, v := range f[11:15] {
			n, _ := strconv.ParseFloat(v, 64)
			t += n
		}
		comm := string(b[open+1 : close])
		if i := strings.IndexAny(comm, "/-"); i > 0 && strings.HasPrefix(comm, "kworker") {
			comm = "kworker"
		}
		out[pid] = procTime{comm: comm, start: f[19], cpu: t}
	}
	return out
}

// topCPU sums, by program name, the CPU used between two procCPU
// snapshots: the growth of processes alive at both, all of new ones.
// A process that started and ended in between counts in its parent's
// reaped-children time, if the parent is still there.
func topCPU(before, after map[int]procTime, n int) string {
	by := map[string]float64{}
	for pid, a := range after {
		d := a.cpu
		if b, ok := before[pid]; ok && b.start == a.start {
			d -= b.cpu
		}
		if d > 0 {
			by[a.comm] += d
		}
	}
	names := make([]string, 0, len(by))
	for c := range by {
		names = append(names, c)
	}
	sort.Slice(names, func(i, j int) bool { return by[names[i]] > by[names[j]] })
	var parts []string
	for _, c := range names[:min(n, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.1fs", c, by[c]/100))
	}
	return strings.Join(parts, ", ")
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))], " ")
}

// waitPoolReady waits until the gateway's parachute_pool_ready metric is
// at least want, failing the benchmark if it is not within d.
func waitPoolReady(b *testing.B, g *gateway.Gateway, want int, d time.Duration) {
	b.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://" + g.AdminAddr().String() + "/metrics")
		if err == nil {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "parachute_pool_ready "); ok {
					if f, err := strconv.ParseFloat(v, 64); err == nil && f >= float64(want) {
						resp.Body.Close()
						return
					}
				}
			}
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			b.Fatalf("the warm pool did not hold %d ready sandboxes within %s", want, d)
		}
		<-tick.C
	}
}

// idleMemory measures the sessions' sandboxes (not those waiting in the
// pool) once every turn has ended: the mean of their cgroup's memory
// (memory.current on cgroup v2, memory.usage_in_bytes on v1) and of the
// proportional set size of their PID 1 and its shim.
func idleMemory(addr, ns string) (cgMB, pssMB float64, count, pooled int, note string) {
	ctx := namespaces.WithNamespace(context.Background(), ns)
	c, err := containerd.New(addr)
	if err != nil {
		return 0, 0, 0, 0, err.Error()
	}
	defer c.Close()
	ctrs, err := c.Containers(ctx)
	if err != nil {
		return 0, 0, 0, 0, err.Error()
	}
	var cgSum, pssSum float64
	var cgN, pssN int
	for _, ctr := range ctrs {
		labels, err := ctr.Labels(ctx)
		if err != nil || strings.HasPrefix(labels[runtime.LabelSession], "pool-") {
			continue // waiting in the pool, not a session's
		}
		if strings.HasPrefix(ctr.ID(), "parachute-pool-") {
			pooled++
		}
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			continue
		}
		pid := int(task.Pid())
		if v, err := cgroupMemory(pid); err == nil {
			cgSum += v
			cgN++
		}
		if v, err := pss(pid); err == nil {
			if shim := parentPID(pid); shim > 0 && strings.HasPrefix(comm(shim), "containerd-shim") {
				if s, err := pss(shim); err == nil {
					v += s
				}
			}
			pssSum += v
			pssN++
		}
	}
	if cgN > 0 {
		cgMB = cgSum / float64(cgN) / (1 << 20)
	}
	if pssN > 0 {
		pssMB = pssSum / float64(pssN) / (1 << 20)
	}
	if cgN == 0 && pssN == 0 {
		note = fmt.Sprintf("no idle sandbox could be measured (%d containers)", len(ctrs))
	}
	return cgMB, pssMB, max(cgN, pssN), pooled, note
}

// cgroupMemory is the memory charged to pid's cgroup, in bytes.
func cgroupMemory(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			file = filepath.Join("/sys/fs/cgroup", parts[2], "memory.current")
		case strings.Contains(","+parts[1]+",", ",memory,"):
			file = filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.usage_in_bytes")
		default:
			continue
		}
		v, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		return strconv.ParseFloat(strings.TrimSpace(string(v)), 64)
	}
	return 0, fmt.Errorf("no memory cgroup for pid %d", pid)
}

// pss is pid's proportional set size in bytes.
func pss(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no Pss for pid %d", pid)
}

func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// sandboxImage builds the static parachute binary and the sandbox image
// and imports it. The image tar under test/.state/images is rebuilt only
// when the binary changed (go build itself is cached).
func sandboxImage(b *testing.B, addr string) string {
	b.Helper()
	const ref = "parachute.local/sandbox:load"
	dir := filepath.Join(repoRoot(), "test", ".state", "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "parachute-load")
	cmd := exec.Command(filepath.Join(goruntime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", bin, "./cmd/parachute")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	sum, err := fileHash(bin)
	if err != nil {
		b.Fatal(err)
	}
	tar := filepath.Join(dir, "sandbox-load.tar")
	stamp := tar + ".sha256"
	if old, _ := os.ReadFile(stamp); string(old) != sum {
		if _, err := runtime.BuildImage(context.Background(), runtime.BuildOptions{Binary: bin, Ref: ref, Out: tar}); err != nil {
			b.Fatalf("sandbox image: %v", err)
		}
		if err := os.WriteFile(stamp, []byte(sum), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	rt, err := runtime.NewContainerd(context.Background(), runtime.ContainerdOptions{Address: addr})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	if err := rt.ImportImage(context.Background(), tar, ref); err != nil {
		b.Fatalf("sandbox image: import: %v", err)
	}
	return ref
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func randomHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func repoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func envDuration(k string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(k)); err == nil {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return def
}
