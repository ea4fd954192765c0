package mcpproxy

import (
	"context"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// entry is one tool of the catalog.
type entry struct {
	def         *mcp.Tool // as the upstream advertises it
	server      string    // BuiltinServer or the upstream's name
	remote      *remote   // nil for the built-in tools
	access      string    // read, write, exec or unknown
	pathArgs    map[string]bool
	pathArgList []string
	key         string // "server/tool" in the pin store
	hash        string
	approved    atomic.Bool
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
	add := func(def *mcp.Tool, server string, r *remote, overrides map[string]string, extra []string) error {
		if _, dup := c.byName[def.Name]; dup {
			p.log.Warn("mcp tool name already taken; skipped", "tool", def.Name, "server", server)
			return nil
		}
		e := &entry{def: def, server: server, remote: r, access: classify(def.Name, overrides),
			key: server + "/" + def.Name, hash: toolHash(def)}
		e.pathArgList = pathArgs(def.InputSchema, extra)
		e.pathArgs = make(map[string]bool, len(e.pathArgList))
		for _, n := range e.pathArgList {
			e.pathArgs[n] = true
		}
		if r == nil {
			// Built-in tools are part of this binary: nothing to pin.
			e.approved.Store(true)
		} else {
			ok, err := p.pins.check(e.key, e.hash)
			if err != nil {
				return err
			}
			e.approved.Store(ok)
			if !ok {
				p.log.Warn("mcp tool definition changed since it was approved; blocked until `parachute mcp approve`",
					"tool", def.Name, "server", server)
			}
		}
		c.byName[def.Name] = e
		c.order = append(c.order, e)
		return nil
	}
	if p.opts.Builtin {
		for _, def := range builtinTools() {
			if err := add(def, BuiltinServer, nil, nil, nil); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range p.remotes {
		tools, err := r.tools(ctx)
		if err != nil {
			return nil, err
		}
		for _, def := range tools {
			if err := add(def, r.up.Name, r, r.up.Tools, r.up.PathArgs); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// isApproved reports whether e may be called, re-reading the pin store for
// a blocked tool so that an approval takes effect without a restart.
func (p *Proxy) isApproved(e *entry) bool {
	if e.approved.Load() {
		return true
	}
	if p.pins.recheck(e.key, e.hash) {
		e.approved.Store(true)
		return true
	}
	return false
}
