package engine

import (
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// DefaultCacheSize is the number of decisions a policy set keeps when
// Options leaves CacheSize 0.
const DefaultCacheSize = 4096

// result is what Evaluate learned from the policy for one input: the parsed
// decision object. It is immutable once made, so a cache hit hands out the
// same one to every caller: Reasons is clipped (an append copies) and
// Fields must be read, never written.
type result struct {
	allow   bool
	reasons []string
	reply   string
	fields  map[string]any
	limits  []bucket
}

// decisionCache is a bounded LRU of results for one policy set. A reload or
// a data change builds a new set with an empty cache, so a result can only
// be found for the revision that computed it. The key is the entry point
// and the input's canonical encoding (appendKey); the map compares keys in
// full, so a hash collision can never return another input's result.
type decisionCache struct {
	mu    sync.Mutex
	max   int
	items map[string]*cacheEntry
	head  cacheEntry // sentinel: head.next is the most recently used
}

type cacheEntry struct {
	key        string
	res        *result
	prev, next *cacheEntry
}

func newDecisionCache(max int) *decisionCache {
	c := &decisionCache{max: max, items: make(map[string]*cacheEntry, min(max, 1024))}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

// get returns the result for key and marks it recently used. It does not
// allocate: the map look-up converts key without copying.
func (c *decisionCache) get(key []byte) *result {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[string(key)]
	if !ok {
		return nil
	}
	c.unlink(e)
	c.pushFront(e)
	return e.res
}

// put stores res under key, evicting the least recently used entry when
// the cache is full.
func (c *decisionCache) put(key []byte, res *result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[string(key)]; ok {
		e.res = res
		c.unlink(e)
		c.pushFront(e)
		return
	}
	if len(c.items) >= c.max {
		old := c.head.prev
		c.unlink(old)
		delete(c.items, old.key)
	}
	e := &cacheEntry{key: string(key), res: res}
	c.items[e.key] = e
	c.pushFront(e)
}

func (c *decisionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

func (c *decisionCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (c *decisionCache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

// alwaysNondeterministic are builtins whose result can differ between two
// calls with the same arguments, whether or not OPA's registry marks them
// so: time, randomness, the network, the runtime's environment.
var alwaysNondeterministic = []string{"http.send", "time.now_ns", "opa.runtime", "rand.", "uuid.", "net.lookup_"}

// nondeterministicCall returns the first call in the compiled modules to a
// builtin whose result is not a function of its arguments alone (OPA's
// Nondeterministic flag, or one of alwaysNondeterministic), as
// "name at file:line", or "" when there is none. A policy set that makes
// such a call is evaluated afresh every time: a cached decision would
// repeat a time or an answer that is no longer true.
func nondeterministicCall(compiler *ast.Compiler) string {
	found := ""
	check := func(op ast.Ref, loc *ast.Location) {
		if found != "" {
			return
		}
		name := op.String()
		nd := false
		if b, ok := ast.BuiltinMap[name]; ok && b.Nondeterministic {
			nd = true
		}
		for _, p := range alwaysNondeterministic {
			if name == p || strings.HasSuffix(p, ".") && strings.HasPrefix(name, p) {
				nd = true
			}
		}
		if nd {
			found = name
			if loc != nil {
				found += " at " + loc.String()
			}
		}
	}
	for _, m := range compiler.Modules {
		ast.WalkExprs(m, func(x *ast.Expr) bool {
			if x.IsCall() {
				check(x.Operator(), x.Location)
			}
			return found != ""
		})
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if call, ok := t.Value.(ast.Call); ok && len(call) > 0 {
				if ref, ok := call[0].Value.(ast.Ref); ok {
					check(ref, t.Location)
				}
			}
			// A builtin named without a call (f := time.now_ns) is still a
			// call once the compiler has rewritten it; refs to builtins
			// are checked too, to be safe.
			if ref, ok := t.Value.(ast.Ref); ok {
				if _, isBuiltin := ast.BuiltinMap[ref.String()]; isBuiltin {
					check(ref, t.Location)
				}
			}
			return found != ""
		})
	}
	return found
}
