package engine

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// Whatever the key leaves out cannot change the decision: for every field
// of every typed input that the product policy's key omits, changing it
// leaves the evaluated decision exactly as it was. (The other direction,
// that the key holds every field policy sees, is TestCacheKeyCoversEveryField.)
func TestKeyOmitsOnlyWhatCannotChangeTheDecision(t *testing.T) {
	e, err := New(context.Background(), Options{PolicyDir: productPolicies, Data: thousandUsers(), CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	omitted := 0
	// The full inputs, and inputs the product policy allows (so the rules
	// past the first denials are reached too).
	session := SessionFacts{ID: "s1", TurnID: "t", Identity: "telegram:100001", Connector: "tg", ConnectorType: "telegram",
		Role: "member", TrustLevel: "sandboxed", Workspace: "users/telegram%3A100001", Network: true}
	bases := append(fullInputs(),
		MessageInput{Connector: "tg", ConnectorType: "telegram", Sender: Sender{ID: "telegram:100001", PlatformID: "100001", DisplayName: "a"},
			Chat: Chat{ID: "1", Kind: "dm"}, Command: "help", TextLength: 5},
		MessageInput{Connector: "tg", ConnectorType: "telegram", Sender: Sender{ID: "telegram:100001", PlatformID: "100001", DisplayName: "a"},
			Chat: Chat{ID: "g", Kind: "group"}, Mentioned: true, TextLength: 5, Binding: &Binding{Role: "guest", Workspace: "", Source: "pairing"}},
		SessionInput{Session: session},
		ToolInput{Session: session, Tool: ToolFacts{Name: "write_file", Server: "vault", Access: AccessWrite},
			Paths: []PathFacts{{Arg: "path", Raw: "a.md", Resolved: "users/telegram%3A100001/a.md", InsideWorkspace: true, Access: AccessWrite}}},
		EgressInput{Session: session, Host: "example.com", Port: 443},
	)
	for _, base := range bases {
		reads := e.cur.Load().reads[base.Entry()]
		baseKey := appendKey(nil, base, reads)
		want := e.Evaluate(ctx, base)
		for path, m := range mutations(reflect.ValueOf(base), reflect.TypeOf(base).Name(), nil) {
			in := m.Interface().(docInput)
			if !bytes.Equal(appendKey(nil, in, reads), baseKey) {
				continue
			}
			omitted++
			got := e.Evaluate(ctx, in)
			if got.Allow != want.Allow || !slices.Equal(got.Reasons, want.Reasons) || got.Reply != want.Reply || !reflect.DeepEqual(got.Fields, want.Fields) {
				t.Errorf("%s is left out of the key but changes the decision: %v %v, was %v %v", path, got.Allow, got.Reasons, want.Allow, want.Reasons)
			}
		}
	}
	if omitted == 0 {
		t.Fatal("the product policy's key leaves nothing out; the test checks nothing")
	}
}

// The product policy reads no message's length, display name or command:
// two messages of one sender that differ only there share a cached
// decision; the sender, the chat and the binding are keyed.
func TestMessageKeyOnProductPolicy(t *testing.T) {
	e, err := New(context.Background(), Options{PolicyDir: productPolicies, Data: thousandUsers()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base := MessageInput{Connector: "tg", ConnectorType: "telegram",
		Sender: Sender{ID: "telegram:100001", PlatformID: "100001", DisplayName: "a"}, Chat: Chat{ID: "1", Kind: "dm"}, TextLength: 5}
	if d := e.Decide(ctx, base); !d.Allow || d.Cached {
		t.Fatalf("first message: allow %v cached %v %v", d.Allow, d.Cached, d.Reasons)
	}
	same := base
	same.TextLength, same.Sender.DisplayName, same.Command = 900, "b", "help"
	if d := e.Decide(ctx, same); !d.Allow || !d.Cached {
		t.Fatalf("a message differing only in unread fields: allow %v cached %v", d.Allow, d.Cached)
	}
	other := base
	other.Sender = Sender{ID: "telegram:100002", PlatformID: "100002"}
	if d := e.Decide(ctx, other); d.Cached {
		t.Fatal("another sender's message was answered from the cache")
	}
	group := base
	group.Chat.Kind = "group"
	if d := e.Decide(ctx, group); d.Cached || d.Allow {
		t.Fatalf("a group message without a mention: allow %v cached %v", d.Allow, d.Cached)
	}
}

// The analysis is conservative: every way a policy can reach a field other
// than a constant path (a bare input, a variable key, walk, a whole
// subtree) keeps that field in the key.
func TestReadAnalysisIsConservative(t *testing.T) {
	for _, rule := range []string{
		"x := input.text_length",
		"x := object.get(input, \"text_length\", 0)",
		"x if {\n\tsome k\n\tinput[k] == 5\n}",
		"x := [v | walk(input, [_, v])]",
		"x := input",
		"x := json.marshal(input)",
		"x := y.text_length if y := input",
		"x if {\n\tk := concat(\"\", [\"text_\", \"length\"])\n\tinput[k] > 3\n}",
		"f(v) := v.text_length\n\nx := f(input)",
		"f(v) := v.text_length\n\nx := f(input) if input.sender.id",
		"x := data.parachute.message[y] if y := \"z\"\n\nz := input.text_length",
		"x if {\n\ty := input.sender.id with input.sender as {}\n\ty == \"\"\n}",
		// A rule of the package the decision does not use still counts.
		"x := 1\n\nunused := input.text_length",
		// Another entry's rules are not followed: everything.
		"x := data.parachute.model.decision",
		"x := data.parachute[y] if y := \"model\"",
		"x := data[y].model if y := \"parachute\"",
	} {
		t.Run(rule, func(t *testing.T) {
			dir := copyPolicies(t)
			// The decision depends on x, which reaches the field.
			writeFile(t, filepath.Join(dir, "reads.rego"), "package parachute.message\n\n"+rule+
				"\n\ndecision := {\"allow\": true, \"reasons\": [], \"x\": x} if input.command == \"reads\"\n")
			e := newEngine(t, Options{PolicyDir: dir})
			reads := e.cur.Load().reads[Message]
			a, b := msg("deny", "x"), msg("deny", "x")
			b.TextLength = 7
			if bytes.Equal(appendKey(nil, a, reads), appendKey(nil, b, reads)) {
				t.Fatal("text_length left out of the key though the policy can read it")
			}
		})
	}
	// The control: a message policy that reads input only by constant
	// paths that do not include text_length leaves it out, whatever
	// another entry point's package reads.
	dir := copyPolicies(t)
	writeFile(t, filepath.Join(dir, "unused.rego"), "package parachute.tool\n\nunused := input.text_length\n\nall := object.keys(input)\n")
	e := newEngine(t, Options{PolicyDir: dir})
	a, b := msg("deny", "x"), msg("deny", "x")
	b.TextLength = 7
	if !bytes.Equal(appendKey(nil, a, e.cur.Load().reads[Message]), appendKey(nil, b, e.cur.Load().reads[Message])) {
		t.Fatal("the test policy does not read text_length, yet it is keyed")
	}
}
