package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// BuiltinRoles are the roles policies/data.json defines; any other role
// must be defined under roles:, or it would quietly get guest's settings.
var BuiltinRoles = []string{"owner", "member", "guest"}

// RoleDefined reports whether role is built in or under roles:.
func (c *Config) RoleDefined(role string) bool {
	for _, r := range BuiltinRoles {
		if r == role {
			return true
		}
	}
	_, ok := c.Roles[role]
	return ok
}

var (
	telegramIDRE = regexp.MustCompile(`^[1-9][0-9]{0,19}$`)
	discordIDRE  = regexp.MustCompile(`^[1-9][0-9]{14,20}$`)
	matrixIDRE   = regexp.MustCompile(`^@[^:\s]+:[A-Za-z0-9.-]+(:[0-9]{1,5})?$`)
)

// PlatformIDProblem says why id cannot be a user ID on the platform
// ("" when it can): a Telegram ID is a number (from.id, never a
// @username), a Discord ID a snowflake, a Matrix ID @user:server. An ID
// of the wrong shape never matches anyone, so an owner written
// "@myname" on Telegram would silently be nobody.
func PlatformIDProblem(platform, id string) string {
	switch platform {
	case "telegram":
		if !telegramIDRE.MatchString(id) {
			return fmt.Sprintf("%q is not a Telegram user ID: give the numeric from.id (e.g. 123456789; message @userinfobot to learn yours), never a @username", id)
		}
	case "discord":
		if !discordIDRE.MatchString(id) {
			return fmt.Sprintf("%q is not a Discord user ID: give the numeric snowflake (e.g. 111222333444555666; Developer Mode, then Copy User ID)", id)
		}
	case "matrix":
		if !matrixIDRE.MatchString(id) {
			return fmt.Sprintf("%q is not a Matrix user ID: give @user:server (e.g. @alice:example.org)", id)
		}
	default:
		if strings.TrimSpace(id) == "" {
			return "an empty user ID matches nobody"
		}
	}
	return ""
}

// moreChecks are the checks that catch silent mistakes: IDs of the wrong
// shape, roles nobody defined, negative limits. Each problem names its
// field; Validate reports them with the rest.
func (c *Config) moreChecks() []string {
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, field+": "+fmt.Sprintf(format, args...))
	}
	for _, name := range sortedNames(c.Connectors) {
		k := c.Connectors[name]
		if k == nil || !platforms[k.Type] {
			continue
		}
		f := "connectors." + name
		for i, id := range k.Owners {
			if p := PlatformIDProblem(k.Type, id); p != "" {
				bad(fmt.Sprintf("%s.owners[%d]", f, i), "%s", p)
			}
		}
		for i, id := range k.AllowedUsers {
			if p := PlatformIDProblem(k.Type, id); p != "" {
				bad(fmt.Sprintf("%s.allowed_users[%d]", f, i), "%s", p)
			}
		}
		if k.DefaultRole != "" && !c.RoleDefined(k.DefaultRole) {
			bad(f+".default_role", "role %q is not defined: use owner, member, guest or define it under roles:", k.DefaultRole)
		}
	}
	identity := func(field, id string) {
		typ, rest, ok := strings.Cut(id, ":")
		if !ok || !platforms[typ] {
			return // the identity's own form is checked elsewhere
		}
		if p := PlatformIDProblem(typ, rest); p != "" {
			bad(field, "%s", p)
		}
	}
	for _, id := range sortedNames(c.Users) {
		identity("users."+id, id)
		if r := c.Users[id].Role; r != "" && !c.RoleDefined(r) {
			bad("users."+id+".role", "role %q is not defined: use owner, member, guest or define it under roles:", r)
		}
	}
	for _, slug := range sortedNames(c.Workspaces) {
		w := c.Workspaces[slug]
		for i, id := range w.Members {
			identity(fmt.Sprintf("workspaces.%s.members[%d]", slug, i), id)
		}
		for i, id := range w.ReadOnlyMembers {
			identity(fmt.Sprintf("workspaces.%s.read_only_members[%d]", slug, i), id)
		}
	}
	for _, name := range sortedNames(c.Roles) {
		negatives(reflect.ValueOf(c.Roles[name]), "roles."+name, bad)
		for i, p := range c.Roles[name].EgressPorts {
			if p < 1 || p > 65535 {
				bad(fmt.Sprintf("roles.%s.egress_ports[%d]", name, i), "%d is not a TCP port (1-65535)", p)
			}
		}
	}
	negatives(reflect.ValueOf(c.Audit), "audit", bad)
	return errs
}

// negatives reports every negative number in a struct of limits: a
// negative rate, budget or size is never meant, and policy would read it
// as it stands.
func negatives(v reflect.Value, prefix string, bad func(string, string, ...any)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			if f.Int() < 0 {
				bad(prefix+"."+name, "%d is negative: give 0 for the policy's default, or a positive limit", f.Int())
			}
		case reflect.Float64:
			if f.Float() < 0 {
				bad(prefix+"."+name, "%g is negative: give 0 for the policy's default, or a positive limit", f.Float())
			}
		}
	}
}

// strictBooleans refuses a boolean field whose value is not a YAML
// boolean: yaml.v3 takes "yes", "on", "y" (even quoted) as true, so
// `public: "yes"` would quietly make a connector public, and `public:
// "no"` private.
func strictBooleans(b []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return err
	}
	if len(root.Content) == 0 {
		return nil
	}
	var errs []string
	walkBooleans(root.Content[0], reflect.TypeFor[Config](), "", &errs)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n  "))
	}
	return nil
}

func walkBooleans(n *yaml.Node, t reflect.Type, path string, errs *[]string) {
	optional := false // a *bool may be left null: the default applies
	for t.Kind() == reflect.Pointer {
		t, optional = t.Elem(), true
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch t.Kind() {
	case reflect.Bool:
		if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!bool" && !(optional && n.ShortTag() == "!!null") {
			*errs = append(*errs, fmt.Sprintf("%s: line %d: %q is not a boolean: write true or false (unquoted)", strings.TrimPrefix(path, "."), n.Line, n.Value))
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
				fields[tag] = t.Field(i).Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if ft, ok := fields[n.Content[i].Value]; ok {
				walkBooleans(n.Content[i+1], ft, path+"."+n.Content[i].Value, errs)
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkBooleans(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value, errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			walkBooleans(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
}

// HostProblem is one reason this host cannot start the gateway with this
// config: Field names the setting, Problem what is wrong and Fix what to do.
type HostProblem struct{ Field, Problem, Fix string }

func (p HostProblem) String() string { return p.Field + ": " + p.Problem + "; " + p.Fix }

// CheckEnv reports every *_env setting whose variable is unset or empty,
// and a model provider's own endpoint without a key.
func (c *Config) CheckEnv(getenv func(string) string) []HostProblem {
	var out []HostProblem
	need := func(field, env, what string) {
		if env != "" && getenv(env) == "" {
			out = append(out, HostProblem{field, fmt.Sprintf("the variable %s is unset or empty", env),
				fmt.Sprintf("export %s=<%s> in the gateway's environment (e.g. /etc/parachute/env)", env, what)})
		}
	}
	for _, name := range sortedNames(c.Connectors) {
		k := c.Connectors[name]
		if k == nil {
			continue
		}
		f := "connectors." + name
		need(f+".token_env", k.TokenEnv, "the token")
		need(f+".access_token_env", k.AccessTokenEnv, "the access token")
		need(f+".webhook_secret_env", k.WebhookSecret, "the webhook secret")
	}
	if c.Model.Provider == "openai" || c.Model.Provider == "anthropic" {
		if c.Model.APIKeyEnv == "" && c.Model.BaseURL == "" {
			out = append(out, HostProblem{"model.api_key_env", "provider " + c.Model.Provider + " is set with no key: every model call would be refused upstream",
				"set api_key_env to the variable holding the key (or base_url for a keyless local server)"})
		}
		need("model.api_key_env", c.Model.APIKeyEnv, "the API key")
	}
	return out
}

// CheckVault reports a vault that is not an existing folder: a mistyped
// path would otherwise be created empty, and every user would start
// over in it.
func (c *Config) CheckVault() []HostProblem {
	st, err := os.Stat(c.Vault)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return []HostProblem{{"vault", c.Vault + " does not exist", "fix the path, or create it: install -d -m 0750 " + c.Vault}}
	case err != nil:
		return []HostProblem{{"vault", err.Error(), "make it readable by the gateway"}}
	case !st.IsDir():
		return []HostProblem{{"vault", c.Vault + " is not a folder", "point vault: at the folder holding the workspaces"}}
	}
	return nil
}

// Listeners are the TCP addresses the gateway will listen on, by field.
func (c *Config) Listeners() map[string]string {
	out := map[string]string{"admin.listen": c.Admin.Listen}
	for name, k := range c.Connectors {
		if k == nil {
			continue
		}
		if k.Listen != "" {
			out["connectors."+name+".listen"] = k.Listen
		}
		if k.WebhookListen != "" {
			out["connectors."+name+".webhook_listen"] = k.WebhookListen
		}
	}
	return out
}

// CheckPorts reports every listen address another process holds (or
// that cannot be listened on): a taken port stops the start instead of a
// connector retrying forever. Port 0 is always free.
func (c *Config) CheckPorts() []HostProblem {
	var out []HostProblem
	ls := c.Listeners()
	for _, field := range sortedNames(ls) {
		addr := ls[field]
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			out = append(out, HostProblem{field, fmt.Sprintf("cannot listen on %s: %v", addr, err),
				"stop what holds it (ss -ltnp 'sport = :" + portOf(addr) + "') or choose another address"})
			continue
		}
		ln.Close()
	}
	return out
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// Decode reads a config and fills its defaults without validating it,
// for `parachute doctor`, which reports every problem Validate finds as
// one check and goes on with the rest. Everything else uses Load or Parse.
func Decode(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	c.defaults()
	return &c, nil
}

// StrictBooleans reports the boolean fields written as something other
// than true or false (Parse refuses them).
func StrictBooleans(b []byte) error { return strictBooleans(b) }

// NamesSecrets reports whether the config names a secret's variable.
func (c *Config) NamesSecrets() bool { return c.namesSecrets() }
