package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// fullInputs returns one value of every typed input with every field set,
// pointers and slices included, so a mutation of any field is visible.
func fullInputs() []docInput {
	b := &Binding{Role: "member", Workspace: "team", Source: "invite"}
	s := SessionFacts{ID: "s", TurnID: "t", Identity: "local:a", Connector: "c", ConnectorType: "local",
		Role: "member", TrustLevel: "sandboxed", Workspace: "users/local%3Aa", ReadOnly: true, Network: true,
		Unverified: true, Binding: b}
	return []docInput{
		MessageInput{Connector: "c", ConnectorType: "local", Sender: Sender{ID: "local:a", PlatformID: "a", DisplayName: "A"},
			Chat: Chat{ID: "chat", Kind: "dm"}, Mentioned: true, Unverified: true, Command: "help", TextLength: 3,
			Binding: b, RequestedTrustLevel: "direct", RequestedWorkspace: "team"},
		SessionInput{Session: s},
		ToolInput{Session: s, Tool: ToolFacts{Name: "n", Server: "v", Access: AccessWrite, Changed: true, OnHost: true, Unapproved: true},
			Paths: []PathFacts{{Arg: "path", Raw: "r", Resolved: "x", InsideWorkspace: true, Access: AccessRead, Error: "e"},
				{Arg: "destination", Raw: "r2", Resolved: "y", Access: AccessWrite}},
			Invalid: &CallError{Reason: "invalid-arguments", Detail: "d", Suppressed: 2}},
		ModelInput{Session: s, Provider: "p", Model: "m", TokensUsedToday: 5, TokensRequested: 6,
			ProviderTools: []string{"web_search_1"}, MCPServers: []string{"https://x"}, Betas: []string{"b1", "b2"}},
		EgressInput{Session: s, Host: "example.com", Port: 443},
	}
}

// mutations returns copies of v, each with one leaf field changed (a string
// changed or emptied, a bool flipped, a number changed, a pointer set to nil,
// a slice element changed, added or removed), with the field's path.
func mutations(v reflect.Value, path string, set func(reflect.Value)) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	clone := func(change func(reflect.Value)) reflect.Value {
		c := reflect.New(v.Type()).Elem()
		c.Set(v)
		change(c)
		return c
	}
	switch v.Kind() {
	case reflect.String:
		out[path+"=changed"] = clone(func(c reflect.Value) { c.SetString(c.String() + "x") })
		out[path+"=empty"] = clone(func(c reflect.Value) { c.SetString("") })
		// The same bytes moved across a field boundary must not collide.
		out[path+"=shifted"] = clone(func(c reflect.Value) { c.SetString(c.String() + "\x01s") })
	case reflect.Bool:
		out[path+"=flipped"] = clone(func(c reflect.Value) { c.SetBool(!c.Bool()) })
	case reflect.Int, reflect.Int64:
		out[path+"=changed"] = clone(func(c reflect.Value) { c.SetInt(c.Int() + 1) })
		out[path+"=negative"] = clone(func(c reflect.Value) { c.SetInt(-c.Int() - 7) })
	case reflect.Pointer:
		out[path+"=nil"] = clone(func(c reflect.Value) { c.Set(reflect.Zero(c.Type())) })
		for p, m := range mutations(v.Elem(), path+".*", nil) {
			ptr := reflect.New(v.Elem().Type())
			ptr.Elem().Set(m)
			out[p] = ptr
		}
	case reflect.Slice:
		out[path+"=dropped"] = clone(func(c reflect.Value) { c.Set(c.Slice(0, c.Len()-1)) })
		out[path+"=doubled"] = clone(func(c reflect.Value) { c.Set(reflect.AppendSlice(c.Slice(0, c.Len()), c)) })
		for i := range v.Len() {
			for p, m := range mutations(v.Index(i), fmt.Sprintf("%s[%d]", path, i), nil) {
				s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
				reflect.Copy(s, v)
				s.Index(i).Set(m)
				out[p] = s
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			for p, m := range mutations(v.Field(i), path+"."+f.Name, nil) {
				c := reflect.New(v.Type()).Elem()
				c.Set(v)
				c.Field(i).Set(m)
				out[p] = c
			}
		}
	}
	return out
}

// The cache key and the policy input come from one description of each
// input, so they cannot disagree: for every field of every typed input,
// changing it changes the key exactly when it changes the document policy
// sees. A field that reached policy without reaching the key would let one
// user's cached decision answer another's input.
func TestCacheKeyCoversEveryField(t *testing.T) {
	for _, base := range fullInputs() {
		name := reflect.TypeOf(base).Name()
		baseKey := appendKey(nil, base, everything)
		baseVal := base.Value()
		if buildValue(base).Compare(baseVal) != 0 {
			t.Fatalf("%s: Value and buildValue disagree", name)
		}
		for path, m := range mutations(reflect.ValueOf(base), name, nil) {
			in := m.Interface().(docInput)
			valueChanged := in.Value().Compare(baseVal) != 0
			keyChanged := !bytes.Equal(appendKey(nil, in, everything), baseKey)
			if valueChanged != keyChanged {
				t.Errorf("%s: policy input changed %v, cache key changed %v", path, valueChanged, keyChanged)
			}
			if !valueChanged && !strings.Contains(path, "TurnID") && !reflect.DeepEqual(in, base) {
				t.Errorf("%s: the field does not reach policy", path)
			}
		}
	}
}

// No rule reads the turn ID, so it is not policy input: two turns of a
// session asking the same thing share a cached decision.
func TestTurnIDIsNotPolicyInput(t *testing.T) {
	in := ToolInput{Session: SessionFacts{ID: "s", TurnID: "turn-1"}}
	obj := in.Value().(ast.Object)
	if obj.Get(ast.StringTerm("session")).Value.(ast.Object).Get(ast.StringTerm("turn_id")) != nil {
		t.Fatal("turn_id is still in the policy input")
	}
}

func TestCacheHitsAndFlushes(t *testing.T) {
	rec := &recorded{}
	dir := copyPolicies(t)
	e := newEngine(t, Options{PolicyDir: dir, Data: map[string]any{"greeting": "hello"}, Recorder: rec})
	ctx := context.Background()
	greet := func() Decision {
		t.Helper()
		e.Limiter().Refund("message:local:u", 2) // the test policy's burst is 2
		d := e.Decide(ctx, msg("allow", "u"))
		if !d.Allow {
			t.Fatalf("denied: %v %v", d.Reasons, d.Err)
		}
		return d
	}
	if d := greet(); d.Cached || d.String("greeting") != "hello" {
		t.Fatalf("first decision: cached %v greeting %q", d.Cached, d.String("greeting"))
	}
	if d := greet(); !d.Cached {
		t.Fatal("the same input again was evaluated, not cached")
	}
	// A data change is a new revision: nothing decided under the old data
	// may answer.
	if err := e.SetData(ctx, map[string]any{"greeting": "bye"}); err != nil {
		t.Fatal(err)
	}
	if d := greet(); d.Cached || d.String("greeting") != "bye" {
		t.Fatalf("after SetData: cached %v greeting %q", d.Cached, d.String("greeting"))
	}
	// So is a policy edit.
	writeFile(t, filepath.Join(dir, "greeting.rego"), "package parachute.message\n\ngreeting := \"edited\" if input.command == \"allow\"\n")
	writeFile(t, filepath.Join(dir, "message.rego"), strings.Replace(readFile(t, filepath.Join(dir, "message.rego")),
		"greeting := data.parachute.config.greeting", "", 1))
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if d := greet(); d.Cached || d.String("greeting") != "edited" {
		t.Fatalf("after Reload: cached %v greeting %q", d.Cached, d.String("greeting"))
	}
	if st := e.CacheStats(); st.Hits != 1 || st.Misses != 3 || st.Entries != 1 {
		t.Errorf("CacheStats = %+v, want 1 hit, 3 misses, 1 entry", st)
	}
	// Every decision, cached or not, was recorded, and the record knows
	// which were cached.
	var cached []bool
	for _, d := range rec.list {
		cached = append(cached, d.Cached)
	}
	if want := []bool{false, true, false, false}; !slices.Equal(cached, want) {
		t.Fatalf("recorded cached flags %v, want %v", cached, want)
	}
}

// A cached allow still spends rate-limit tokens: the limit is a
// reservation made for every call, not part of the policy's answer.
func TestCachedDecisionIsStillRateLimited(t *testing.T) {
	e := newEngine(t, Options{})
	ctx := context.Background()
	var got []string
	for range 3 {
		d := e.Decide(ctx, msg("allow", "bob"))
		got = append(got, fmt.Sprintf("%v/%v", d.Allow, d.Cached))
	}
	// burst 2, rate 0: the third is refused even though its answer is cached.
	if want := []string{"true/false", "true/true", "false/true"}; !slices.Equal(got, want) {
		t.Fatalf("allow/cached = %v, want %v", got, want)
	}
}

// A failure says nothing about the input (a deadline, a conflict under
// this data): it is never cached, and a cached result cannot be changed
// through a decision made from it.
func TestCacheKeepsOnlyAnswersAndIsNotAliased(t *testing.T) {
	e := newEngine(t, Options{})
	ctx := context.Background()
	for _, c := range []string{"conflict", "builtin-error", "not-object"} {
		e.Decide(ctx, msg(c, "x"))
		if d := e.Decide(ctx, msg(c, "x")); d.Cached {
			t.Errorf("%s: a policy-error was cached", c)
		}
	}
	d := e.Decide(ctx, msg("deny", "x"))
	d.Reasons = append(d.Reasons, "tampered")
	d = e.Decide(ctx, msg("deny", "x"))
	if !d.Cached || !slices.Equal(d.Reasons, []string{"unknown-user"}) {
		t.Fatalf("cached %v reasons %v, want the cached [unknown-user]", d.Cached, d.Reasons)
	}
	// Audit-unavailable appends to the reasons of a cached deny.
	rec := &recorded{err: fmt.Errorf("disk full")}
	e2 := newEngine(t, Options{Recorder: rec})
	e2.Decide(ctx, msg("deny", "y"))
	e2.Decide(ctx, msg("deny", "y"))
	rec.err = nil
	if d := e2.Decide(ctx, msg("deny", "y")); !slices.Equal(d.Reasons, []string{"unknown-user"}) {
		t.Fatalf("a refused record's reason leaked into the cache: %v", d.Reasons)
	}
}

// A policy that calls a builtin whose answer is not a function of the input
// is evaluated every time, and Uncached names the call.
func TestNondeterministicPolicyIsNotCached(t *testing.T) {
	for _, call := range []string{
		"time.now_ns()",
		"rand.intn(\"k\", 10)",
		"uuid.rfc4122(\"k\")",
		"http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"}).status_code",
		"opa.runtime().env",
		"net.lookup_ip_addr(\"localhost\")",
		"time.now_ns() + 1", // nested in another call
	} {
		t.Run(call, func(t *testing.T) {
			dir := copyPolicies(t)
			// The call sits in a rule the decision does not reach: what
			// the policy could call decides, not what one input reaches.
			writeFile(t, filepath.Join(dir, "nd.rego"), "package parachute.message\n\nnd := x if {\n\tinput.command == \"never\"\n\tx := "+call+"\n}\n")
			e := newEngine(t, Options{PolicyDir: dir})
			why := e.Uncached()
			name, _, _ := strings.Cut(call, "(")
			if !strings.Contains(why, name) || !strings.Contains(why, "nd.rego:") {
				t.Fatalf("Uncached() = %q, want it to name %s and nd.rego:line", why, name)
			}
			e.Decide(context.Background(), msg("deny", "x"))
			if d := e.Decide(context.Background(), msg("deny", "x")); d.Cached {
				t.Fatal("decision cached under a non-deterministic policy")
			}
		})
	}
	if why := newEngine(t, Options{}).Uncached(); why != "" {
		t.Errorf("deterministic test policy: Uncached() = %q", why)
	}
	if why := newEngine(t, Options{CacheSize: -1}).Uncached(); why != "disabled" {
		t.Errorf("CacheSize -1: Uncached() = %q", why)
	}
}

func TestCacheIsBoundedLRU(t *testing.T) {
	c := newDecisionCache(2)
	r := func(s string) *result { return &result{reply: s} }
	c.put([]byte("a"), r("a"))
	c.put([]byte("b"), r("b"))
	c.get([]byte("a")) // a is now the most recent
	c.put([]byte("c"), r("c"))
	if c.get([]byte("b")) != nil {
		t.Error("the least recently used entry was kept")
	}
	if c.get([]byte("a")) == nil || c.get([]byte("c")) == nil {
		t.Error("a recent entry was evicted")
	}
	if c.len() != 2 {
		t.Errorf("len %d, want 2", c.len())
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Decisions racing data swaps never see an answer from another revision:
// every decision's greeting is the one its revision was built with.
func TestCacheUnderConcurrentSetData(t *testing.T) {
	e := newEngine(t, Options{Data: map[string]any{"greeting": "g0"}})
	ctx := context.Background()
	byRevision := sync.Map{}
	byRevision.Store(e.Revision(), "g0")
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				d := e.Evaluate(ctx, msg("allow", fmt.Sprint("w", w, "-", i%3)))
				want, ok := byRevision.Load(d.Revision)
				if ok && d.String("greeting") != want {
					t.Errorf("revision %s answered greeting %q, want %q", d.Revision, d.String("greeting"), want)
					return
				}
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		g := fmt.Sprint("g", i)
		// A decision of a revision not registered yet is not checked.
		if err := e.SetData(ctx, map[string]any{"greeting": g}); err != nil {
			t.Fatal(err)
		}
		byRevision.Store(e.Revision(), g)
	}
	close(done)
	wg.Wait()
}

// The deadline is one timer, and the caller's context still cancels: a
// cancelled caller does not wait for the deadline.
func TestCallerCancelStopsEvaluation(t *testing.T) {
	e := newEngine(t, Options{Timeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	d := e.Decide(ctx, msg("slow", "x"))
	if d.Allow || !slices.Equal(d.Reasons, []string{ReasonPolicyError}) || d.Err == nil {
		t.Fatalf("cancelled slow decision: allow %v reasons %v err %v", d.Allow, d.Reasons, d.Err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("a cancelled caller waited %v", took)
	}
}

// The field names of a typed document are made once and shared: building
// a document allocates for its values and objects, not for every key, and
// concurrent builds (every decision runs one) agree with each other.
func TestDocumentKeysAreSharedAcrossBuilds(t *testing.T) {
	in := MessageInput{Connector: "tg", ConnectorType: "telegram",
		Sender: Sender{ID: "telegram:1", PlatformID: "1", DisplayName: "one"}, Chat: Chat{ID: "1", Kind: "dm"},
		Binding: &Binding{Role: "member", Workspace: "team", Source: "invite"}, RequestedTrustLevel: "direct", RequestedWorkspace: "team"}
	want := buildValue(in)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if got := buildValue(in); got.Compare(want) != 0 {
					errs <- got.String()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("concurrent build gave %s, want %s", e, want)
	}
	if keyTerm("connector_type") != keyTerm("connector_type") {
		t.Fatal("a field name is made anew on every build")
	}
	// With its 18 keys shared, a build allocates for its values and its
	// four objects only (49 with OPA v1.22; 87 when every key was made anew).
	if n := testing.AllocsPerRun(100, func() { buildValue(in) }); n > 55 {
		t.Fatalf("building a message document allocates %v times, want at most 55", n)
	}
}
