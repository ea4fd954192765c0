package sessions

// AgentChoice is the agent one turn runs, when Options.AgentFor picks one
// other than Options.Agent (config: a connector's or role's agent).
type AgentChoice struct {
	Args   []string // the command in a containerd sandbox
	Direct []string // the command on the host, for a direct session
	Env    []string // added to the turn's environment (never a secret)
}

// agentFor returns the command and extra environment of l's next turn.
func (m *Manager) agentFor(l *Live, args []string) ([]string, []string) {
	if m.opts.AgentFor == nil {
		return args, nil
	}
	c := m.opts.AgentFor(l.Facts())
	switch {
	case len(c.Args) == 0:
		return args, nil
	case l.Profile.Runtime == "direct" && len(c.Direct) > 0:
		return c.Direct, c.Env
	case l.Profile.Runtime == "direct":
		return args, nil
	}
	return c.Args, c.Env
}
