package engine

import (
	"strconv"

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

func (b *Binding) object() ast.Value {
	return ast.NewObject(
		item("role", ast.String(b.Role)),
		item("workspace", ast.String(b.Workspace)),
		item("source", ast.String(b.Source)),
	)
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
func (m MessageInput) Value() ast.Value {
	obj := ast.NewObject(
		item("connector", ast.String(m.Connector)),
		item("connector_type", ast.String(m.ConnectorType)),
		item("sender", ast.NewObject(
			item("id", ast.String(m.Sender.ID)),
			item("platform_id", ast.String(m.Sender.PlatformID)),
			item("display_name", ast.String(m.Sender.DisplayName)),
		)),
		item("chat", ast.NewObject(
			item("id", ast.String(m.Chat.ID)),
			item("kind", ast.String(m.Chat.Kind)),
		)),
		item("mentioned", ast.Boolean(m.Mentioned)),
		item("unverified", ast.Boolean(m.Unverified)),
		item("command", ast.String(m.Command)),
		item("text_length", astNumber(int64(m.TextLength))),
	)
	if m.Binding != nil {
		obj.Insert(ast.InternedTerm("binding"), ast.NewTerm(m.Binding.object()))
	}
	if m.RequestedTrustLevel != "" {
		obj.Insert(ast.InternedTerm("requested_trust_level"), ast.StringTerm(m.RequestedTrustLevel))
	}
	if m.RequestedWorkspace != "" {
		obj.Insert(ast.InternedTerm("requested_workspace"), ast.StringTerm(m.RequestedWorkspace))
	}
	return obj
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

func (s SessionFacts) object() ast.Value {
	obj := ast.NewObject(
		item("id", ast.String(s.ID)),
		item("turn_id", ast.String(s.TurnID)),
		item("identity", ast.String(s.Identity)),
		item("connector", ast.String(s.Connector)),
		item("connector_type", ast.String(s.ConnectorType)),
		item("role", ast.String(s.Role)),
		item("trust_level", ast.String(s.TrustLevel)),
		item("workspace", ast.String(s.Workspace)),
		item("read_only", ast.Boolean(s.ReadOnly)),
		item("network", ast.Boolean(s.Network)),
		item("unverified", ast.Boolean(s.Unverified)),
	)
	if s.Binding != nil {
		obj.Insert(ast.InternedTerm("binding"), ast.NewTerm(s.Binding.object()))
	}
	return obj
}

// SessionInput is the input of parachute.session: the facts of the session
// about to be started, from which policy picks the sandbox profile.
type SessionInput struct {
	Session SessionFacts
}

// Entry implements Input.
func (SessionInput) Entry() Entry { return Session }

// Value implements Input.
func (s SessionInput) Value() ast.Value {
	return ast.NewObject(item("session", s.Session.object()))
}

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
	// OnHost: the tool's server is a command the operator runs on the
	// host (on_host), outside any sandbox.
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
func (t ToolInput) Value() ast.Value {
	paths := make([]*ast.Term, len(t.Paths))
	for i, p := range t.Paths {
		paths[i] = ast.NewTerm(ast.NewObject(
			item("arg", ast.String(p.Arg)),
			item("raw", ast.String(p.Raw)),
			item("resolved", ast.String(p.Resolved)),
			item("inside_workspace", ast.Boolean(p.InsideWorkspace)),
			item("access", ast.String(p.Access)),
			item("error", ast.String(p.Error)),
		))
	}
	obj := ast.NewObject(
		item("session", t.Session.object()),
		item("tool", ast.NewObject(
			item("name", ast.String(t.Tool.Name)),
			item("server", ast.String(t.Tool.Server)),
			item("access", ast.String(t.Tool.Access)),
			item("changed", ast.Boolean(t.Tool.Changed)),
			item("unapproved", ast.Boolean(t.Tool.Unapproved)),
			item("on_host", ast.Boolean(t.Tool.OnHost)),
		)),
		item("paths", ast.NewArray(paths...)),
	)
	if t.Invalid != nil {
		obj.Insert(ast.StringTerm("invalid"), ast.NewTerm(ast.NewObject(
			item("reason", ast.String(t.Invalid.Reason)),
			item("detail", ast.String(t.Invalid.Detail)),
			item("suppressed", astNumber(t.Invalid.Suppressed)),
		)))
	}
	return obj
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
func (m ModelInput) Value() ast.Value {
	return ast.NewObject(
		item("session", m.Session.object()),
		item("provider", ast.String(m.Provider)),
		item("model", ast.String(m.Model)),
		item("tokens_used_today", astNumber(m.TokensUsedToday)),
		item("tokens_requested", astNumber(m.TokensRequested)),
		item("provider_tools", astStrings(m.ProviderTools)),
		item("mcp_servers", astStrings(m.MCPServers)),
		item("betas", astStrings(m.Betas)),
	)
}

func astStrings(list []string) ast.Value {
	terms := make([]*ast.Term, len(list))
	for i, v := range list {
		terms[i] = ast.StringTerm(v)
	}
	return ast.NewArray(terms...)
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
func (e EgressInput) Value() ast.Value {
	return ast.NewObject(
		item("session", e.Session.object()),
		item("host", ast.String(e.Host)),
		item("port", astNumber(int64(e.Port))),
	)
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

func item(key string, v ast.Value) [2]*ast.Term {
	return ast.Item(ast.InternedTerm(key), ast.NewTerm(v))
}

func astNumber(n int64) ast.Value { return ast.Number(strconv.FormatInt(n, 10)) }
