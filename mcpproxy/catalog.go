package mcpproxy

import (
	"context"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/parachute-gateway/parachute/engine"
)

// entry is one tool of the catalog.
type entry struct {
	def         *mcp.Tool // as the upstream advertises it
	server      string    // BuiltinServer or the upstream's name
	remote      *remote   // nil for the built-in tools
	access      string    // read, write, exec or unknown
	pathArgs    map[string]bool
	pathArgList []string
	declared    map[string]bool // the input schema's property names, exactly
	key         string          // "server/tool" in the pin store
	hash        string
	approved    atomic.Bool
	unapproved  atomic.Bool // new on a pinned server, waiting for approval
}

// facts are the tool facts of every decision about e.
func (e *entry) facts() engine.ToolFacts {
	// An on-host command and an HTTP server both run outside the walls.
	return engine.ToolFacts{Name: e.def.Name, Server: e.server, Access: e.access,
		OnHost: e.remote != nil && !e.remote.up.sandboxed()}
}

type catalog struct {
	byName map[string]*entry
	order  []*entry
}

// buildCatalog collects the tools of the built-in server and then of each
// upstream in order. A tool name already taken is skipped and logged: a
// later upstream cannot shadow an earlier tool.
func (p *Proxy) buildCatalog(ctx context.Context) (*catalog, error) {
	c := &catalog{byName: map[string]*entry{}}
	add := func(def *mcp.Tool, server string, r *remote, overrides map[string]string, extra []string) *entry {
		if _, dup := c.byName[def.Name]; dup {
			p.log.Warn("mcp tool name already taken; skipped", "tool", def.Name, "server", server)
			return nil
		}
		var origin []string
		if r != nil {
			origin = r.up.origin()
		}
		e := &entry{def: def, server: server, remote: r, access: classify(def.Name, overrides),
			key: server + "/" + def.Name, hash: toolHash(def, origin)}
		props := schemaProperties(def.InputSchema)
		e.pathArgList = pathArgs(props, extra)
		e.pathArgs = make(map[string]bool, len(e.pathArgList))
		for _, n := range e.pathArgList {
			e.pathArgs[n] = true
		}
		e.declared = map[string]bool{}
		for name := range props {
			e.declared[name] = true
		}
		c.byName[def.Name] = e
		c.order = append(c.order, e)
		return e
	}
	if p.opts.Builtin {
		for _, def := range builtinTools() {
			// Built-in tools are part of this binary: nothing to pin.
			add(def, BuiltinServer, nil, nil, nil).approved.Store(true)
		}
	}
	for _, r := range p.remotes {
		tools, err := r.tools(ctx)
		if err != nil {
			return nil, err
		}
		var added []*entry
		for _, def := range tools {
			if e := add(def, r.up.Name, r, r.up.Tools, r.up.PathArgs); e != nil {
				added = append(added, e)
			}
		}
		if err := p.pinServer(r.up.Name, added); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// pinServer checks one upstream's tools against the pin store. A server
// never seen has all its tools pinned at once (trust on first use); on a
// pinned server, a changed tool is blocked and a new one waits for
// approval (policy decides whether it may be called meanwhile).
func (p *Proxy) pinServer(server string, tools []*entry) error {
	p.pins.mu.Lock()
	first := !p.pins.serverPinned(server)
	p.pins.mu.Unlock()
	if first {
		keys, hashes := make([]string, len(tools)), make([]string, len(tools))
		for i, e := range tools {
			keys[i], hashes[i] = e.key, e.hash
			e.approved.Store(true)
		}
		return p.pins.pinFirst(keys, hashes)
	}
	for _, e := range tools {
		st, err := p.pins.check(server, e.key, e.hash)
		if err != nil {
			return err
		}
		switch st {
		case pinApproved:
			e.approved.Store(true)
		case pinChanged:
			p.log.Warn("mcp tool definition (or its server's command) changed since it was approved; blocked until `parachute mcp approve`",
				"tool", e.def.Name, "server", server)
		case pinNew:
			e.unapproved.Store(true)
			p.log.Warn("new mcp tool on an approved server; waiting for `parachute mcp approve` (policy decides meanwhile)",
				"tool", e.def.Name, "server", server)
		}
	}
	return nil
}

// approval reports whether e is approved and, if not, whether it is a new
// tool waiting for approval (rather than a changed, blocked one). A tool
// not approved re-reads the pin store, so an approval takes effect without
// a restart.
func (p *Proxy) approval(e *entry) (approved, unapproved bool) {
	if e.approved.Load() {
		return true, false
	}
	if p.pins.recheck(e.key, e.hash) {
		e.approved.Store(true)
		e.unapproved.Store(false)
		return true, false
	}
	return false, e.unapproved.Load()
}
