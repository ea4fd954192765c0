package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/parachute-gateway/parachute/config"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/gateway"
)

// configChecks audit the gateway's config as the security guide's summary
// table and the start-up checks see it. Each check is its own function
// (others add theirs beside these). The config is returned, its paths
// absolute, for the host checks (nil if it cannot be read at all).
func configChecks(ctx context.Context, path, envFile string) ([]finding, *config.Config) {
	b, err := os.ReadFile(path)
	if err != nil {
		return []finding{{Check: "config", Status: statusFail, Detail: err.Error(), Fix: "pass --config FILE naming the gateway's config"}}, nil
	}
	var out []finding
	if err := config.StrictBooleans(b); err != nil {
		out = append(out, finding{Check: "config booleans", Status: statusFail, Detail: err.Error(), Fix: "write true or false, unquoted"})
	}
	cfg, err := config.Decode(b)
	if err != nil {
		return append(out, finding{Check: "config", Status: statusFail, Detail: err.Error(), Fix: "fix the YAML; every field is listed in docs/deploy.md and examples/*.yaml"}), nil
	}
	if err := absPaths(cfg); err != nil {
		return append(out, finding{Check: "config", Status: statusFail, Detail: err.Error()}), nil
	}
	out = append(out, doctorValidate(cfg)...)
	out = append(out, doctorConfigMode(path, cfg)...)
	out = append(out, doctorConnectors(cfg)...)
	out = append(out, doctorNetwork(cfg)...)
	out = append(out, doctorEnv(cfg, envFile)...)
	out = append(out, doctorMatrixE2EE(cfg)...) // doctor_matrix.go
	out = append(out, doctorVault(cfg)...)
	out = append(out, doctorStateDir(cfg)...)
	out = append(out, doctorPorts(ctx, path, cfg)...)
	out = append(out, doctorPolicies(ctx, cfg)...)
	out = append(out, doctorGrants(ctx, cfg)...)
	return out, cfg
}

// doctorValidate reports each problem the gateway's start would refuse,
// one finding per field.
func doctorValidate(cfg *config.Config) []finding {
	err := cfg.Validate()
	if err == nil {
		return []finding{{Check: "config", Status: statusOK, Detail: "valid: every role named is defined, IDs are shaped for their platform, no negative limit"}}
	}
	var out []finding
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasSuffix(l, config.ErrInvalid.Error()+":") {
			continue
		}
		field, problem, _ := strings.Cut(l, ": ")
		out = append(out, finding{Check: "config " + field, Status: statusFail, Detail: problem, Fix: "fix " + field + " in the config: the gateway refuses to start with it"})
	}
	return out
}

// doctorConfigMode: the config says where the secrets are and where
// everything is; nobody else may write it, and one that names secrets must
// not be readable by others.
func doctorConfigMode(path string, cfg *config.Config) []finding {
	st, err := os.Stat(path)
	if err != nil {
		return []finding{{Check: "config mode", Status: statusFail, Detail: err.Error()}}
	}
	perm := st.Mode().Perm()
	f := finding{Check: "config mode", Status: statusOK, Detail: fmt.Sprintf("%s is %04o", path, perm)}
	switch {
	case perm&0o022 != 0:
		f.Status, f.Fix = statusFail, "chmod go-w "+path+": whoever can write it can point the gateway anywhere"
	case perm&0o004 != 0 && cfg.NamesSecrets():
		f.Status, f.Fix = statusFail, "chmod o-r "+path+": it names the secrets' variables (the gateway refuses it)"
	case perm&0o044 != 0:
		f.Status, f.Fix = statusWarn, "chmod 600 "+path
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != 0 && int(sys.Uid) != os.Getuid() {
		f.Status = statusWarn
		f.Detail += fmt.Sprintf(", owned by uid %d", sys.Uid)
		f.Fix = "chown root " + path + " (or the gateway's user)"
	}
	return []finding{f}
}

// doctorConnectors rates each connector against the guide's summary
// table: private + sandboxed is safe, private + direct and public +
// sandboxed are risky (with what to check), public + direct is never
// allowed.
func doctorConnectors(cfg *config.Config) []finding {
	var out []finding
	for _, name := range sortedKeys(cfg.Connectors) {
		k := cfg.Connectors[name]
		if k == nil {
			continue
		}
		f := finding{Check: "connector " + name}
		direct := k.AllowDirect || k.DefaultTrustLevel == "direct"
		switch {
		case k.Public && direct:
			f.Status, f.Detail = statusFail, "public + direct: never (anyone could run code on this host)"
			f.Fix = "set allow_direct: false and default_trust_level: sandboxed, or make it private"
		case k.Public:
			f.Status, f.Detail = statusWarn, "public + sandboxed: risky (demo, non-sensitive vault)"
			var check []string
			if k.NetworkEnabled {
				check = append(check, "network_enabled is true: strangers' sessions can reach egress_hosts")
			}
			if !k.ReadOnly {
				check = append(check, "read_only is false: strangers can write their workspaces")
			}
			if k.RequireMention != nil && !*k.RequireMention {
				check = append(check, "require_mention is false: every group message reaches the agent")
			}
			if k.Workspace != "" {
				check = append(check, "workspace "+k.Workspace+" is shared with every stranger")
			}
			if r, ok := cfg.Roles["guest"]; !ok || r.MessagesPerMinute == 0 || r.TokensPerDay == 0 {
				check = append(check, "roles.guest sets no messages_per_minute/tokens_per_day of its own (the built-in defaults apply)")
			}
			if len(check) > 0 {
				f.Detail += "; check: " + strings.Join(check, "; ")
			}
			f.Fix = "keep nothing sensitive in the vault; set read_only: true and network_enabled: false unless needed; size roles.guest's limits"
		case direct:
			f.Status, f.Detail = statusWarn, "private + direct: risky (owners' sessions run on this host, outside the walls)"
			f.Fix = "only if you fully trust every owner: keep owners to yourself, or set allow_direct: false"
		default:
			f.Status, f.Detail = statusOK, "private + sandboxed: safe"
		}
		if !k.Public && len(k.AllowedUsers) == 0 && len(k.Owners) == 0 && (k.Pairing == nil || *k.Pairing) {
			f.Detail += "; no allowed_users or owners: only pairing admits anyone, and nobody can approve from chat"
		}
		out = append(out, f)
	}
	return out
}

// doctorNetwork: network_enabled with no egress_hosts for any role the
// connector can give is network nobody can use (every egress is denied),
// which usually means a forgotten list.
func doctorNetwork(cfg *config.Config) []finding {
	var out []finding
	hosts := 0
	for _, r := range cfg.Roles {
		hosts += len(r.EgressHosts)
	}
	for _, name := range sortedKeys(cfg.Connectors) {
		k := cfg.Connectors[name]
		if k == nil || !k.NetworkEnabled {
			continue
		}
		f := finding{Check: "network " + name, Status: statusOK, Detail: fmt.Sprintf("network_enabled; %d egress host(s) listed across roles", hosts)}
		if hosts == 0 {
			f.Status, f.Detail = statusWarn, "network_enabled is true but no role lists egress_hosts: every egress is denied"
			f.Fix = "list the hosts under roles.<role>.egress_hosts, or set network_enabled: false"
		}
		out = append(out, f)
	}
	return out
}

// DefaultEnvFile is where deploy/parachute.service reads the secrets from.
const DefaultEnvFile = "/etc/parachute/env"

// doctorEnv: every *_env variable set, in doctor's environment or in the
// service's environment file (systemd's EnvironmentFile: the gateway gets
// them, a shell running doctor does not). Values are never printed.
func doctorEnv(cfg *config.Config, envFile string) []finding {
	var out []finding
	fileVars := map[string]string{}
	if b, err := os.ReadFile(envFile); err == nil {
		st, _ := os.Stat(envFile)
		f := finding{Check: "env file", Status: statusOK, Detail: fmt.Sprintf("%s is %04o", envFile, st.Mode().Perm())}
		if st.Mode().Perm()&0o077 != 0 {
			f.Status, f.Fix = statusFail, "chmod 600 "+envFile+": it holds the secrets"
		}
		out = append(out, f)
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			k, v, _ := strings.Cut(strings.TrimPrefix(l, "export "), "=")
			fileVars[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	getenv := func(k string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return fileVars[k]
	}
	ps := cfg.CheckEnv(getenv)
	if len(ps) == 0 {
		return append(out, finding{Check: "secrets", Status: statusOK, Detail: "every *_env variable is set (in this environment or " + envFile + ")"})
	}
	for i := range ps {
		ps[i].Fix += " (or in " + envFile + ", which deploy/parachute.service reads)"
	}
	return append(out, hostFindings("secret ", ps)...)
}

func doctorVault(cfg *config.Config) []finding {
	if ps := cfg.CheckVault(); len(ps) > 0 {
		return hostFindings("", ps)
	}
	return []finding{{Check: "vault", Status: statusOK, Detail: cfg.Vault + " is a folder"}}
}

// doctorStateDir: the state dir holds the stores, the audit log and its
// signing key; only the gateway's user may enter it.
func doctorStateDir(cfg *config.Config) []finding {
	st, err := os.Stat(cfg.StateDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return []finding{{Check: "state_dir", Status: statusWarn, Detail: cfg.StateDir + " does not exist yet", Fix: "the gateway creates it (0700) on its first start"}}
	case err != nil:
		return []finding{{Check: "state_dir", Status: statusFail, Detail: err.Error()}}
	}
	f := finding{Check: "state_dir", Status: statusOK, Detail: fmt.Sprintf("%s is %04o", cfg.StateDir, st.Mode().Perm())}
	if st.Mode().Perm()&0o077 != 0 {
		f.Status, f.Fix = statusFail, "chmod 700 "+cfg.StateDir+": it holds the stores, the audit log and its signing key"
	}
	return []finding{f}
}

// doctorPorts: a port another process holds stops the start. While this
// config's gateway runs, its own ports are taken by it.
func doctorPorts(ctx context.Context, path string, cfg *config.Config) []finding {
	switch _, err := dialAdmin(ctx, &opConfig{Path: path, Cfg: cfg}); {
	case err == nil:
		return []finding{{Check: "ports", Status: statusOK, Detail: "the gateway is running on them (its admin socket " + gateway.AdminSocketPath(cfg.StateDir) + " answers)"}}
	case err != errNoGateway:
		return []finding{{Check: "ports", Status: statusWarn, Detail: "cannot tell whether the gateway holds them: " + err.Error(), Fix: "run doctor as root or as the gateway's user"}}
	}
	if ps := cfg.CheckPorts(); len(ps) > 0 {
		return hostFindings("", ps)
	}
	ls := cfg.Listeners()
	var addrs []string
	for _, k := range sortedKeys(ls) {
		addrs = append(addrs, ls[k])
	}
	return []finding{{Check: "ports", Status: statusOK, Detail: "free: " + strings.Join(addrs, ", ")}}
}

// doctorPolicies runs the policy folder's tests, as a reload does.
func doctorPolicies(ctx context.Context, cfg *config.Config) []finding {
	rep, err := engine.RunTests(ctx, cfg.Policies)
	f := finding{Check: "policy tests", Status: statusOK}
	switch {
	case err != nil:
		f.Status, f.Detail, f.Fix = statusFail, err.Error(), "fix the policy folder: parachute policy check "+cfg.Policies
	case len(rep.Failures) > 0:
		var names []string
		for _, x := range rep.Failures {
			names = append(names, x.Name)
		}
		f.Status, f.Detail = statusFail, fmt.Sprintf("%d passed, %d failed: %s", rep.Passed, len(rep.Failures), strings.Join(names, ", "))
		f.Fix = "parachute policy test " + cfg.Policies
	case rep.Passed == 0:
		f.Status, f.Detail, f.Fix = statusFail, "no policy tests in "+cfg.Policies, "write *_test.rego files beside the policies"
	default:
		f.Detail = fmt.Sprintf("%d passed in %s", rep.Passed, cfg.Policies)
	}
	return []finding{f}
}

func hostFindings(prefix string, ps []config.HostProblem) []finding {
	out := make([]finding, 0, len(ps))
	for _, p := range ps {
		out = append(out, finding{Check: prefix + p.Field, Status: statusFail, Detail: p.Problem, Fix: p.Fix})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
