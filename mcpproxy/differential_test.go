package mcpproxy

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/engine"
)

// FuzzDecidedPathsAreTouchedPaths is the one-parse differential: for any
// arguments, whatever the built-in tools change is what policy decided on.
// A refused call changes nothing; an allowed one changes only the paths
// policy saw (their parent folders, for create_directory, and what lies
// beneath them, for a moved folder), never anything under .parachute, and
// nothing outside the workspace.
func FuzzDecidedPathsAreTouchedPaths(f *testing.F) {
	tools := []string{"write_file", "edit_file", "create_directory", "move_file", "read_file", "read_multiple_files"}
	seeds := []struct {
		tool byte
		args string
	}{
		{0, `{"path":"a.md","content":"x"}`},
		{0, `{"Path":".parachute/hooks/pre-session.sh","content":"x"}`},
		{0, `{"path":"ok.md","Path":".parachute/hooks/x","content":"x"}`},
		{0, `{"path":"sub/../.parachute/hooks/x","content":"x"}`},
		{1, `{"path":"notes.md","edits":[{"oldText":"hello","newText":"bye"}]}`},
		{2, `{"path":"d/e/f"}`},
		{2, `{"PATH":".parachute/hooks/d"}`},
		{3, `{"source":"sub/other.md","destination":"moved.md"}`},
		{3, `{"Source":"notes.md","Destination":".parachute/hooks/run.sh"}`},
		{3, `{"source":"sub","destination":"sub2"}`},
		{4, `{"path":"notes.md"}`},
		{5, `{"paths":["notes.md","link-file"]}`},
	}
	for _, s := range seeds {
		f.Add(s.tool, []byte(s.args))
	}
	fx := newFixture(f)
	rec := &recorder{}
	p, err := New(context.Background(), Options{Decider: newEngine(f, rec), Vault: fx.vault, Builtin: true})
	must(f, err)
	f.Cleanup(func() { p.Close() })
	s, err := p.NewSession(context.Background(), SessionOptions{Facts: func() engine.SessionFacts { return facts(false) }})
	must(f, err)
	f.Cleanup(func() { s.Close() })
	root := filepath.Dir(fx.vault) // the vault and the folder outside it

	f.Fuzz(func(t *testing.T, tool byte, raw []byte) {
		e := p.catalog.byName[tools[int(tool)%len(tools)]]
		before := snapshotMap(t, root)
		n0 := rec.count()
		res, _ := s.call(context.Background(), e, json.RawMessage(raw))
		last, n := rec.last()
		changed := diffSnapshots(before, snapshotMap(t, root))
		if n == n0 {
			// Past the session's budget of recorded refusals: refused
			// without a record of its own (counted in the next one).
			if !res.IsError || len(changed) > 0 {
				t.Fatalf("unrecorded call was not refused, or changed %v", changed)
			}
			return
		}
		if n != n0+1 {
			t.Fatalf("%d records for one call", n-n0)
		}
		if !last.d.Allow {
			if len(changed) > 0 {
				t.Fatalf("refused call (%v) changed %v", last.d.Reasons, changed)
			}
			return
		}
		vaultRel := strings.TrimPrefix(fx.vault, root) + "/"
		for _, c := range changed {
			if !strings.HasPrefix(c, vaultRel) {
				t.Fatalf("allowed call changed %s outside the vault", c)
			}
			rel := strings.TrimPrefix(c, vaultRel)
			if strings.Contains(strings.ToLower(rel), ".parachute") {
				t.Fatalf("allowed call changed %s", rel)
			}
			if !touchedDecided(rel, last.in.Paths) {
				t.Fatalf("%s changed %s; policy decided on %+v (result %+v)", e.def.Name, rel, last.in.Paths, res)
			}
		}
	})
}

// touchedDecided reports whether rel is a decided path, an ancestor of one
// (folders create_directory makes on the way) or beneath one (a moved folder's
// contents).
func touchedDecided(rel string, paths []engine.PathFacts) bool {
	for _, p := range paths {
		d := p.Resolved
		if rel == d || strings.HasPrefix(d, rel+"/") || strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}

func snapshotMap(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range snapshot(t, dir) {
		name, rest, _ := strings.Cut(line, "\t")
		m[name] = rest
	}
	return m
}

func diffSnapshots(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}
