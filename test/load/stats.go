package load

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Causes a failed turn is counted under. A turn fails when the user did
// not get what they asked for, whatever the HTTP status said.
const (
	FailTransport = "transport"     // no HTTP answer at all
	FailBusy      = "busy-503"      // the gateway shed the message (overloaded)
	FailStatus    = "http-status"   // any other non-2xx answer
	FailEmpty     = "empty-reply"   // 2xx with nothing in it
	FailDenied    = "denied"        // "denied: <reason>" (policy-error among them)
	FailErrorText = "error-text"    // an error in the reply, e.g. no tool named "read_file"
	FailContent   = "wrong-content" // /cat did not show what /write wrote
	// FailAfterWrite is a /cat that found no file because the user's
	// /write had failed: counted, but apart from its cause.
	FailAfterWrite = "after-failed-write"
)

// Turn is one message's outcome as the user saw it.
type Turn struct {
	First   bool          // the user's first turn (the session's start is in it)
	Latency time.Duration // request sent to answer read
	Cause   string        // "" when the turn succeeded, else one of the Fail* constants
	Detail  string        // what was seen, for the first failures printed
}

// Classify says whether an answer is what the user asked for: err is the
// transport's error, status and reply the HTTP answer (reply being the
// JSON reply, or the error field when there was none), want a text the
// reply must contain ("" for any non-error reply).
func Classify(err error, status int, reply, want string) (cause, detail string) {
	switch {
	case err != nil:
		return FailTransport, err.Error()
	case status == 503:
		return FailBusy, reply
	case status < 200 || status > 299:
		return FailStatus, fmt.Sprintf("%d %s", status, reply)
	case strings.TrimSpace(reply) == "":
		return FailEmpty, ""
	}
	lower := strings.ToLower(reply)
	switch {
	case strings.Contains(lower, "denied:"):
		return FailDenied, reply
	case strings.Contains(lower, "no tool named"), strings.Contains(lower, "error"), strings.Contains(lower, "failed"):
		return FailErrorText, reply
	case want != "" && !strings.Contains(reply, want):
		return FailContent, reply
	}
	return "", ""
}

// Result is one rung of the ladder.
type Result struct {
	Users      int
	WarmPool   string        // the pool setting, e.g. "1" or "2..16"
	Wall       time.Duration // first request sent to last answer read
	Turns      []Turn
	IdleMemMB  float64 // mean cgroup memory of an idle sandbox
	IdlePssMB  float64 // mean PSS of an idle sandbox's shim and PID 1
	Sandboxes  int     // idle sandboxes measured
	MemoryNote string  // why memory is missing, if it is
}

// Failed counts the failed turns by cause.
func (r Result) Failed() (total int, byCause map[string]int) {
	byCause = map[string]int{}
	for _, t := range r.Turns {
		if t.Cause != "" {
			total++
			byCause[t.Cause]++
		}
	}
	return total, byCause
}

// TurnsPerSecond is the successful turns per second of wall time.
func (r Result) TurnsPerSecond() float64 {
	if r.Wall <= 0 {
		return 0
	}
	failed, _ := r.Failed()
	return float64(len(r.Turns)-failed) / r.Wall.Seconds()
}

// Percentile is the p-th percentile (0-100, nearest rank) of the
// latencies of the first turns (first) or the later ones, failed turns
// included: a slow failure is still a wait.
func (r Result) Percentile(first bool, p float64) time.Duration {
	var l []time.Duration
	for _, t := range r.Turns {
		if t.First == first {
			l = append(l, t.Latency)
		}
	}
	if len(l) == 0 {
		return 0
	}
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	rank := int(p/100*float64(len(l))+0.5) - 1
	rank = max(0, min(rank, len(l)-1))
	return l[rank]
}

// WriteTable prints the results, one row per rung.
func WriteTable(w io.Writer, rs []Result) {
	fmt.Fprintf(w, "%6s %16s %8s %9s %10s %10s %10s %10s %7s  %-24s %11s %11s\n",
		"users", "warm_pool", "turns", "turns/s", "first p50", "first p95", "later p50", "later p95", "failed", "causes", "idle cg MB", "idle pss MB")
	for _, r := range rs {
		failed, by := r.Failed()
		var causes []string
		for c, n := range by {
			causes = append(causes, fmt.Sprintf("%s:%d", c, n))
		}
		sort.Strings(causes)
		if len(causes) == 0 {
			causes = []string{"-"}
		}
		fmt.Fprintf(w, "%6d %16s %8d %9.1f %10s %10s %10s %10s %7d  %-24s %11.1f %11.1f\n",
			r.Users, r.WarmPool, len(r.Turns), r.TurnsPerSecond(),
			ms(r.Percentile(true, 50)), ms(r.Percentile(true, 95)), ms(r.Percentile(false, 50)), ms(r.Percentile(false, 95)),
			failed, strings.Join(causes, ","), r.IdleMemMB, r.IdlePssMB)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d.Microseconds())/1000) }
