package engine

import "github.com/open-policy-agent/opa/v1/ast"

// readNode is one level of the input paths a compiled policy can read. A
// full node means the whole value at that path may be read; otherwise only
// the children listed are. The decision cache keys an input on the parts a
// policy can read and nothing else, so a field no rule reads (a message's
// length, a display name) does not make every decision unique. The
// analysis is conservative: anything it cannot follow reads everything.
type readNode struct {
	full     bool
	children map[string]*readNode
}

// inputReads returns the input paths entry's rules can read. It does not
// follow which rules a decision depends on (a dependency graph has corners:
// else branches, dynamic references); it walks every rule that could be
// among them: every module of package parachute.<entry> (and below it) and
// every module outside the entry packages (parachute.lib and the like). A
// reference to another entry's package, or one into data whose package
// part is a variable (data[x], data.parachute[x]), reads everything.
//
// Every reference into input is followed from the root while its steps are
// constant strings; a step that is a variable or anything else (input[k],
// paths[_]) makes the rest of that value read, and so does a reference that
// ends there (s := input.session reads the whole session). A bare input
// (object.get(input, …), walk(input, …)) reads everything, and so does any
// `with` (it can swap in a rule or a document this walk does not see).
func inputReads(compiler *ast.Compiler, entry Entry) *readNode {
	root := &readNode{}
	own := ast.Ref{ast.DefaultRootDocument, ast.InternedTerm("parachute"), ast.InternedTerm(string(entry))}
	isEntry := func(name ast.Value) bool {
		for _, e := range Entries {
			if name.Compare(ast.String(e)) == 0 {
				return true
			}
		}
		return false
	}
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.Expr:
			if len(v.With) > 0 {
				root.full = true
			}
		case ast.Ref:
			if v.HasPrefix(ast.DefaultRootRef) {
				switch {
				case len(v) < 3:
					root.full = true // data, data[x], data.parachute
				case !ast.IsConstant(v[1].Value):
					root.full = true // data[x].…
				case !v[1].Equal(ast.InternedTerm("parachute")):
				case !ast.IsConstant(v[2].Value):
					root.full = true // data.parachute[x]
				case isEntry(v[2].Value) && !v.HasPrefix(own):
					root.full = true // another entry's rules
				}
				return false
			}
			if !v.HasPrefix(ast.InputRootRef) {
				return false
			}
			root.read(v[1:])
			for _, step := range v[1:] {
				vis.Walk(step) // input[input.k]: the inner reference reads too
			}
			return true
		case ast.Var:
			// input outside a reference (the compiler makes it one, but be
			// sure): everything.
			if v.Equal(ast.InputRootDocument.Value) {
				root.full = true
			}
		}
		return false
	})
	for _, m := range compiler.Modules {
		pkg := m.Package.Path
		if len(pkg) >= 3 && pkg[1].Equal(ast.InternedTerm("parachute")) && isEntry(pkg[2].Value) && !pkg.HasPrefix(own) {
			continue // another entry point's package
		}
		vis.Walk(m)
		if root.full {
			return everything
		}
	}
	if root.full {
		return everything
	}
	return root
}

// read marks the path steps as read from n.
func (n *readNode) read(steps ast.Ref) {
	for _, step := range steps {
		if n.full {
			return
		}
		s, ok := step.Value.(ast.String)
		if !ok {
			n.full = true
			return
		}
		if n.children == nil {
			n.children = map[string]*readNode{}
		}
		c := n.children[string(s)]
		if c == nil {
			c = &readNode{}
			n.children[string(s)] = c
		}
		n = c
	}
	n.full = true
}

// everything is the read set of a policy that may read any part of input.
var everything = &readNode{full: true}
