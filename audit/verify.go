package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// MaxLine bounds one audit line when reading.
const MaxLine = 1 << 20

// Problem is one break in the chain (or, among Warnings, one thing to know),
// named by file and line.
type Problem struct {
	File string
	Line int
	Seq  uint64
	What string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d (seq %d): %s", p.File, p.Line, p.Seq, p.What)
}

// Gap is an outage the log recorded: appends refused from From to To.
type Gap struct {
	File     string
	Line     int
	Seq      uint64
	From, To time.Time
	Refused  uint64
	Error    string
}

func (g Gap) String() string {
	return fmt.Sprintf("%s:%d (seq %d): gap: %d append(s) refused from %s to %s (first error: %s)",
		g.File, g.Line, g.Seq, g.Refused, g.From.Format(time.RFC3339Nano), g.To.Format(time.RFC3339Nano), g.Error)
}

// Position names one record.
type Position struct {
	File string
	Line int
	Seq  uint64
}

// VerifyOptions say what, besides the log, Verify checks it against.
type VerifyOptions struct {
	// Key verifies checkpoint signatures. Without it the log is checked as a
	// hash chain only, which anyone who can write the folder can recompute.
	Key *PublicKey
	// Anchor is a checkpoint note kept outside the log (the checkpoint file
	// beside the key, or a line copied from the process log); the log must
	// hold it. AnchorName names where it came from, for messages.
	Anchor     string
	AnchorName string
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Records  int
	Files    int
	HeadSeq  uint64
	HeadHash string
	Problems []Problem
	// Warnings do not make the log fail: an unsigned tail after the last
	// checkpoint (normal for a live log), checkpoints left unverified for
	// want of a key.
	Warnings []Problem
	Gaps     []Gap
	// Checkpoints counts the checkpoint records (with a Key: those whose
	// signature verified); Last is the newest of them.
	Checkpoints  int
	Last         *Position
	UnsignedTail uint64 // records after Last
	Signed       bool   // a Key was given
}

// OK reports whether the log is intact.
func (r VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Verify checks the log in dir as a hash chain: see VerifyWith.
func Verify(dir string) (VerifyReport, error) { return VerifyWith(dir, VerifyOptions{}) }

// VerifyWith walks every file of the log in dir, recomputing each line's
// hash and checking that it links to the line before, that sequence numbers
// run without a gap, and that each line is exactly what the writer would
// write for the record it decodes to (no duplicate, unknown or re-cased key,
// no other escaping), so every reader sees the same record. It names every
// edited, inserted, reordered or deleted line it finds.
//
// With a Key, every checkpoint's signature is checked against the record
// before it; a chain re-computed without the key fails at the first
// checkpoint after the edit. Records after the newest checkpoint are an
// unsigned tail (a warning); more of them than its interval, a log without
// any checkpoint, or a log that ends before the Anchor fail.
func VerifyWith(dir string, opts VerifyOptions) (VerifyReport, error) {
	files, err := Files(dir)
	if err != nil {
		return VerifyReport{}, err
	}
	v := verifier{opts: opts, rep: VerifyReport{Files: len(files), HeadHash: Genesis, Signed: opts.Key != nil}, prev: Genesis}
	if opts.Anchor != "" {
		v.anchorSet = true
		c, err := v.parseNote(opts.Anchor)
		if err != nil {
			v.rep.Problems = append(v.rep.Problems, Problem{File: opts.AnchorName, Line: 1,
				What: "anchor checkpoint: " + err.Error()})
			v.anchorSet = false
		} else {
			v.anchor = c
		}
	}
	for _, path := range files {
		if err := v.file(path); err != nil {
			return v.rep, err
		}
	}
	v.finish()
	return v.rep, nil
}

type lastCheckpoint struct {
	Position
	interval uint64
}

type verifier struct {
	opts VerifyOptions
	rep  VerifyReport
	prev string
	seq  uint64
	last *lastCheckpoint
	// records since the last checkpoint, not counting gap records (a gap
	// record shares its batch with the record it precedes)
	since uint64
	// where the last line was
	curFile string
	line    int

	anchorSet   bool
	anchor      Checkpoint
	anchorFound bool
}

func (v *verifier) parseNote(note string) (Checkpoint, error) {
	if v.opts.Key != nil {
		return VerifyCheckpoint(note, *v.opts.Key)
	}
	c, _, _, err := ParseCheckpoint(note)
	return c, err
}

func (v *verifier) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	n := 0
	var enc bytes.Buffer
	for sc.Scan() {
		n++
		v.curFile, v.line = path, n
		line := sc.Bytes()
		problem := func(s uint64, what string, args ...any) {
			v.rep.Problems = append(v.rep.Problems, Problem{File: path, Line: n, Seq: s, What: fmt.Sprintf(what, args...)})
		}
		body, hash, ok := split(line)
		var r Record
		if !ok || json.Unmarshal(body, &r) != nil {
			problem(0, "not an audit record")
			continue
		}
		v.rep.Records++
		if got := digest(body); got != hash {
			problem(r.Seq, "edited: content does not match its hash")
		}
		if !canonical(&enc, &r, body) {
			problem(r.Seq, "not as the log writes it: a key is repeated, unknown, spelled in another case or escaped differently, so readers could disagree on what it says")
		}
		switch {
		case r.Seq != v.seq+1 && r.Seq > v.seq+1:
			problem(r.Seq, "gap: records %d to %d are missing", v.seq+1, r.Seq-1)
		case r.Seq != v.seq+1:
			problem(r.Seq, "out of order or duplicated: expected seq %d", v.seq+1)
		}
		if r.Prev != v.prev && r.Seq == v.seq+1 {
			problem(r.Seq, "chain broken: prev does not match the hash of the record before")
		}
		switch r.Kind {
		case KindCheckpoint:
			v.checkpoint(path, n, &r, problem)
		default:
			v.since++
		case KindGap:
			g := Gap{File: path, Line: n, Seq: r.Seq, Error: r.Error}
			g.From, _ = time.Parse(time.RFC3339Nano, r.Detail["from"])
			g.To, _ = time.Parse(time.RFC3339Nano, r.Detail["to"])
			g.Refused, _ = strconv.ParseUint(r.Detail["refused"], 10, 64)
			v.rep.Gaps = append(v.rep.Gaps, g)
		}
		if v.anchorSet && r.Seq == v.anchor.Size+1 {
			if r.Kind == KindCheckpoint && r.Detail["note"] == v.opts.Anchor {
				v.anchorFound = true
			} else {
				problem(r.Seq, "not the checkpoint kept in %s: the log was rewritten from here", v.opts.AnchorName)
			}
		}
		v.prev, v.seq = hash, r.Seq
	}
	if err := sc.Err(); err != nil {
		v.rep.Problems = append(v.rep.Problems, Problem{File: path, Line: n + 1, What: "unreadable: " + err.Error()})
	}
	return nil
}

// canonical reports whether body is exactly the encoding of r.
func canonical(buf *bytes.Buffer, r *Record, body []byte) bool {
	buf.Reset()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return false
	}
	want := bytes.TrimRight(buf.Bytes(), "\n")
	// body ends with "}" where the encoder wrote `,"prev":"…"}`; the hash
	// field is not part of body.
	return bytes.Equal(want, body)
}

func (v *verifier) checkpoint(path string, n int, r *Record, problem func(uint64, string, ...any)) {
	c, err := v.parseNote(r.Detail["note"])
	switch {
	case errors.Is(err, ErrSignature):
		problem(r.Seq, "%v: the chain was re-computed or the checkpoint forged (verified with key %s)", err, v.opts.Key.KeyID())
		return
	case err != nil:
		problem(r.Seq, "checkpoint: %v", err)
		return
	}
	if c.Size != r.Seq-1 {
		problem(r.Seq, "checkpoint signs seq %d, not the record before it (%d)", c.Size, r.Seq-1)
		return
	}
	if c.Hash != r.Prev || r.Prev != v.prev {
		problem(r.Seq, "checkpoint signs a head hash the chain does not have: records up to seq %d were changed", c.Size)
		return
	}
	if !c.Time.Equal(r.Time) {
		problem(r.Seq, "checkpoint time %s differs from the record's %s", c.Time.Format(time.RFC3339Nano), r.Time.Format(time.RFC3339Nano))
	}
	if last := v.last; last != nil && v.since > last.interval {
		problem(r.Seq, "checkpoint missing: %d records since the checkpoint at seq %d (%s:%d), more than its interval %d",
			v.since, last.Seq, last.File, last.Line, last.interval)
	}
	v.since = 0
	v.rep.Checkpoints++
	v.last = &lastCheckpoint{Position: Position{File: path, Line: n, Seq: r.Seq}, interval: c.Interval}
}

func (v *verifier) finish() {
	rep := &v.rep
	rep.HeadSeq, rep.HeadHash = v.seq, v.prev
	at := func(what string, args ...any) Problem {
		return Problem{File: v.curFile, Line: v.line, Seq: v.seq, What: fmt.Sprintf(what, args...)}
	}
	if v.last != nil {
		p := v.last.Position
		rep.Last = &p
		rep.UnsignedTail = v.seq - p.Seq
	}
	if v.anchorSet && !v.anchorFound && v.seq < v.anchor.Size+1 {
		rep.Problems = append(rep.Problems, at("truncated: the log ends at seq %d, but %s holds the checkpoint at seq %d (signing seq %d): records were cut",
			v.seq, v.opts.AnchorName, v.anchor.Size+1, v.anchor.Size))
	}
	switch {
	case rep.Records == 0:
	case !rep.Signed:
		if rep.Checkpoints > 0 {
			rep.Warnings = append(rep.Warnings, at("%d checkpoint(s) not verified: no public key", rep.Checkpoints))
		}
	case v.last == nil:
		rep.Problems = append(rep.Problems, at("no checkpoint signed by key %s: the log was re-chained without the key, or written without one", v.opts.Key.KeyID()))
	case v.since > v.last.interval:
		rep.Problems = append(rep.Problems, at("checkpoint missing: %d records after the checkpoint at seq %d (%s:%d), more than its interval %d",
			rep.UnsignedTail, v.last.Seq, v.last.File, v.last.Line, v.last.interval))
	case rep.UnsignedTail > 0:
		rep.Warnings = append(rep.Warnings, at("unsigned tail: %d records after checkpoint at seq %d (%s:%d)",
			rep.UnsignedTail, v.last.Seq, v.last.File, v.last.Line))
	}
}
