package audit

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/parachute-gateway/parachute/engine"
)

// hostileStrings are what an agent or chat user can put in an input.
var hostileStrings = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "\x00\x01\x1f\x7f",
	"\b\f\n\r\t", "\u2028\u2029", "caf\u00e9 \U0001F600", "\xff\xfe bad utf-8 \xc3", "\u202e bidi",
	"ends in half a rune \xe2\x82", "users/telegram%3A1/notes.md",
}

// The direct encoding writes exactly what json.Marshal(ast.JSON(v))
// writes: the stored input of a record is the same as before, so replay
// and verify read it as they did.
func TestCanonicalMatchesMarshal(t *testing.T) {
	var values []ast.Value
	for _, s := range hostileStrings {
		values = append(values, ast.String(s),
			ast.NewObject([2]*ast.Term{ast.StringTerm(s), ast.StringTerm(s)}, [2]*ast.Term{ast.StringTerm("a"), ast.IntNumberTerm(1)}))
	}
	for _, n := range []string{"0", "-1", "12.5", "1e3", "1E-7", "-0.0"} {
		values = append(values, ast.Number(n))
	}
	values = append(values,
		ast.NewObject([2]*ast.Term{ast.StringTerm("z"), ast.BooleanTerm(true)}, [2]*ast.Term{ast.StringTerm("A"), ast.NullTerm()},
			[2]*ast.Term{ast.StringTerm("é"), ast.ArrayTerm(ast.StringTerm("x"), ast.IntNumberTerm(2))}, [2]*ast.Term{ast.StringTerm("a b"), ast.ObjectTerm()}),
		engine.ToolInput{Session: engine.SessionFacts{ID: "s<1>", Identity: "telegram:1", Workspace: "users/telegram%3A1"},
			Tool:  engine.ToolFacts{Name: "read_file"},
			Paths: []engine.PathFacts{{Arg: "path", Raw: "\u2028/../\xff", Access: "read"}}}.Value(),
		engine.MessageInput{Connector: "tg", Sender: engine.Sender{ID: "telegram:1", DisplayName: "<b>&"}, Binding: &engine.Binding{Role: "owner"}}.Value(),
	)
	for _, v := range values {
		got, ok := appendCanonical(nil, v)
		want := marshalCanonical(v)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("%v:\n got  %s (ok %v)\n want %s", v, got, ok, want)
		}
	}
	// What it does not handle, it says so (and canonicalInput takes the
	// reference path).
	for _, v := range []ast.Value{ast.NewSet(ast.StringTerm("a")), ast.NewObject([2]*ast.Term{ast.IntNumberTerm(1), ast.StringTerm("x")}), ast.Number("01")} {
		if _, ok := appendCanonical(nil, v); ok {
			t.Errorf("%v: encoded directly, want the reference path", v)
		}
	}
}

// Any JSON document, as the replay path builds it (RawInput), encodes the
// same both ways.
func FuzzCanonical(f *testing.F) {
	for _, s := range hostileStrings {
		b, _ := json.Marshal(map[string]any{"s": s, "n": []any{1, 2.5, true, nil}})
		f.Add(b)
	}
	f.Add([]byte(`{"b":{"z":1,"a":[1e3,"\u2028"]},"a":"<&>"}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		v, err := ast.ValueFromReader(bytes.NewReader(doc))
		if err != nil {
			return
		}
		got, ok := appendCanonical(nil, v)
		if !ok {
			return
		}
		if want := marshalCanonical(v); !bytes.Equal(got, want) {
			t.Fatalf("%q:\n got  %s\n want %s", doc, got, want)
		}
	})
}

func BenchmarkCanonicalInput(b *testing.B) {
	in := engine.ToolInput{Session: engine.SessionFacts{ID: "sess-1", TurnID: "turn-1", Identity: "telegram:1", Connector: "tg",
		ConnectorType: "telegram", Role: "owner", TrustLevel: "sandboxed", Workspace: "users/telegram%3A1"},
		Tool:  engine.ToolFacts{Name: "read_file", Server: "builtin", Access: engine.AccessRead},
		Paths: []engine.PathFacts{{Arg: "path", Raw: "/workspace/notes.md", Resolved: "users/telegram%3A1/notes.md", Access: "read"}}}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			canonicalInput(in)
		}
	})
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			marshalCanonical(in.Value())
		}
	})
}
