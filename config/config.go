// Package config reads the gateway's one YAML file and checks it before
// anything starts. Every error names the field it is about. Secrets are
// never in the file: fields ending in _env name the environment variable
// that holds them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid config")

// Config is the whole file.
type Config struct {
	Vault    string `yaml:"vault"`     // host folder holding every workspace
	StateDir string `yaml:"state_dir"` // store and, by default, the audit log
	Policies string `yaml:"policies"`  // policy folder
	// PolicyTimeout is the deadline of one policy decision (default
	// DefaultPolicyTimeout). A decision past it is denied as overloaded
	// and the user is asked to try again.
	PolicyTimeout time.Duration         `yaml:"policy_timeout"`
	Connectors    map[string]*Connector `yaml:"connectors"`
	Users         map[string]User       `yaml:"users"`
	Roles         map[string]Role       `yaml:"roles"`
	Workspaces    map[string]Workspace  `yaml:"workspaces"`
	Audit         Audit                 `yaml:"audit"`
	Admin         Admin                 `yaml:"admin"`
	Model         Model                 `yaml:"model"`
	Runtime       Runtime               `yaml:"runtime"`
	MCP           MCP                   `yaml:"mcp"`
}

// Connector is one chat bot. The policy-relevant fields mirror the guide's
// connectors; the rest say how to reach the platform.
type Connector struct {
	Type              string   `yaml:"type"` // telegram, discord, matrix, local
	Public            bool     `yaml:"public"`
	AllowedUsers      []string `yaml:"allowed_users"` // platform user IDs
	Owners            []string `yaml:"owners"`        // platform user IDs
	DefaultTrustLevel string   `yaml:"default_trust_level"`
	AllowDirect       bool     `yaml:"allow_direct"`
	AllowHooks        bool     `yaml:"allow_hooks"`
	NetworkEnabled    bool     `yaml:"network_enabled"`
	ReadOnly          bool     `yaml:"read_only"`
	RequireMention    *bool    `yaml:"require_mention"`
	Pairing           *bool    `yaml:"pairing"`
	SharedChatSession bool     `yaml:"shared_chat_sessions"`
	Workspace         string   `yaml:"workspace"`
	DefaultRole       string   `yaml:"default_role"`
	// Agent runs this connector's turns (see Runtime.Agent); a role's
	// agent wins over it.
	Agent string `yaml:"agent"`

	TokenEnv      string `yaml:"token_env"`          // telegram, discord: bot token
	APIEndpoint   string `yaml:"api_endpoint"`       // telegram: Bot API base URL
	WebhookListen string `yaml:"webhook_listen"`     // telegram: webhook mode
	WebhookSecret string `yaml:"webhook_secret_env"` // env var name
	WebhookURL    string `yaml:"webhook_url"`        // telegram: registered with setWebhook
	// DropPendingUpdates skips Telegram updates queued while the gateway
	// was down (default true: nobody gets answers to stale messages).
	DropPendingUpdates *bool  `yaml:"drop_pending_updates"`
	Homeserver         string `yaml:"homeserver_url"`   // matrix
	UserID             string `yaml:"user_id"`          // matrix: the bot's MXID
	AccessTokenEnv     string `yaml:"access_token_env"` // matrix
	Encryption         bool   `yaml:"encryption"`       // matrix: E2EE
	// CryptoStore is the Matrix E2EE device's SQLite store (keys, olm and
	// megolm sessions, sync position); default
	// <state_dir>/matrix-crypto/<connector>.db (see CryptoStorePath).
	CryptoStore string `yaml:"crypto_store"`
	// PickleKeyEnv names the variable holding the key that encrypts the
	// store's keys (required with encryption; at least 32 bytes).
	PickleKeyEnv string `yaml:"pickle_key_env"`
	// RecoveryKeyEnv names the variable holding the bot account's recovery
	// key: with it the bot cross-signs its own device at start.
	RecoveryKeyEnv string `yaml:"recovery_key_env"`
	Listen         string `yaml:"listen"` // local: HTTP listener
	// Socket is the local connector's unix-socket listener (mode 0600,
	// peer uid checked and logged): the alternative to token_env for a
	// local connector that can grant owner or direct trust.
	Socket string `yaml:"socket"`
}

// CryptoStorePath is where a Matrix connector named name keeps its E2EE
// store: crypto_store, or <state_dir>/matrix-crypto/<name>.db.
func (c *Config) CryptoStorePath(name string) string {
	if k := c.Connectors[name]; k != nil && k.CryptoStore != "" {
		return k.CryptoStore
	}
	return filepath.Join(c.StateDir, "matrix-crypto", name+".db")
}

// LocalGrantsTrust reports why a local connector could hand a caller owner
// role or direct trust ("" if it cannot). Such a connector must
// authenticate its callers (token_env or socket): a loopback port alone
// admits every process on the host.
func (c *Config) LocalGrantsTrust(k *Connector) string {
	switch {
	case len(k.Owners) > 0:
		return "owners is set"
	case k.AllowDirect:
		return "allow_direct is true"
	case k.DefaultTrustLevel == "direct":
		return "default_trust_level is direct"
	case k.DefaultRole == "owner":
		return "default_role is owner"
	}
	for _, id := range sortedNames(c.Users) {
		if strings.HasPrefix(id, "local:") && c.Users[id].Role == "owner" {
			return "users." + id + " has role owner"
		}
	}
	return ""
}

// User is an identity's standing, keyed by "<type>:<platform id>".
type User struct {
	Role      string `yaml:"role"`
	Workspace string `yaml:"workspace"`
	Blocked   bool   `yaml:"blocked"`
}

// Role carries the limits and permissions policy reads for a role. Zero
// values mean "the policy's built-in default for this role".
type Role struct {
	Models              []string `yaml:"models" json:"models,omitempty"`
	TokensPerDay        int64    `yaml:"tokens_per_day" json:"tokens_per_day,omitempty"`
	MessagesPerMinute   float64  `yaml:"messages_per_minute" json:"messages_per_minute,omitempty"`
	MessageBurst        float64  `yaml:"message_burst" json:"message_burst,omitempty"`
	ToolCallsPerMinute  float64  `yaml:"tool_calls_per_minute" json:"tool_calls_per_minute,omitempty"`
	ToolCallBurst       float64  `yaml:"tool_call_burst" json:"tool_call_burst,omitempty"`
	ModelCallsPerMinute float64  `yaml:"model_calls_per_minute" json:"model_calls_per_minute,omitempty"`
	ModelCallBurst      float64  `yaml:"model_call_burst" json:"model_call_burst,omitempty"`
	Network             *bool    `yaml:"network" json:"network,omitempty"`
	ReadOnly            *bool    `yaml:"read_only" json:"read_only,omitempty"`
	Tools               []string `yaml:"tools" json:"tools,omitempty"`
	EgressHosts         []string `yaml:"egress_hosts" json:"egress_hosts,omitempty"`
	MemoryMB            int64    `yaml:"memory_mb" json:"memory_mb,omitempty"`
	CPUs                float64  `yaml:"cpus" json:"cpus,omitempty"`
	PIDs                int64    `yaml:"pids" json:"pids,omitempty"`
	TmpfsMB             int64    `yaml:"tmpfs_mb" json:"tmpfs_mb,omitempty"`
	TurnTimeoutSeconds  float64  `yaml:"turn_timeout_seconds" json:"turn_timeout_seconds,omitempty"`
	// RuntimeClass is the sandbox's OCI runtime for this role: runc or
	// gvisor (policy default: gvisor for guests, runc for members and
	// owners; public connectors always gvisor).
	RuntimeClass string `yaml:"runtime_class" json:"runtime_class,omitempty"`
	// DiskMB caps the size of this role's workspaces in MiB, enforced by
	// the filesystem (policy default per role; see docs/runtime.md).
	DiskMB *int64 `yaml:"disk_mb" json:"disk_mb,omitempty"`
	// RequireToolApproval: a tool that appears on an approved MCP server
	// waits for `parachute mcp approve` for this role (always so on public
	// connectors).
	RequireToolApproval bool `yaml:"require_tool_approval" json:"require_tool_approval,omitempty"`
	// EgressRequireSNI: a CONNECT tunnel of this role's sessions must open
	// with a TLS ClientHello whose server name is the host that was
	// decided (policies read it as egress_require_sni).
	EgressRequireSNI *bool `yaml:"egress_require_sni" json:"egress_require_sni,omitempty"`
	// EgressPorts are the ports egress_hosts may be reached on (policy
	// default 80 and 443).
	EgressPorts []int `yaml:"egress_ports" json:"egress_ports,omitempty"`
	// Agent runs this role's turns (see Runtime.Agent), over the
	// connector's. Not a policy input: the walls and every call's
	// decision are the same whichever agent runs.
	Agent string `yaml:"agent" json:"-"`
}

// Workspace is a shared folder and who may use it.
type Workspace struct {
	Members         []string `yaml:"members" json:"members"`
	ReadOnlyMembers []string `yaml:"read_only_members" json:"read_only_members"`
	ReadOnly        bool     `yaml:"read_only" json:"read_only"`
}

// Audit configures the audit log.
type Audit struct {
	Dir        string `yaml:"dir"`
	MaxBytes   int64  `yaml:"max_bytes"`
	RecordText bool   `yaml:"record_text"` // record message text (off by default)
	// KeyFile is the ed25519 key that signs checkpoints, created (0600, with
	// its .pub beside it) on first start; it must not be inside dir
	// (default <state_dir>/audit-key).
	KeyFile string `yaml:"key_file"`
	// CheckpointEvery is the most records between two signed checkpoints
	// (default 1000); CheckpointInterval the longest a record stays unsigned
	// (default 60s).
	CheckpointEvery    uint64        `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
}

// Admin configures the metrics and health listener.
type Admin struct {
	Listen string `yaml:"listen"`
}

// Model configures the model provider the gateway forwards to.
type Model struct {
	Provider  string `yaml:"provider"` // none, openai, anthropic
	BaseURL   string `yaml:"base_url"`
	APIKeyEnv string `yaml:"api_key_env"`
	Model     string `yaml:"model"`
}

// Runtime configures where sessions run.
type Runtime struct {
	Socket    string `yaml:"containerd_socket"`
	Namespace string `yaml:"namespace"`
	Image     string `yaml:"image"`
	// AgentCommand is run in the sandbox for each turn (default
	// ["/parachute", "agent"]); an operator's own agent in their own image
	// honours the contract in docs/agent.md.
	AgentCommand []string `yaml:"agent_command"`
	// Agent is the agent every turn runs unless a connector or role names
	// another: parachute (the reference agent, default), claude-code or
	// codex (the real CLI in the image, adapted: docs/agent.md), or
	// command (agent_command; the default when agent_command is set).
	Agent string `yaml:"agent"`
	// AgentBuiltinTools are the real agents' own tools enabled (Claude
	// Code's Read, Bash, Edit, …); default none, so the gateway's MCP
	// tools are the only ones. They act inside the sandbox only.
	AgentBuiltinTools []string `yaml:"agent_builtin_tools"`
	// WarmPool keeps this many pre-started sandboxes per sandbox profile
	// so a new session skips the container start (default 0: off).
	WarmPool int `yaml:"warm_pool"`
	// WarmPoolMax lets a profile's pool grow under a burst of new
	// sessions, up to this many sandboxes (default warm_pool: fixed);
	// it shrinks back to warm_pool after 10 s without a new session.
	WarmPoolMax int `yaml:"warm_pool_max"`
	// IdleTimeout stops a session's sandbox after no turn has run in it
	// for this long (default 10m, at least 30s); the session and its
	// history survive, and the next message starts a new sandbox. A
	// sandbox with a turn in flight is never idle.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// InitExec runs each turn of a runc session sandbox through the
	// sandbox's PID 1 over its control channel (default true); false is
	// the switch back to a runc exec per turn (slower; what gVisor and
	// upstream sandboxes always use).
	InitExec *bool `yaml:"init_exec"`
}

// InitExecOn says whether runtime.init_exec is on (the default).
func (r Runtime) InitExecOn() bool { return r.InitExec == nil || *r.InitExec }

// DefaultPolicyTimeout, MinPolicyTimeout and MaxPolicyTimeout bound
// policy_timeout (the default is the engine's own, engine.DefaultTimeout).
const (
	DefaultPolicyTimeout = 250 * time.Millisecond
	MinPolicyTimeout     = 10 * time.Millisecond
	MaxPolicyTimeout     = 10 * time.Second
)

// MaxWarmPoolMax bounds runtime.warm_pool_max.
const MaxWarmPoolMax = 64

// DefaultIdleTimeout and MinIdleTimeout bound runtime.idle_timeout.
const (
	DefaultIdleTimeout = 10 * time.Minute
	MinIdleTimeout     = 30 * time.Second
)

// MCP lists upstream MCP servers besides the built-in vault server.
type MCP struct {
	Upstreams []Upstream `yaml:"upstreams"`
}

// Upstream is one MCP server: a command (stdio) or a URL (streamable HTTP).
type Upstream struct {
	Name    string            `yaml:"name"`
	Command []string          `yaml:"command"`
	URL     string            `yaml:"url"`
	Tools   map[string]string `yaml:"tools"` // tool name -> read|write|exec
	// OnHost runs command on the host instead of in a sandbox per session
	// (code outside the walls; refused when a connector is public).
	OnHost bool `yaml:"on_host"`
	// Image is the sandbox image command runs in (default runtime.image).
	Image string `yaml:"image"`
}

// Load reads, decodes and validates the file at path. A file that holds
// secret references must not be readable by others (checkPerm).
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := checkPerm(c, st.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// checkPerm refuses a world-readable or world-writable config that names
// secrets: whoever can read it learns where the tokens are, and whoever can
// write it can point the gateway anywhere.
func checkPerm(c *Config, perm fs.FileMode) error {
	if perm&0o002 != 0 {
		return fmt.Errorf("%w: the file is world-writable (mode %04o); chmod o-w it", ErrInvalid, perm)
	}
	if perm&0o004 != 0 && c.namesSecrets() {
		return fmt.Errorf("%w: the file names secrets and is world-readable (mode %04o); chmod o-r it", ErrInvalid, perm)
	}
	return nil
}

func (c *Config) namesSecrets() bool {
	if c.Model.APIKeyEnv != "" {
		return true
	}
	for _, k := range c.Connectors {
		if k.TokenEnv != "" || k.AccessTokenEnv != "" || k.WebhookSecret != "" {
			return true
		}
	}
	return false
}

// Parse decodes and validates a config. Unknown fields are errors: a typo
// must not silently turn a setting off.
func Parse(b []byte) (*Config, error) {
	var c Config
	if err := strictBooleans(b); err != nil { // checks.go
		return nil, fmt.Errorf("%w:\n  %w", ErrInvalid, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.StateDir == "" {
		c.StateDir = "/var/lib/parachute"
	}
	if c.Policies == "" {
		c.Policies = "policies"
	}
	if c.Audit.Dir == "" {
		c.Audit.Dir = strings.TrimRight(c.StateDir, "/") + "/audit"
	}
	if c.Audit.KeyFile == "" {
		c.Audit.KeyFile = strings.TrimRight(c.StateDir, "/") + "/audit-key"
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = "127.0.0.1:9464"
	}
	if c.Model.Provider == "" {
		c.Model.Provider = "none"
	}
	if c.Runtime.IdleTimeout == 0 {
		c.Runtime.IdleTimeout = DefaultIdleTimeout
	}
	if c.PolicyTimeout == 0 {
		c.PolicyTimeout = DefaultPolicyTimeout
	}
	if c.Runtime.Namespace == "" {
		c.Runtime.Namespace = "parachute"
	}
	for _, k := range c.Connectors {
		if k == nil {
			continue
		}
		if k.DefaultTrustLevel == "" {
			k.DefaultTrustLevel = "sandboxed"
		}
		if k.Type == "local" && k.Listen == "" && k.Socket == "" {
			k.Listen = "127.0.0.1:8765"
		}
	}
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envRE     = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
	idRE      = regexp.MustCompile(`^(telegram|discord|matrix|local):.+$`)
	platforms = map[string]bool{"telegram": true, "discord": true, "matrix": true, "local": true}
)

// Validate checks the whole config and returns every problem found, each
// naming its field, joined into one error wrapping ErrInvalid.
func (c *Config) Validate() error {
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, field+": "+fmt.Sprintf(format, args...))
	}
	if c.Vault == "" {
		bad("vault", "required: the folder holding the workspaces")
	}
	if len(c.Connectors) == 0 {
		bad("connectors", "at least one connector is required")
	}
	for _, name := range sortedNames(c.Connectors) {
		k := c.Connectors[name]
		f := "connectors." + name
		if !nameRE.MatchString(name) {
			bad(f, "name must be lowercase letters, digits, '-' or '_'")
		}
		if k == nil {
			bad(f, "empty connector")
			continue
		}
		if !platforms[k.Type] {
			bad(f+".type", "%q is not one of telegram, discord, matrix, local", k.Type)
		}
		switch k.DefaultTrustLevel {
		case "sandboxed":
		case "direct":
			if k.Public {
				bad(f+".default_trust_level", "direct trust on a public connector is never allowed (direct-trust-public-bot): anyone could run code on this host")
			} else if !k.AllowDirect {
				bad(f+".default_trust_level", "direct needs allow_direct: true, and applies only to owners")
			}
		default:
			bad(f+".default_trust_level", "%q is not sandboxed or direct", k.DefaultTrustLevel)
		}
		if k.Public && k.AllowDirect {
			bad(f+".allow_direct", "a public connector can never allow direct trust")
		}
		if k.Public && k.AllowHooks {
			bad(f+".allow_hooks", "a public connector can never run vault hooks")
		}
		if k.AllowHooks && !k.AllowDirect {
			bad(f+".allow_hooks", "hooks run only for direct sessions; set allow_direct too or remove allow_hooks")
		}
		if !k.Public && len(k.AllowedUsers) == 0 && len(k.Owners) == 0 && (k.Pairing != nil && !*k.Pairing) {
			bad(f, "a private connector with no allowed_users, no owners and pairing off admits nobody")
		}
		for i, id := range append(append([]string{}, k.AllowedUsers...), k.Owners...) {
			if strings.TrimSpace(id) == "" || strings.Contains(id, ":") && k.Type != "matrix" {
				bad(fmt.Sprintf("%s.allowed_users/owners[%d]", f, i), "%q is not a platform user ID (give the bare ID, e.g. 123456789)", id)
			}
		}
		for field, env := range map[string]string{"token_env": k.TokenEnv, "access_token_env": k.AccessTokenEnv, "webhook_secret_env": k.WebhookSecret,
			"pickle_key_env": k.PickleKeyEnv, "recovery_key_env": k.RecoveryKeyEnv} {
			if env != "" && !envRE.MatchString(env) {
				bad(f+"."+field, "%q is not an environment variable name; the secret itself never goes in the file", env)
			}
		}
		switch k.Type {
		case "telegram", "discord":
			if k.TokenEnv == "" {
				bad(f+".token_env", "required: the environment variable holding the bot token")
			}
		case "matrix":
			if k.Homeserver == "" {
				bad(f+".homeserver_url", "required")
			}
			if k.UserID == "" {
				bad(f+".user_id", "required: the bot's Matrix ID")
			}
			if k.AccessTokenEnv == "" {
				bad(f+".access_token_env", "required: the environment variable holding the access token")
			}
		}
		if k.Type == "local" {
			if why := c.LocalGrantsTrust(k); why != "" && k.TokenEnv == "" && k.Listen != "" {
				bad(f+".token_env", "required: %s, so this local connector can grant owner or direct trust and a loopback port alone would hand it to every process on the host; set token_env to a variable holding a bearer token (e.g. export PARACHUTE_LOCAL_TOKEN=$(openssl rand -hex 32)), or replace listen with socket: PATH (a unix socket, mode 0600)", why)
			}
		} else if k.Socket != "" {
			bad(f+".socket", "only a local connector listens on a unix socket")
		}
		switch {
		case k.Encryption && k.Type != "matrix":
			bad(f+".encryption", "only a matrix connector has end-to-end encryption")
		case k.Encryption:
			if k.PickleKeyEnv == "" {
				bad(f+".pickle_key_env", "required with encryption: true: the environment variable holding the key that encrypts the bot's device keys at rest (at least 32 bytes, e.g. export PARACHUTE_MATRIX_PICKLE_KEY=$(openssl rand -hex 32)); keep it: without it the device is lost")
			}
			if k.CryptoStore != "" && !filepath.IsAbs(k.CryptoStore) {
				bad(f+".crypto_store", "%q is not an absolute path", k.CryptoStore)
			}
		default:
			for field, v := range map[string]string{"crypto_store": k.CryptoStore, "pickle_key_env": k.PickleKeyEnv, "recovery_key_env": k.RecoveryKeyEnv} {
				if v != "" {
					bad(f+"."+field, "only for a matrix connector with encryption: true")
				}
			}
		}
		if k.Workspace != "" {
			if _, ok := c.Workspaces[k.Workspace]; !ok {
				bad(f+".workspace", "%q is not a workspace in workspaces", k.Workspace)
			}
		}
	}
	for _, id := range sortedNames(c.Users) {
		u := c.Users[id]
		if !idRE.MatchString(id) {
			bad("users."+id, "key must be an identity <type>:<platform user id>, e.g. telegram:123456789")
		}
		if u.Workspace != "" {
			if _, ok := c.Workspaces[u.Workspace]; !ok {
				bad("users."+id+".workspace", "%q is not a workspace in workspaces", u.Workspace)
			}
		}
	}
	for _, slug := range sortedNames(c.Workspaces) {
		if !nameRE.MatchString(slug) {
			bad("workspaces."+slug, "slug must be lowercase letters, digits, '-' or '_'")
		}
		w := c.Workspaces[slug]
		for i, id := range append(append([]string{}, w.Members...), w.ReadOnlyMembers...) {
			if !idRE.MatchString(id) {
				bad(fmt.Sprintf("workspaces.%s.members[%d]", slug, i), "%q is not an identity <type>:<platform user id>", id)
			}
		}
	}
	switch c.Model.Provider {
	case "none":
	case "openai", "anthropic":
		if c.Model.APIKeyEnv != "" && !envRE.MatchString(c.Model.APIKeyEnv) {
			bad("model.api_key_env", "%q is not an environment variable name", c.Model.APIKeyEnv)
		}
		if c.Model.Model == "" {
			bad("model.model", "required when a provider is set")
		}
	default:
		bad("model.provider", "%q is not none, openai or anthropic", c.Model.Provider)
	}
	c.validateAgents(bad)
	if c.Runtime.WarmPool < 0 || c.Runtime.WarmPool > 16 {
		bad("runtime.warm_pool", "%d is not between 0 and 16", c.Runtime.WarmPool)
	}
	switch wp, mx := c.Runtime.WarmPool, c.Runtime.WarmPoolMax; {
	case mx == 0:
	case mx < 0 || mx > MaxWarmPoolMax:
		bad("runtime.warm_pool_max", "%d is not between warm_pool and %d; each pooled sandbox holds host memory while it waits", mx, MaxWarmPoolMax)
	case wp == 0:
		bad("runtime.warm_pool_max", "%d without a warm pool: set runtime.warm_pool (at least 1) too, or remove warm_pool_max", mx)
	case mx < wp:
		bad("runtime.warm_pool_max", "%d is below runtime.warm_pool %d: give at least warm_pool, or remove it for a fixed pool", mx, wp)
	}
	if c.PolicyTimeout < 0 || (c.PolicyTimeout > 0 && (c.PolicyTimeout < MinPolicyTimeout || c.PolicyTimeout > MaxPolicyTimeout)) {
		bad("policy_timeout", "%s: give a duration between %s and %s (default %s); a decision past it is denied as overloaded", c.PolicyTimeout, MinPolicyTimeout, MaxPolicyTimeout, DefaultPolicyTimeout)
	}
	if c.Runtime.IdleTimeout < 0 || (c.Runtime.IdleTimeout > 0 && c.Runtime.IdleTimeout < MinIdleTimeout) {
		bad("runtime.idle_timeout", "%s: give a duration of at least %s (default %s); each idle sandbox holds host memory until then", c.Runtime.IdleTimeout, MinIdleTimeout, DefaultIdleTimeout)
	}
	if c.Audit.CheckpointInterval < 0 || (c.Audit.CheckpointInterval > 0 && c.Audit.CheckpointInterval < time.Second) {
		bad("audit.checkpoint_interval", "%s: give a duration of at least 1s (default 60s); the timer also retries a failed audit disk", c.Audit.CheckpointInterval)
	}
	for i, u := range c.MCP.Upstreams {
		f := fmt.Sprintf("mcp.upstreams[%d]", i)
		if !nameRE.MatchString(u.Name) || u.Name == "vault" {
			bad(f+".name", "%q must be a lowercase name other than the built-in 'vault'", u.Name)
		}
		if (len(u.Command) == 0) == (u.URL == "") {
			bad(f, "give exactly one of command (stdio) or url (streamable HTTP)")
		}
		if u.OnHost && len(u.Command) == 0 {
			bad(f+".on_host", "only a command upstream runs on the host")
		}
		if u.OnHost {
			for name, k := range c.Connectors {
				if k != nil && k.Public {
					bad(f+".on_host", "connector %s is public: an upstream on the host would run code nobody here wrote outside the walls for strangers; remove on_host (it then runs in a sandbox per session)", name)
				}
			}
		}
		for tool, class := range u.Tools {
			if class != "read" && class != "write" && class != "exec" {
				bad(f+".tools."+tool, "%q is not read, write or exec", class)
			}
		}
	}
	errs = append(errs, c.moreChecks()...) // checks.go
	if len(errs) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(errs, "\n  "))
	}
	return nil
}

// PolicyData is the operator data policies see as data.parachute.config.
// Membership lists (allowed_users, owners, members, read_only_members) are
// objects keyed by ID; the engine adds each role's defaults and per-second
// rates when the data is set (engine/data.go).
// Only what policy needs goes in: no endpoints, no secret names.
func (c *Config) PolicyData() map[string]any {
	connectors := map[string]any{}
	for name, k := range c.Connectors {
		m := map[string]any{
			"type":                 k.Type,
			"public":               k.Public,
			"allowed_users":        idSet(k.AllowedUsers),
			"owners":               idSet(k.Owners),
			"default_trust_level":  k.DefaultTrustLevel,
			"allow_direct":         k.AllowDirect,
			"allow_hooks":          k.AllowHooks,
			"network_enabled":      k.NetworkEnabled,
			"read_only":            k.ReadOnly,
			"shared_chat_sessions": k.SharedChatSession,
		}
		if k.RequireMention != nil {
			m["require_mention"] = *k.RequireMention
		}
		if k.Pairing != nil {
			m["pairing"] = *k.Pairing
		}
		if k.Workspace != "" {
			m["workspace"] = k.Workspace
		}
		if k.DefaultRole != "" {
			m["default_role"] = k.DefaultRole
		}
		connectors[name] = m
	}
	users := map[string]any{}
	for id, u := range c.Users {
		m := map[string]any{"blocked": u.Blocked}
		if u.Role != "" {
			m["role"] = u.Role
		}
		if u.Workspace != "" {
			m["workspace"] = u.Workspace
		}
		users[id] = m
	}
	roles := map[string]any{}
	for name, r := range c.Roles {
		roles[name] = r // JSON tags with omitempty: unset fields keep the policy default
	}
	workspaces := map[string]any{}
	for slug, w := range c.Workspaces {
		workspaces[slug] = map[string]any{
			"members":           idSet(w.Members),
			"read_only_members": idSet(w.ReadOnlyMembers),
			"read_only":         w.ReadOnly,
		}
	}
	return map[string]any{"connectors": connectors, "users": users, "roles": roles, "workspaces": workspaces}
}

// idSet is a membership list as policy reads it: an object keyed by ID,
// {"123": true}, so a decision looks an ID up instead of scanning the list.
func idSet(ids []string) map[string]any {
	out := make(map[string]any, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out
}

func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// UnmarshalYAML lets IDs be written as YAML numbers (allowed_users:
// [123456789]) without losing digits: they are taken as written.
func (k *Connector) UnmarshalYAML(n *yaml.Node) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if (key.Value == "allowed_users" || key.Value == "owners") && val.Kind == yaml.SequenceNode {
			for _, item := range val.Content {
				if item.Kind == yaml.ScalarNode && item.Tag == "!!int" {
					if _, err := strconv.ParseUint(item.Value, 10, 64); err != nil {
						return fmt.Errorf("line %d: %s: %q is not a user ID", item.Line, key.Value, item.Value)
					}
					item.Tag = "!!str"
				}
			}
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if key := n.Content[i]; !connectorFields[key.Value] {
			return fmt.Errorf("line %d: field %s not found in connector", key.Line, key.Value)
		}
	}
	type plain Connector
	return n.Decode((*plain)(k))
}

// connectorFields are the keys a connector may have (node.Decode does not
// inherit the decoder's KnownFields).
var connectorFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[Connector]()
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("yaml"); tag != "" {
			m[strings.Split(tag, ",")[0]] = true
		}
	}
	return m
}()

// Agent kinds (runtime.agent, connectors.<name>.agent, roles.<role>.agent).
const (
	AgentParachute  = "parachute"
	AgentClaudeCode = "claude-code"
	AgentCodex      = "codex"
	AgentCommand    = "command"
)

// AgentFor is the agent kind a turn on connector by role runs: the role's,
// else the connector's, else runtime.agent, else command when
// runtime.agent_command is set, else parachute.
func (c *Config) AgentFor(connector, role string) string {
	if r, ok := c.Roles[role]; ok && r.Agent != "" {
		return r.Agent
	}
	if k := c.Connectors[connector]; k != nil && k.Agent != "" {
		return k.Agent
	}
	if c.Runtime.Agent != "" {
		return c.Runtime.Agent
	}
	if len(c.Runtime.AgentCommand) > 0 {
		return AgentCommand
	}
	return AgentParachute
}

// validateAgents checks every agent named: a known kind, and the model
// API that agent speaks.
func (c *Config) validateAgents(bad func(field, format string, args ...any)) {
	check := func(field, kind string) {
		switch kind {
		case "", AgentParachute:
		case AgentCommand:
			if len(c.Runtime.AgentCommand) == 0 {
				bad(field, "command needs runtime.agent_command (the program in the sandbox image that honours docs/agent.md)")
			}
		case AgentClaudeCode:
			if c.Model.Provider != "anthropic" {
				bad(field, "claude-code speaks the Anthropic Messages API: set model.provider: anthropic (it is %q)", c.Model.Provider)
			}
		case AgentCodex:
			if c.Model.Provider != "openai" {
				bad(field, "codex speaks the OpenAI Responses API: set model.provider: openai (it is %q)", c.Model.Provider)
			}
		default:
			bad(field, "%q is not parachute, claude-code, codex or command", kind)
		}
	}
	check("runtime.agent", c.Runtime.Agent)
	for _, name := range sortedNames(c.Connectors) {
		if k := c.Connectors[name]; k != nil {
			check("connectors."+name+".agent", k.Agent)
		}
	}
	for _, name := range sortedNames(c.Roles) {
		check("roles."+name+".agent", c.Roles[name].Agent)
	}
	for i, t := range c.Runtime.AgentBuiltinTools {
		if !toolNameRE.MatchString(t) {
			bad(fmt.Sprintf("runtime.agent_builtin_tools[%d]", i), "%q is not a tool name (letters, digits, _ and -)", t)
		}
	}
}

var toolNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)
