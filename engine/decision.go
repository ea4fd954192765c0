package engine

import (
	"context"
	"time"
)

// Reasons the engine itself adds to a decision. Policy reasons are the
// policy's own kebab-case strings.
const (
	// ReasonPolicyError: the policy could not be evaluated (compile error,
	// undefined decision, conflict, builtin error, panic, the caller's
	// context cancelled). The decision is a deny and Decision.Err says why.
	ReasonPolicyError = "policy-error"
	// ReasonOverloaded: the evaluation was cut by the engine's decision
	// deadline (Options.Timeout). The policy is not at fault: the gateway
	// is too busy to decide in time. Still a deny, still recorded;
	// Decision.RetryAfter says when to try again and Decision.Err names the
	// deadline.
	ReasonOverloaded = "overloaded"
	// ReasonRateLimited: a rate-limit bucket named by the policy is empty.
	ReasonRateLimited = "rate-limited"
	// ReasonAuditUnavailable: the decision could not be recorded, so it is
	// refused.
	ReasonAuditUnavailable = "audit-unavailable"
	// ReasonNoReason: the policy denied without saying why.
	ReasonNoReason = "no-reason-given"
)

// Decision is the answer of one entry point for one input. A denial is a
// Decision with Allow false and its reasons, never a Go error.
type Decision struct {
	ID       string        // unique per decision, for the audit log
	Entry    Entry         // which entry point decided
	Allow    bool          // false unless the policy said true and every check passed
	Reasons  []string      // kebab-case; on a deny at least one
	Reply    string        // text for the user, for denials that tell them what to do
	Revision string        // hash of the policy files and data that decided
	Latency  time.Duration // time spent deciding, rate limits included
	// RetryAfter is set on a rate-limited deny (when a token will be back)
	// and on an overloaded one (OverloadRetryAfter).
	RetryAfter time.Duration
	// Err is the failure behind a policy-error or overloaded deny.
	Err error
	// Detail holds facts the caller adds for the record (the egress proxy:
	// the addresses a host resolved to, a count of suppressed attempts).
	// The audit log keeps them as the record's detail.
	Detail map[string]string
	// Fields is the whole decision object the policy returned (nil on a
	// policy-error). Use the typed views (MessageResult, SessionProfile, …)
	// rather than reading it directly. It is shared with the decision cache
	// and every decision made from the same result: never write to it.
	Fields map[string]any
	// Cached: the policy's answer came from the decision cache (the same
	// revision decided the same input before). Rate limits and the record
	// happened for this call as for any other; the audit record says so.
	Cached bool

	limits []bucket // the rate limits the policy named, parsed
	spent  bool     // Spend has taken its rate-limit tokens
}

// Recorder receives every decision the engine makes, allowed or not. The audit
// log implements it. A decision whose Record fails is turned into a deny with
// reason audit-unavailable: nothing is allowed that is not recorded.
type Recorder interface {
	Record(ctx context.Context, in Input, d *Decision) error
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(ctx context.Context, in Input, d *Decision) error

// Record implements Recorder.
func (f RecorderFunc) Record(ctx context.Context, in Input, d *Decision) error { return f(ctx, in, d) }

// String returns the string field key of the decision, or "".
func (d *Decision) String(key string) string {
	s, _ := d.Fields[key].(string)
	return s
}

// Bool returns the boolean field key of the decision; anything but true is
// false.
func (d *Decision) Bool(key string) bool {
	b, _ := d.Fields[key].(bool)
	return b
}

// Int returns the numeric field key of the decision as an integer, or 0.
func (d *Decision) Int(key string) int64 {
	return int64(d.Float(key))
}

// Float returns the numeric field key of the decision, or 0.
func (d *Decision) Float(key string) float64 {
	f, _ := number(d.Fields[key])
	return f
}

// MessageResult is the typed view of an allowed parachute.message decision.
type MessageResult struct {
	Role         string
	TrustLevel   string // "sandboxed" or "direct"
	Workspace    string // vault-relative folder
	ReadOnly     bool
	Network      bool
	SessionScope string // "user" (default) or "chat"
	MayPair      bool   // a denied sender may ask for a pairing code
}

// MessageResult reads the message fields of d. TrustLevel falls back to
// sandboxed and SessionScope to user when the policy left them out.
func (d *Decision) MessageResult() MessageResult {
	r := MessageResult{
		Role:         d.String("role"),
		TrustLevel:   d.String("trust_level"),
		Workspace:    d.String("workspace"),
		ReadOnly:     d.Bool("read_only"),
		Network:      d.Bool("network"),
		SessionScope: d.String("session_scope"),
		MayPair:      d.Bool("may_pair"),
	}
	if r.TrustLevel != "direct" {
		r.TrustLevel = "sandboxed"
	}
	if r.SessionScope != "chat" {
		r.SessionScope = "user"
	}
	return r
}

// SessionProfile is the typed view of an allowed parachute.session decision:
// the sandbox to start.
type SessionProfile struct {
	Runtime     string  // "containerd" or "direct"
	Seccomp     string  // profile name under policies/seccomp/
	MemoryMB    int64   // memory limit, swap included
	CPUs        float64 // CPU quota in cores
	PIDs        int64   // PID limit
	TmpfsMB     int64   // size of /tmp
	Network     bool    // egress through the gateway's proxy
	Hooks       bool    // vault hooks may run (never for sandboxed)
	ReadOnly    bool    // workspace mounted read-only
	TurnTimeout time.Duration
	// RuntimeClass is the OCI runtime of a containerd sandbox: "runc" or
	// "gvisor" (runtime_class; missing: gvisor).
	RuntimeClass string
	// DiskMB caps the workspace's size (disk_mb; 0: no quota).
	DiskMB int64
}

// SessionProfile reads the session fields of d. Missing fields take the
// most restrictive value: seccomp strict, no network, no hooks, read-only,
// the runtime containerd and the runtime class gvisor.
func (d *Decision) SessionProfile() SessionProfile {
	p := SessionProfile{
		Runtime:     d.String("runtime"),
		Seccomp:     d.String("seccomp_profile"),
		MemoryMB:    d.Int("memory_mb"),
		CPUs:        d.Float("cpus"),
		PIDs:        d.Int("pids"),
		TmpfsMB:     d.Int("tmpfs_mb"),
		Network:     d.Bool("network"),
		Hooks:       d.Bool("hooks"),
		ReadOnly:    true,
		TurnTimeout: time.Duration(d.Float("turn_timeout_seconds") * float64(time.Second)),
	}
	p.RuntimeClass, p.DiskMB = d.String("runtime_class"), d.Int("disk_mb")
	if p.RuntimeClass == "" {
		p.RuntimeClass = "gvisor"
	}
	if v, ok := d.Fields["read_only"].(bool); ok {
		p.ReadOnly = v
	}
	if p.Runtime != "direct" {
		p.Runtime = "containerd"
	}
	if p.Seccomp == "" {
		p.Seccomp = "strict"
	}
	return p
}
