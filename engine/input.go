package engine

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// Entry names a policy entry point: the Rego package data.parachute.<entry>
// whose rule `decision` is evaluated.
type Entry string

// The entry points every Parachute policy set provides. See policies/README.md
// for the input and output schema of each.
const (
	Message Entry = "message"
	Session Entry = "session"
	Tool    Entry = "tool"
	Model   Entry = "model"
	Egress  Entry = "egress"
)

// Entries lists the entry points the engine prepares a query for. An entry
// point whose package is absent from the policy set always denies with
// reason policy-error.
var Entries = []Entry{Message, Session, Tool, Model, Egress}

// Input is a typed request for one entry point. The concrete types in this
// file build the Rego input document directly as an AST value, so a decision
// never pays for a JSON round trip.
type Input interface {
	// Entry is the entry point this input is for.
	Entry() Entry
	// Value is the input document.
	Value() ast.Value
}

// Sender is who sent a chat message. ID is the identity
// "<connector-type>:<platform user id>"; DisplayName is for show only and
// never grants anything.
type Sender struct {
	ID          string
	PlatformID  string
	DisplayName string
}

// Chat is where a message was sent. Kind is "dm", "group" or "channel".
type Chat struct {
	ID   string
	Kind string
}

// Binding is what the gateway's store knows about an identity on one
// connector: a role granted by pairing or by an invite.
type Binding struct {
	Role      string
	Workspace string
	Source    string // "pairing" or "invite"
}

func (b *Binding) write(w *docWriter) {
	w.beginObject("binding")
	w.str("role", b.Role)
	w.str("workspace", b.Workspace)
	w.str("source", b.Source)
	w.end()
}

// MessageInput is the input of parachute.message.
type MessageInput struct {
	Connector     string // connector name, a key of data.parachute.config.connectors
	ConnectorType string // telegram, discord, matrix, local
	Sender        Sender
	Chat          Chat
	Mentioned     bool   // the bot was mentioned or replied to
	Unverified    bool   // the platform could not verify the sender (Matrix E2EE)
	Command       string // "start", "new", "whoami", "pair", "help" or ""
	TextLength    int
	Binding       *Binding
	// RequestedTrustLevel and RequestedWorkspace are what the message asks
	// for, if anything; policy decides whether it gets it.
	RequestedTrustLevel string
	RequestedWorkspace  string
}

// Entry implements Input.
func (MessageInput) Entry() Entry { return Message }

// Value implements Input.
func (m MessageInput) Value() ast.Value { return buildValue(m) }

func (m MessageInput) write(w *docWriter) {
	w.str("connector", m.Connector)
	w.str("connector_type", m.ConnectorType)
	w.beginObject("sender")
	w.str("id", m.Sender.ID)
	w.str("platform_id", m.Sender.PlatformID)
	w.str("display_name", m.Sender.DisplayName)
	w.end()
	w.beginObject("chat")
	w.str("id", m.Chat.ID)
	w.str("kind", m.Chat.Kind)
	w.end()
	w.boolean("mentioned", m.Mentioned)
	w.boolean("unverified", m.Unverified)
	w.str("command", m.Command)
	w.num("text_length", int64(m.TextLength))
	if m.Binding != nil {
		m.Binding.write(w)
	}
	if m.RequestedTrustLevel != "" {
		w.str("requested_trust_level", m.RequestedTrustLevel)
	}
	if m.RequestedWorkspace != "" {
		w.str("requested_workspace", m.RequestedWorkspace)
	}
}

// SessionFacts describe an established session; they are the result of an
// allowed message decision and travel with every later decision of the
// session.
type SessionFacts struct {
	ID            string
	TurnID        string
	Identity      string
	Connector     string
	ConnectorType string
	Role          string
	TrustLevel    string
	Workspace     string // vault-relative, e.g. "users/telegram%3A123" or "workspaces/team"
	ReadOnly      bool
	Network       bool
	Unverified    bool
	// Binding is the identity's pairing or invite binding on this
	// connector, if any; an invite can grant a shared workspace.
	Binding *Binding
}

// write puts the session object into the document. TurnID is not part of
// it: no rule reads it, and a per-turn ID would make every decision unique
// to the cache. The audit record takes it from the typed input.
func (s SessionFacts) write(w *docWriter) {
	w.beginObject("session")
	w.str("id", s.ID)
	w.str("identity", s.Identity)
	w.str("connector", s.Connector)
	w.str("connector_type", s.ConnectorType)
	w.str("role", s.Role)
	w.str("trust_level", s.TrustLevel)
	w.str("workspace", s.Workspace)
	w.boolean("read_only", s.ReadOnly)
	w.boolean("network", s.Network)
	w.boolean("unverified", s.Unverified)
	if s.Binding != nil {
		s.Binding.write(w)
	}
	w.end()
}

// SessionInput is the input of parachute.session: the facts of the session
// about to be started, from which policy picks the sandbox profile.
type SessionInput struct {
	Session SessionFacts
}

// Entry implements Input.
func (SessionInput) Entry() Entry { return Session }

// Value implements Input.
func (s SessionInput) Value() ast.Value { return buildValue(s) }

func (s SessionInput) write(w *docWriter) { s.Session.write(w) }

// Tool access classes.
const (
	AccessRead    = "read"
	AccessWrite   = "write"
	AccessExec    = "exec"
	AccessUnknown = "unknown"
)

// ToolFacts name the tool being called and its access class.
type ToolFacts struct {
	Name   string
	Server string
	Access string // read, write, exec or unknown
	// Changed: the tool's definition (name, description, schema) differs
	// from the one an operator approved (`parachute mcp approve`).
	Changed bool
	// OnHost: the tool's server runs outside the walls: a command the
	// operator runs on the host (on_host) or a server reached at a URL.
	OnHost bool
	// Unapproved: the tool was first seen on a server whose other tools
	// were already pinned; it waits for `parachute mcp approve` (policy
	// decides whether that blocks it).
	Unapproved bool
}

// CallError says why a tool call could not be read at all: arguments that
// are not one strict JSON object or name an argument the tool does not
// declare, a tool name the catalog does not have, a refused protocol
// message. Policy refuses such a call with Reason; the record keeps Detail.
type CallError struct {
	Reason string // invalid-arguments, no-such-tool, protocol-error
	Detail string
	// Suppressed counts earlier refusals of this session that were not
	// recorded one by one (a flood of garbage is summarised, not written
	// a million times).
	Suppressed int64
}

// PathFacts describe one path argument of a tool call after the Go side
// normalised and resolved it. Resolved is vault-relative, with symlinks
// resolved; policy decides on it.
type PathFacts struct {
	Arg             string // argument name: path, source, destination, paths[2], …
	Raw             string // the string the caller sent
	Resolved        string // vault-relative resolved path ("" when it could not be resolved)
	InsideWorkspace bool
	Access          string // what the call does to this path: read or write
	Error           string // why it could not be resolved, if it could not
}

// ToolInput is the input of parachute.tool.
type ToolInput struct {
	Session SessionFacts
	Tool    ToolFacts
	Paths   []PathFacts
	Invalid *CallError // nil for a call that could be read
}

// Entry implements Input.
func (ToolInput) Entry() Entry { return Tool }

// Value implements Input.
func (t ToolInput) Value() ast.Value { return buildValue(t) }

func (t ToolInput) write(w *docWriter) {
	t.Session.write(w)
	w.beginObject("tool")
	w.str("name", t.Tool.Name)
	w.str("server", t.Tool.Server)
	w.str("access", t.Tool.Access)
	w.boolean("changed", t.Tool.Changed)
	w.boolean("unapproved", t.Tool.Unapproved)
	w.boolean("on_host", t.Tool.OnHost)
	w.end()
	w.beginArray("paths")
	for _, p := range t.Paths {
		w.beginObject("")
		w.str("arg", p.Arg)
		w.str("raw", p.Raw)
		w.str("resolved", p.Resolved)
		w.boolean("inside_workspace", p.InsideWorkspace)
		w.str("access", p.Access)
		w.str("error", p.Error)
		w.end()
	}
	w.end()
	if t.Invalid != nil {
		w.beginObject("invalid")
		w.str("reason", t.Invalid.Reason)
		w.str("detail", t.Invalid.Detail)
		w.num("suppressed", t.Invalid.Suppressed)
		w.end()
	}
}

// ModelInput is the input of parachute.model.
type ModelInput struct {
	Session         SessionFacts
	Provider        string
	Model           string
	TokensUsedToday int64 // tokens this identity used since midnight UTC
	TokensRequested int64 // the call's worst case, reserved before it goes out
	// ProviderTools are the tool types the provider itself would run
	// (Anthropic web_search_*, web_fetch_*, code_execution_*, computer_*;
	// OpenAI web_search_options), MCPServers the URLs of Anthropic's MCP
	// connector, Betas the anthropic-beta header values.
	ProviderTools []string
	MCPServers    []string
	Betas         []string
}

// Entry implements Input.
func (ModelInput) Entry() Entry { return Model }

// Value implements Input.
func (m ModelInput) Value() ast.Value { return buildValue(m) }

func (m ModelInput) write(w *docWriter) {
	m.Session.write(w)
	w.str("provider", m.Provider)
	w.str("model", m.Model)
	w.num("tokens_used_today", m.TokensUsedToday)
	w.num("tokens_requested", m.TokensRequested)
	w.strs("provider_tools", m.ProviderTools)
	w.strs("mcp_servers", m.MCPServers)
	w.strs("betas", m.Betas)
}

// EgressInput is the input of parachute.egress: a sandbox asks the
// gateway's proxy for a connection to Host:Port.
type EgressInput struct {
	Session SessionFacts
	Host    string
	Port    int
}

// Entry implements Input.
func (EgressInput) Entry() Entry { return Egress }

// Value implements Input.
func (e EgressInput) Value() ast.Value { return buildValue(e) }

func (e EgressInput) write(w *docWriter) {
	e.Session.write(w)
	w.str("host", e.Host)
	w.num("port", int64(e.Port))
}

// RawInput is an input given as a generic document, as `parachute policy
// eval` reads it from a file. Value converts it on every call; typed inputs
// are faster.
type RawInput struct {
	For Entry
	Doc any
}

// Entry implements Input.
func (r RawInput) Entry() Entry { return r.For }

// Value implements Input. A document that cannot be converted becomes null,
// which every policy denies.
func (r RawInput) Value() ast.Value {
	v, err := ast.InterfaceToValue(r.Doc)
	if err != nil {
		return ast.Null{}
	}
	return v
}
