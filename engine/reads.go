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

// inputReads returns the input paths the rules that decide entry can
// read: its decision rules and every rule and function they depend on, as
// the compiler's dependency graph has them (a reference with a variable
// into data depends on every rule it could select). Every reference into
// input is followed from the root while its steps are constant strings; a
// step that is a variable or anything else (input[k], paths[_]) makes the
// rest of that value read, and so does a reference that ends there
// (s := input.session reads the whole session). A bare input
// (object.get(input, …), walk(input, …)) reads everything, and so does any
// `with` among those rules (it can swap in a rule the graph does not show).
func inputReads(compiler *ast.Compiler, entry Entry) *readNode {
	if compiler.Graph == nil {
		return everything
	}
	root := &readNode{}
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.Expr:
			if len(v.With) > 0 {
				root.full = true
			}
		case ast.Ref:
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
	seen := map[*ast.Rule]bool{}
	var queue []*ast.Rule
	for _, r := range compiler.GetRulesExact(decisionRef(entry)) {
		queue = append(queue, r)
	}
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		if seen[r] {
			continue
		}
		seen[r] = true
		vis.Walk(r)
		if r.Else != nil {
			// The graph lists an else branch's dependencies under the
			// branch, not under the rule it belongs to.
			queue = append(queue, r.Else)
		}
		for dep := range compiler.Graph.Dependencies(r) {
			d, ok := dep.(*ast.Rule)
			if !ok {
				return everything // a dependency the analysis does not know
			}
			queue = append(queue, d)
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
