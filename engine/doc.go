package engine

import (
	"encoding/binary"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// docWriter renders one typed input document in one of two forms: the OPA
// AST value policy evaluates, or a canonical byte key the decision cache
// looks it up by. Each typed input describes its document once (its write
// method) and both forms come from that one description, so the cache key
// cannot leave out a field the policy sees: two inputs share a key exactly
// when they build the same document.
//
// The key is tagged and length-prefixed (a string is 's', its key's length,
// the key, its length, the bytes), so no two documents encode alike however
// their strings are chosen. It holds only the fields the policy can read
// (inputReads): two inputs that differ only where no rule looks share a key,
// and so a decision.
type docWriter struct {
	key   []byte // key mode: the canonical encoding so far
	build bool   // AST mode: build frames instead of bytes
	// Key mode: cur is the read set at each open object (nil: read in
	// full); skip counts open objects and arrays left out of the key.
	cur   []*readNode
	skip  int
	stack []frame
	// items holds the key/value pairs of every open object and elems the
	// elements of every open array, each frame's from its start index: one
	// buffer for the whole document instead of one per object.
	items [][2]*ast.Term
	elems []*ast.Term
}

// frame is an object or array being built in AST mode.
type frame struct {
	name  string // key in the parent object ("" inside an array)
	start int    // index of its first pair in items, or element in elems
	isArr bool
}

// docInput is implemented by the typed inputs: they write their document
// field by field.
type docInput interface {
	Input
	write(w *docWriter)
}

// buildValue renders in's document as an AST value.
func buildValue(in docInput) ast.Value {
	w := docWriter{build: true, stack: make([]frame, 1, 4), items: make([][2]*ast.Term, 0, 32)}
	in.write(&w)
	return ast.NewObject(w.items...)
}

// appendKey appends in's canonical key to dst, with only the fields reads
// names (everything: all of them).
func appendKey(dst []byte, in docInput, reads *readNode) []byte {
	w := docWriter{key: dst}
	return w.appendKey(in, reads)
}

func (w *docWriter) appendKey(in docInput, reads *readNode) []byte {
	w.cur, w.skip = w.cur[:0], 0
	if reads.full {
		w.cur = append(w.cur, nil)
	} else {
		w.cur = append(w.cur, reads)
	}
	in.write(w)
	return w.key
}

// keyWriters recycles key-mode writers, so a cache hit allocates neither
// the key nor the writer.
var keyWriters = sync.Pool{New: func() any {
	return &docWriter{key: make([]byte, 0, 512), cur: make([]*readNode, 0, 8)}
}}

// keep reports whether the field name of the open object is part of the
// key, and the read set below it (nil: all of it).
func (w *docWriter) keep(name string) (*readNode, bool) {
	if w.skip > 0 {
		return nil, false
	}
	top := w.cur[len(w.cur)-1]
	if top == nil {
		return nil, true
	}
	c := top.children[name]
	switch {
	case c == nil:
		return nil, false
	case c.full:
		return nil, true
	}
	return c, true
}

func (w *docWriter) tag(t byte, name string) {
	w.key = append(w.key, t)
	w.key = binary.AppendUvarint(w.key, uint64(len(name)))
	w.key = append(w.key, name...)
}

func (w *docWriter) put(name string, v *ast.Term) {
	if w.stack[len(w.stack)-1].isArr {
		w.elems = append(w.elems, v)
		return
	}
	w.items = append(w.items, [2]*ast.Term{keyTerm(name), v})
}

// keyTerms holds one term per field name the typed inputs write. OPA's
// InternedTerm only interns the strings of its own table and allocates a
// new term for any other (connector_type, platform_id, …) on every call; the
// names are a small fixed set (the literals of the write methods), so each is
// made once and shared, read-only, by every document. The map is copied on
// write: a name is added once, then only ever read without a lock.
var (
	keyTerms   atomic.Pointer[map[string]*ast.Term]
	keyTermsMu sync.Mutex
)

func keyTerm(name string) *ast.Term {
	if m := keyTerms.Load(); m != nil {
		if t, ok := (*m)[name]; ok {
			return t
		}
	}
	keyTermsMu.Lock()
	defer keyTermsMu.Unlock()
	var next map[string]*ast.Term
	if m := keyTerms.Load(); m != nil {
		if t, ok := (*m)[name]; ok {
			return t
		}
		next = maps.Clone(*m)
	} else {
		next = map[string]*ast.Term{}
	}
	t := ast.StringTerm(name)
	next[name] = t
	keyTerms.Store(&next)
	return t
}

func (w *docWriter) str(name, v string) {
	if w.build {
		w.put(name, ast.InternedTerm(v)) // "" and OPA's common strings are shared
		return
	}
	if _, ok := w.keep(name); !ok {
		return
	}
	w.tag('s', name)
	w.key = binary.AppendUvarint(w.key, uint64(len(v)))
	w.key = append(w.key, v...)
}

func (w *docWriter) boolean(name string, v bool) {
	if w.build {
		w.put(name, ast.InternedTerm(v))
		return
	}
	if _, ok := w.keep(name); !ok {
		return
	}
	w.tag('b', name)
	if v {
		w.key = append(w.key, 1)
	} else {
		w.key = append(w.key, 0)
	}
}

func (w *docWriter) num(name string, v int64) {
	if w.build {
		w.put(name, ast.InternedTerm(int(v)))
		return
	}
	if _, ok := w.keep(name); !ok {
		return
	}
	w.tag('n', name)
	w.key = binary.AppendVarint(w.key, v)
}

// strs writes an array of strings.
func (w *docWriter) strs(name string, list []string) {
	w.beginArray(name)
	for _, v := range list {
		w.str("", v)
	}
	w.end()
}

// beginObject opens an object under name (name is ignored inside an array);
// end closes it.
func (w *docWriter) beginObject(name string) {
	if w.build {
		w.stack = append(w.stack, frame{name: name, start: len(w.items)})
		return
	}
	w.open('{', name, false)
}

// beginArray opens an array under name; end closes it.
func (w *docWriter) beginArray(name string) {
	if w.build {
		w.stack = append(w.stack, frame{name: name, start: len(w.elems), isArr: true})
		return
	}
	w.open('[', name, true)
}

// open starts an object or array in the key, or a skipped one. An array's
// elements are always read in full: policy indexes them by variable.
func (w *docWriter) open(t byte, name string, isArr bool) {
	node, ok := w.keep(name)
	if !ok {
		w.skip++
		return
	}
	if isArr {
		node = nil
	}
	w.cur = append(w.cur, node)
	w.tag(t, name)
}

func (w *docWriter) end() {
	if !w.build {
		if w.skip > 0 {
			w.skip--
			return
		}
		w.cur = w.cur[:len(w.cur)-1]
		w.key = append(w.key, '}')
		return
	}
	top := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	var v ast.Value
	if top.isArr {
		// The array keeps its slice: copy it out of the shared buffer.
		v = ast.NewArray(slices.Clone(w.elems[top.start:])...)
		w.elems = w.elems[:top.start]
	} else {
		// NewObject copies the pairs into its own storage.
		v = ast.NewObject(w.items[top.start:]...)
		w.items = w.items[:top.start]
	}
	w.put(top.name, ast.NewTerm(v))
}
