package engine

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// The policy tests build their data with fixtures.prepare, a Rego copy of
// prepareData; the two must agree or the tests would test other data than
// the gateway hands over.
func TestPrepareDataAgreesWithThePolicyFixtures(t *testing.T) {
	src, err := readSource(productPolicies)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]*ast.Module{}
	for k, v := range src.modules {
		all[k] = v
	}
	for k, v := range src.tests {
		all[k] = v
	}
	compiler := ast.NewCompiler()
	if compiler.Compile(all); compiler.Failed() {
		t.Fatal(compiler.Errors)
	}
	store, _, err := newStore(src.defaults, nil)
	if err != nil {
		t.Fatal(err)
	}
	eval := func(query string) map[string]any {
		t.Helper()
		rs, err := rego.New(rego.Query(query), rego.Compiler(compiler), rego.Store(store)).Eval(context.Background())
		if err != nil || len(rs) != 1 {
			t.Fatalf("%s: %v %v", query, rs, err)
		}
		return plain(t, rs[0].Expressions[0].Value)
	}
	operator := eval("data.parachute.fixtures.operator")
	want := eval("data.parachute.fixtures.config")
	if err := prepareData(src.defaults, operator); err != nil {
		t.Fatal(err)
	}
	if got := plain(t, operator); !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got["roles"], "", " ")
		w, _ := json.MarshalIndent(want["roles"], "", " ")
		t.Fatalf("prepareData and fixtures.prepare disagree:\ngo:   %s\nrego: %s", g, w)
	}
}

// plain round-trips v through JSON, numbers as float64.
func plain(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPrepareData(t *testing.T) {
	defaults := map[string]any{"parachute": map[string]any{"defaults": map[string]any{"roles": map[string]any{
		"guest":  map[string]any{"messages_per_minute": 6.0, "network": false, "models": []any{"*"}},
		"member": map[string]any{"messages_per_minute": 60.0, "network": true},
	}}}}
	data := map[string]any{
		"connectors": map[string]any{"tg": map[string]any{"allowed_users": []any{"1", "2"}, "owners": map[string]any{"1": true}}},
		"workspaces": map[string]any{"team": map[string]any{"members": []any{"local:a"}}},
		"roles":      map[string]any{"member": map[string]any{"network": false}, "reviewer": map[string]any{"tool_calls_per_minute": 120.0}},
	}
	if err := prepareData(defaults, data); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"connectors": map[string]any{"tg": map[string]any{"allowed_users": map[string]any{"1": true, "2": true}, "owners": map[string]any{"1": true}}},
		"workspaces": map[string]any{"team": map[string]any{"members": map[string]any{"local:a": true}}},
		"roles": map[string]any{
			"guest":    map[string]any{"messages_per_minute": 6.0, "message_rate": 0.1, "network": false, "models": []any{"*"}},
			"member":   map[string]any{"messages_per_minute": 60.0, "message_rate": 1.0, "network": false},
			"reviewer": map[string]any{"messages_per_minute": 6.0, "message_rate": 0.1, "network": false, "models": []any{"*"}, "tool_calls_per_minute": 120.0, "tool_call_rate": 2.0},
		},
	}
	if !reflect.DeepEqual(data, want) {
		t.Fatalf("prepared\n%v\nwant\n%v", data, want)
	}
	if defaults["parachute"].(map[string]any)["defaults"].(map[string]any)["roles"].(map[string]any)["member"].(map[string]any)["network"] != true {
		t.Fatal("preparing the data changed the policy folder's defaults")
	}
}

// Data the policy would misread is refused with the field named, and the
// engine does not start (or a reload keeps the last good data).
func TestPrepareDataRefuses(t *testing.T) {
	tests := []struct {
		name string
		data map[string]any
		want string
	}{
		{"numeric ID", map[string]any{"connectors": map[string]any{"tg": map[string]any{"allowed_users": []any{"1", 2.0}}}},
			"connectors.tg.allowed_users[1] is 2, not a string"},
		{"member not true", map[string]any{"workspaces": map[string]any{"w": map[string]any{"members": map[string]any{"local:a": "yes"}}}},
			`workspaces.w.members["local:a"] is yes`},
		{"owners a string", map[string]any{"connectors": map[string]any{"tg": map[string]any{"owners": "1"}}},
			"connectors.tg.owners is neither a list of IDs nor an object keyed by ID"},
		{"connector not an object", map[string]any{"connectors": map[string]any{"tg": "x"}}, "connectors.tg is not an object"},
		{"roles not an object", map[string]any{"roles": []any{}}, "roles is not an object"},
		{"role not an object", map[string]any{"roles": map[string]any{"member": 1.0}}, "roles.member is not an object"},
		{"rate not a number", map[string]any{"roles": map[string]any{"member": map[string]any{"messages_per_minute": "10"}}},
			"roles.member.messages_per_minute is 10, not a number"},
		{"negative rate", map[string]any{"roles": map[string]any{"x": map[string]any{"tool_calls_per_minute": -1.0}}},
			"roles.x.tool_calls_per_minute is -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), Options{PolicyDir: productPolicies, Data: tt.data})
			if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want ErrPolicy naming %q", err, tt.want)
			}
		})
	}
}
