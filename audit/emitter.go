package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// Observer is told of every append an Emitter makes: its kind, how long it
// took and whether it failed. The gateway's metrics implement it.
type Observer interface {
	Appended(k Kind, took time.Duration, err error)
}

// Emitter is the one way product code writes records (a test scans the
// module for any other caller of Log.Append). It refuses a record the
// registry does not allow (an unknown kind, a kind only the log writes, a
// decision that is neither allow nor deny) with an error, never a silent
// write, and reports every append to its Observer.
type Emitter struct {
	log *Log
	obs Observer
}

// NewEmitter returns the emitter for l; obs may be nil.
func NewEmitter(l *Log, obs Observer) *Emitter { return &Emitter{log: l, obs: obs} }

// Append checks r and appends it to the log: it returns once r is
// durable, or an error wrapping ErrUnavailable (ErrUnknownKind for a
// record the registry refuses). Callers refuse the action r was for.
func (e *Emitter) Append(ctx context.Context, r Record) (Record, error) {
	if err := check(r); err != nil {
		if e.obs != nil {
			e.obs.Appended(r.Kind, 0, err)
		}
		return r, err
	}
	if e.log == nil {
		return r, fmt.Errorf("%w: no audit log", ErrUnavailable)
	}
	start := time.Now()
	out, err := e.log.Append(ctx, r)
	if e.obs != nil {
		e.obs.Appended(r.Kind, time.Since(start), err)
	}
	return out, err
}

// Record implements engine.Recorder: the decision's record, appended as
// any other.
func (e *Emitter) Record(ctx context.Context, in engine.Input, d *engine.Decision) error {
	_, err := e.Append(ctx, FromDecision(in, d))
	return err
}

// check refuses a record the registry does not allow.
func check(r Record) error {
	info, ok := LookupKind(r.Kind)
	switch {
	case !ok:
		return fmt.Errorf("%w %q; the registered kinds are %s (add a new one to audit/kind.go)", ErrUnknownKind, r.Kind, KindList())
	case info.ByLog:
		return fmt.Errorf("%w %q from a caller: only the log writes %s records", ErrUnknownKind, r.Kind, r.Kind)
	}
	switch r.Decision {
	case "allow", "deny":
	case "":
		if info.Decision {
			return fmt.Errorf("%w: a %s record is a decision: decision must be allow or deny", ErrUnavailable, r.Kind)
		}
	default:
		return fmt.Errorf("%w: %s record: decision %q is neither allow nor deny", ErrUnavailable, r.Kind, r.Decision)
	}
	return nil
}
