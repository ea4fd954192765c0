package engine

import (
	"fmt"
	"maps"
	"sort"
)

// Rates the engine computes for each role: the per-second token-bucket rate
// of a per-minute setting.
var roleRates = []struct{ perMinute, perSecond string }{
	{"messages_per_minute", "message_rate"},
	{"tool_calls_per_minute", "tool_call_rate"},
	{"model_calls_per_minute", "model_call_rate"},
}

// prepareData turns operator data (plain JSON values) into the document
// policy reads as data.parachute.config, once per reload or data change
// rather than on every decision:
//
//   - roles: every built-in role of the policy folder's defaults
//     (data.parachute.defaults.roles) and every role the operator names,
//     each the role's defaults (guest's for a role that is not built in)
//     overlaid field by field by the operator's settings, with
//     message_rate, tool_call_rate and model_call_rate (per second)
//     computed from the per-minute figures;
//   - connectors.<name>.allowed_users and owners, and
//     workspaces.<slug>.members and read_only_members: objects keyed by ID
//     ({"123": true}), so policy looks an ID up instead of scanning a list.
//     A list of strings is taken and turned into such an object (data
//     files written by hand); anything else is refused.
//
// data is modified in place. An error names the field and wraps ErrPolicy.
func prepareData(defaults, data map[string]any) error {
	for _, sec := range []struct{ section, listA, listB string }{
		{"connectors", "allowed_users", "owners"},
		{"workspaces", "members", "read_only_members"},
	} {
		entries, err := objectAt(data, sec.section)
		if err != nil {
			return err
		}
		for name, raw := range entries {
			entry, ok := raw.(map[string]any)
			if !ok {
				return fmt.Errorf("%w: operator data: %s.%s is not an object", ErrPolicy, sec.section, name)
			}
			for _, list := range []string{sec.listA, sec.listB} {
				if err := idSet(entry, list, sec.section+"."+name+"."+list); err != nil {
					return err
				}
			}
		}
	}
	builtin := map[string]any{}
	if p, ok := defaults["parachute"].(map[string]any); ok {
		if d, ok := p["defaults"].(map[string]any); ok {
			builtin, _ = d["roles"].(map[string]any)
		}
	}
	operator, err := objectAt(data, "roles")
	if err != nil {
		return err
	}
	roles := make(map[string]any, len(builtin)+len(operator))
	names := append(sortedKeys(builtin), sortedKeys(operator)...)
	for _, name := range names {
		if _, done := roles[name]; done {
			continue
		}
		base, ok := builtin[name].(map[string]any)
		if !ok {
			base, _ = builtin["guest"].(map[string]any)
		}
		role := maps.Clone(base)
		if role == nil {
			role = map[string]any{}
		}
		if raw, present := operator[name]; present {
			over, ok := raw.(map[string]any)
			if !ok {
				return fmt.Errorf("%w: operator data: roles.%s is not an object", ErrPolicy, name)
			}
			maps.Copy(role, over)
		}
		for _, r := range roleRates {
			v, present := role[r.perMinute]
			if !present {
				continue
			}
			n, ok := v.(float64)
			if !ok || n < 0 {
				return fmt.Errorf("%w: operator data: roles.%s.%s is %v, not a number of at least 0", ErrPolicy, name, r.perMinute, v)
			}
			role[r.perSecond] = n / 60
		}
		roles[name] = role
	}
	data["roles"] = roles
	return nil
}

// objectAt returns data[key] as an object ({} when absent, and then stored).
func objectAt(data map[string]any, key string) (map[string]any, error) {
	raw, present := data[key]
	if !present || raw == nil {
		m := map[string]any{}
		data[key] = m
		return m, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: operator data: %s is not an object", ErrPolicy, key)
	}
	return m, nil
}

// idSet makes entry[key] an object keyed by ID with the value true.
func idSet(entry map[string]any, key, path string) error {
	raw, present := entry[key]
	if !present || raw == nil {
		return nil
	}
	switch v := raw.(type) {
	case []any:
		set := make(map[string]any, len(v))
		for i, id := range v {
			s, ok := id.(string)
			if !ok {
				return fmt.Errorf("%w: operator data: %s[%d] is %v, not a string: IDs are strings", ErrPolicy, path, i, id)
			}
			set[s] = true
		}
		entry[key] = set
	case map[string]any:
		for id, in := range v {
			if in != true {
				return fmt.Errorf("%w: operator data: %s[%q] is %v: a member is listed with true", ErrPolicy, path, id, in)
			}
		}
	default:
		return fmt.Errorf("%w: operator data: %s is neither a list of IDs nor an object keyed by ID", ErrPolicy, path)
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
