package mcpproxy

import "github.com/parachute-gateway/parachute/config"

// UpstreamsFromConfig turns the config's mcp.upstreams into Upstreams.
func UpstreamsFromConfig(c config.MCP) []Upstream {
	out := make([]Upstream, 0, len(c.Upstreams))
	for _, u := range c.Upstreams {
		out = append(out, Upstream{Name: u.Name, Command: u.Command, URL: u.URL, Tools: u.Tools,
			OnHost: u.OnHost, Image: u.Image})
	}
	return out
}
