package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

// MaxLine bounds one audit line when reading.
const MaxLine = 1 << 20

// Problem is one break in the chain, named by file and line.
type Problem struct {
	File string
	Line int
	Seq  uint64
	What string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d (seq %d): %s", p.File, p.Line, p.Seq, p.What)
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Records  int
	Files    int
	HeadSeq  uint64
	HeadHash string
	Problems []Problem
}

// OK reports whether the chain is intact.
func (r VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Verify walks every file of the log in dir, recomputing each line's hash and
// checking that it links to the line before and that sequence numbers run
// without a gap. It names every edited, inserted, reordered or deleted line
// it finds. Deleting lines from the very end cannot be seen from the log
// alone; compare HeadSeq and HeadHash with a copy kept elsewhere.
func Verify(dir string) (VerifyReport, error) {
	files, err := Files(dir)
	if err != nil {
		return VerifyReport{}, err
	}
	rep := VerifyReport{Files: len(files), HeadHash: Genesis}
	prev, seq := Genesis, uint64(0)
	for _, path := range files {
		if err := verifyFile(path, &rep, &prev, &seq); err != nil {
			return rep, err
		}
	}
	rep.HeadSeq, rep.HeadHash = seq, prev
	return rep, nil
}

func verifyFile(path string, rep *VerifyReport, prev *string, seq *uint64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		problem := func(s uint64, what string, args ...any) {
			rep.Problems = append(rep.Problems, Problem{File: path, Line: n, Seq: s, What: fmt.Sprintf(what, args...)})
		}
		body, hash, ok := split(line)
		var r struct {
			Seq  uint64 `json:"seq"`
			Prev string `json:"prev"`
		}
		if !ok || json.Unmarshal(body, &r) != nil {
			problem(0, "not an audit record")
			continue
		}
		rep.Records++
		if got := digest(body); got != hash {
			problem(r.Seq, "edited: content does not match its hash")
		}
		switch {
		case r.Seq != *seq+1 && r.Seq > *seq+1:
			problem(r.Seq, "gap: records %d to %d are missing", *seq+1, r.Seq-1)
		case r.Seq != *seq+1:
			problem(r.Seq, "out of order or duplicated: expected seq %d", *seq+1)
		}
		if r.Prev != *prev && r.Seq == *seq+1 {
			problem(r.Seq, "chain broken: prev does not match the hash of the record before")
		}
		*prev, *seq = hash, r.Seq
	}
	if err := sc.Err(); err != nil {
		rep.Problems = append(rep.Problems, Problem{File: path, Line: n + 1, What: "unreadable: " + err.Error()})
	}
	return nil
}
