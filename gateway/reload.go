package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/parachute-gateway/parachute/config"
)

// Reload applies a new config (SIGHUP). It is all or nothing:
//
//   - the config must validate, and must not need what only a start sets
//     up (the direct runtime for a connector that now allows direct
//     trust): otherwise the running config stays, and the error says what
//     to fix or that a restart is needed;
//   - the policy data is swapped in (the policy folder's tests and
//     examples must pass, TestOnReload): every message, tool, model and
//     egress decision from then on uses it;
//   - every live session is re-decided (sessions.Manager.Redecide): one
//     whose trust, runtime, workspace, read-only, network or limits
//     changed is ended and restarted under the new decision at its next
//     turn, and each is logged with what changed;
//   - the log lists the fields that took effect and those that still need
//     a restart (listeners, stores, runtimes, connector credentials).
func (g *Gateway) Reload(ctx context.Context, cfg *config.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	absPaths(cfg)
	if err := g.reloadable(cfg); err != nil {
		return err
	}
	if err := g.Engine.SetData(ctx, cfg.PolicyData()); err != nil {
		return fmt.Errorf("policy data: %w", err)
	}
	prev := g.applied.Swap(cfg)
	if prev == nil {
		prev = g.cfg
	}
	applied := dataChanges(prev.PolicyData(), cfg.PolicyData())
	restart := restartChanges(g.cfg, cfg)
	ev := g.log.Info().Str("policy_revision", g.Engine.Revision()).Strs("applied", applied).Strs("needs_restart", restart)
	if len(restart) == 0 {
		ev.Msg("config reloaded: every change is in force")
	} else {
		ev.Msg("config reloaded; the fields in needs_restart keep their old values until the gateway restarts")
	}
	if g.Manager != nil {
		for _, r := range g.Manager.Redecide(ctx) {
			e := g.log.Info().Str("session_id", r.SessionID).Str("owner", r.Owner)
			if len(r.Refused) > 0 {
				e.Strs("refused", r.Refused).Msg("live session refused under the reloaded config: the next message of its last sender is decided afresh and refused; an unused sandbox stops when it idles out")
				continue
			}
			e.Strs("changed", r.Changes).Msg("live session's decision changed: it is ended and restarted under the new decision at its next turn")
		}
	}
	return nil
}

// reloadable refuses a config the running gateway cannot honour without a
// restart: decisions naming a runtime it does not run would fail every
// such session ("policy chose runtime direct") instead of being refused.
func (g *Gateway) reloadable(cfg *config.Config) error {
	if g.Manager == nil || g.Manager.HasRuntime("direct") {
		return nil
	}
	for _, name := range sortedKeys(cfg.Connectors) {
		if k := cfg.Connectors[name]; k != nil && k.AllowDirect && !k.Public {
			return fmt.Errorf("connectors.%s.allow_direct: direct sessions need the direct runtime, which is set up only when the gateway starts; restart the gateway to apply this config (nothing was reloaded, the running config stays)", name)
		}
	}
	return nil
}

// absPaths makes the config's paths absolute, as New does, so that they
// compare with the running config's.
func absPaths(cfg *config.Config) {
	for _, p := range []*string{&cfg.Vault, &cfg.StateDir, &cfg.Policies, &cfg.Audit.Dir, &cfg.Audit.KeyFile} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
}

// dataChanges names the policy data that differs (connectors.dev.public,
// users.telegram:1, …): what a reload put in force at once.
func dataChanges(old, cur map[string]any) []string {
	var out []string
	var walk func(prefix string, a, b any, depth int)
	walk = func(prefix string, a, b any, depth int) {
		am, aok := a.(map[string]any)
		bm, bok := b.(map[string]any)
		if depth == 0 || !aok || !bok {
			if !reflect.DeepEqual(a, b) {
				out = append(out, prefix)
			}
			return
		}
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		for k := range keys {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, am[k], bm[k], depth-1)
		}
	}
	walk("", old, cur, 3)
	sort.Strings(out)
	return out
}

// policyConnectorFields are the connector fields policy reads: they take
// effect at a reload. Every other connector field says how to reach the
// platform and needs a restart.
var policyConnectorFields = map[string]bool{
	"public": true, "allowed_users": true, "owners": true, "default_trust_level": true,
	"allow_direct": true, "allow_hooks": true, "network_enabled": true, "read_only": true,
	"require_mention": true, "pairing": true, "shared_chat_sessions": true, "workspace": true,
	"default_role": true,
}

// restartChanges names the fields of cur that differ from the config the
// gateway started with and take effect only at a restart.
func restartChanges(started, cur *config.Config) []string {
	var out []string
	sv, cv := reflect.ValueOf(started).Elem(), reflect.ValueOf(cur).Elem()
	for i := range sv.NumField() {
		f := sv.Type().Field(i)
		name := yamlName(f)
		switch name {
		case "connectors", "users", "roles", "workspaces":
			continue
		}
		if !reflect.DeepEqual(sv.Field(i).Interface(), cv.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	for _, n := range union(sortedKeys(started.Connectors), sortedKeys(cur.Connectors)) {
		a, b := started.Connectors[n], cur.Connectors[n]
		switch {
		case a == nil && b == nil:
		case a == nil:
			out = append(out, "connectors."+n+" (added)")
		case b == nil:
			out = append(out, "connectors."+n+" (removed: it keeps running until the restart)")
		default:
			av, bv := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
			for i := range av.NumField() {
				y := yamlName(av.Type().Field(i))
				if !policyConnectorFields[y] && !reflect.DeepEqual(av.Field(i).Interface(), bv.Field(i).Interface()) {
					out = append(out, "connectors."+n+"."+y)
				}
			}
		}
	}
	for _, n := range union(sortedKeys(started.Roles), sortedKeys(cur.Roles)) {
		av, bv := reflect.ValueOf(started.Roles[n]), reflect.ValueOf(cur.Roles[n])
		for i := range av.NumField() {
			f := av.Type().Field(i)
			if f.Tag.Get("json") == "-" && !reflect.DeepEqual(av.Field(i).Interface(), bv.Field(i).Interface()) {
				out = append(out, "roles."+n+"."+yamlName(f))
			}
		}
	}
	return out
}

func yamlName(f reflect.StructField) string {
	if n, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); n != "" && n != "-" {
		return n
	}
	return strings.ToLower(f.Name)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(a, b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
