package modelproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/engine"
)

// recordingUpstream answers every request with answer and keeps the bodies
// and headers it received.
type recordingUpstream struct {
	mu     sync.Mutex
	bodies []map[string]any
	heads  []http.Header
	answer func(w http.ResponseWriter, r *http.Request)
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	u.mu.Lock()
	u.bodies = append(u.bodies, m)
	u.heads = append(u.heads, r.Header.Clone())
	u.mu.Unlock()
	if u.answer != nil {
		u.answer(w, r)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/v1/messages") {
		fmt.Fprint(w, `{"type":"message","content":[],"usage":{"input_tokens":5,"output_tokens":5}}`)
		return
	}
	fmt.Fprint(w, `{"choices":[],"usage":{"total_tokens":10}}`)
}

func (u *recordingUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bodies)
}

// engineWith is the shipped policy with extra roles.
func engineWith(t *testing.T, roles map[string]any, rec engine.Recorder) *engine.Engine {
	t.Helper()
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: "../policies", Recorder: rec, Data: map[string]any{
		"connectors": map[string]any{"tg": map[string]any{"type": "telegram", "allowed_users": []any{"1"}}},
		"roles":      roles,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func proxyTo(t *testing.T, provider string, up http.Handler, d Decider, u Usage, facts engine.SessionFacts) *Proxy {
	t.Helper()
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	p, err := New(Options{Provider: provider, BaseURL: srv.URL, APIKey: testKey, Decider: d, Usage: u,
		Session: func(*http.Request) (engine.SessionFacts, bool) { return facts, true }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// errMessage is the message of an error answer in either provider's format.
func errMessage(w *httptest.ResponseRecorder) string {
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	return e.Error.Message
}

// What is decided is what is sent: every body the policy could read one
// way and the provider another is refused before anything is decided.
func TestOneParse(t *testing.T) {
	tests := []struct {
		name, provider, body, want string
	}{
		{"case-variant model", OpenAI, `{"model":"gpt-expensive","MODEL":"small-model"}`, `"MODEL" is a case variant of "model"`},
		{"case-variant stream", OpenAI, `{"model":"small-model","stream":true,"STREAM":false}`, `"STREAM" is a case variant of "stream"`},
		{"case-variant max_tokens", Anthropic, `{"model":"small-model","max_tokens":1,"Max_Tokens":100000}`, `"Max_Tokens"`},
		{"duplicate model", OpenAI, `{"model":"small-model","model":"gpt-expensive"}`, "duplicate"},
		{"duplicate deep", Anthropic, `{"model":"small-model","max_tokens":1,"tools":[{"type":"custom","type":"web_fetch_20250910"}]}`, "duplicate"},
		{"unknown field", OpenAI, `{"model":"small-model","extra_body":{"x":1}}`, `field "extra_body" is not a field of the OpenAI Chat Completions API`},
		{"anthropic-only field on openai", OpenAI, `{"model":"small-model","mcp_servers":[]}`, `"mcp_servers"`},
		{"case-variant tool type", Anthropic, `{"model":"small-model","max_tokens":1,"tools":[{"name":"x","input_schema":{},"Type":"web_fetch_20250910"}]}`, `"Type" is a case variant of "type"`},
		{"case-variant mcp url", Anthropic, `{"model":"small-model","max_tokens":1,"mcp_servers":[{"type":"url","url":"https://a.test","URL":"https://b.test"}]}`, `"URL"`},
		{"lone surrogate", OpenAI, `{"model":"small-model\ud800"}`, "surrogate"},
		{"invalid UTF-8", OpenAI, "{\"model\":\"small-model\xff\"}", "UTF-8"},
		{"stream not a bool", OpenAI, `{"model":"small-model","stream":"yes"}`, "stream must be true or false"},
		{"model not a string", OpenAI, `{"model":["small-model"]}`, "model must be a string"},
		{"fractional max_tokens", OpenAI, `{"model":"small-model","max_tokens":1.5}`, "max_tokens must be an integer"},
		{"n zero", OpenAI, `{"model":"small-model","n":0}`, "n must be between 1 and 128"},
		{"trailing data", OpenAI, `{"model":"small-model"}{"model":"gpt-expensive"}`, "strict JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &recordingUpstream{}
			p := proxyTo(t, tt.provider, up, newEngine(t), &MemoryUsage{}, session("reviewer"))
			path := "/v1/chat/completions"
			if tt.provider == Anthropic {
				path = "/v1/messages"
			}
			w := send(p, path, tt.body, nil)
			if w.Code != http.StatusBadRequest || !strings.Contains(errMessage(w), tt.want) {
				t.Fatalf("status %d body %s; want 400 naming %q", w.Code, w.Body, tt.want)
			}
			if up.count() != 0 {
				t.Fatalf("refused body reached the provider: %v", up.bodies)
			}
		})
	}
}

// The bytes sent are encoded from what was decided, with the gateway's
// defaults in them: a cap where the caller gave none, usage asked for.
func TestForwardedBodyIsWhatWasDecided(t *testing.T) {
	tests := []struct {
		name, provider, body string
		check                func(t *testing.T, got map[string]any)
	}{
		{"missing max_tokens gets the default cap", OpenAI, `{"model":"small-model","messages":[]}`, func(t *testing.T, got map[string]any) {
			if got["max_tokens"] != float64(DefaultMaxTokens) {
				t.Errorf("max_tokens %v; want %d", got["max_tokens"], DefaultMaxTokens)
			}
		}},
		{"negative max_tokens gets the default cap", Anthropic, `{"model":"small-model","max_tokens":-1,"messages":[]}`, func(t *testing.T, got map[string]any) {
			if got["max_tokens"] != float64(DefaultMaxTokens) {
				t.Errorf("max_tokens %v; want %d", got["max_tokens"], DefaultMaxTokens)
			}
		}},
		{"max_completion_tokens kept, no max_tokens added", OpenAI, `{"model":"small-model","max_completion_tokens":50}`, func(t *testing.T, got map[string]any) {
			if _, ok := got["max_tokens"]; ok || got["max_completion_tokens"] != float64(50) {
				t.Errorf("body %v", got)
			}
		}},
		{"stream asks for usage, keeps the caller's options", OpenAI, `{"model":"small-model","stream":true,"stream_options":{"x":1}}`, func(t *testing.T, got map[string]any) {
			so, _ := got["stream_options"].(map[string]any)
			if so["include_usage"] != true || so["x"] != float64(1) {
				t.Errorf("stream_options %v", got["stream_options"])
			}
		}},
		{"model as decided", OpenAI, `{"model":"small-model","temperature":0.5}`, func(t *testing.T, got map[string]any) {
			if got["model"] != "small-model" || got["temperature"] != 0.5 {
				t.Errorf("body %v", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &recordingUpstream{answer: func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{}`) }}
			p := proxyTo(t, tt.provider, up, newEngine(t), &MemoryUsage{}, session("reviewer"))
			path := "/v1/chat/completions"
			if tt.provider == Anthropic {
				path = "/v1/messages"
			}
			if w := send(p, path, tt.body, nil); w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			tt.check(t, up.bodies[0])
		})
	}
}

// With 950 of 1,000 tokens used, 50 concurrent calls end at or under the
// budget: the worst case of each is reserved before it goes out.
func TestBudgetIsACapUnderConcurrency(t *testing.T) {
	for _, provider := range []string{OpenAI, Anthropic} {
		t.Run(provider, func(t *testing.T) {
			e := engineWith(t, map[string]any{"member": map[string]any{
				"tokens_per_day": 1000, "model_calls_per_minute": 100000, "model_call_burst": 1000,
			}}, nil)
			usage := &MemoryUsage{}
			_ = usage.AddTokens(context.Background(), "telegram:1", 950)
			up := &recordingUpstream{}
			p := proxyTo(t, provider, up, e, usage, session("member"))
			path := "/v1/chat/completions"
			if provider == Anthropic {
				path = "/v1/messages"
			}
			var ok, refused atomic.Int32
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					w := send(p, path, `{"model":"m","max_tokens":10,"messages":[]}`, nil)
					switch w.Code {
					case 200:
						ok.Add(1)
					case 429:
						refused.Add(1)
					default:
						t.Errorf("status %d: %s", w.Code, w.Body)
					}
				})
			}
			wg.Wait()
			n, _ := usage.TokensToday(context.Background(), "telegram:1")
			if n > 1000 || ok.Load() == 0 {
				t.Fatalf("%d allowed, %d refused, usage %d; want at most 1000 and at least one call", ok.Load(), refused.Load(), n)
			}
		})
	}
}

func TestReservationCoversTheWorstCase(t *testing.T) {
	tests := []struct {
		name, body string
		used       int64
		wantCode   int
	}{
		{"n multiplies max_tokens", `{"model":"m","max_tokens":1000,"n":100}`, 100000, 429},
		{"n within budget", `{"model":"m","max_tokens":1000,"n":10}`, 100000, 200},
		{"missing max_tokens reserves the default", `{"model":"m"}`, 200000 - DefaultMaxTokens, 429},
		{"negative max_tokens reserves the default", `{"model":"m","max_tokens":-5}`, 200000 - DefaultMaxTokens, 429},
		{"input counts by size", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"` + strings.Repeat("a", 30000) + `"}]}`, 195000, 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &recordingUpstream{}
			usage := &MemoryUsage{}
			_ = usage.AddTokens(context.Background(), "telegram:1", tt.used)
			p := proxyTo(t, OpenAI, up, newEngine(t), usage, session("member"))
			if w := send(p, "/v1/chat/completions", tt.body, nil); w.Code != tt.wantCode {
				t.Fatalf("status %d: %s; want %d", w.Code, w.Body, tt.wantCode)
			}
			if n, _ := usage.TokensToday(context.Background(), "telegram:1"); tt.wantCode != 200 && n != tt.used {
				t.Fatalf("a refused call left %d tokens counted; want %d", n, tt.used)
			}
		})
	}
}

// settleSignal is a Usage that tells when a reservation is settled.
type settleSignal struct {
	*MemoryUsage
	settled chan int64
}

func (s settleSignal) Settle(ctx context.Context, id string, actual int64) error {
	err := s.MemoryUsage.Settle(ctx, id, actual)
	s.settled <- actual
	return err
}

// A stream without usage, or one the sandbox cuts, counts at least its
// reservation.
func TestStreamsWithoutUsageCountTheReservation(t *testing.T) {
	const body = `{"model":"m","stream":true,"max_tokens":100,"messages":[]}`
	reserve := int64(100) + (int64(len(`{"max_tokens":100,"messages":[],"model":"m","stream":true,"stream_options":{"include_usage":true}}`))+2)/3
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
		cut    bool
		want   int64
	}{
		{"no usage event", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"h\"}}]}\n\ndata: [DONE]\n\n")
		}, false, reserve},
		{"usage but no end", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"total_tokens\":7}}\n\n")
		}, false, reserve},
		{"stream shows more than reserved", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"total_tokens\":5000}}\n\n")
		}, false, 5000},
		{"complete with usage", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"total_tokens\":7}}\n\ndata: [DONE]\n\n")
		}, false, 7},
		{"cut by the sandbox", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"h\"}}]}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, true, reserve},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			usage := settleSignal{&MemoryUsage{}, make(chan int64, 1)}
			p := proxyTo(t, OpenAI, &recordingUpstream{answer: tt.answer}, newEngine(t), usage, session("member"))
			srv := httptest.NewServer(p)
			defer srv.Close()
			resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.cut {
				buf := make([]byte, 10)
				_, _ = resp.Body.Read(buf)
			} else {
				_, _ = io.ReadAll(resp.Body)
			}
			resp.Body.Close()
			if got := <-usage.settled; got != tt.want {
				t.Fatalf("settled at %d; want %d", got, tt.want)
			}
			if n, _ := usage.TokensToday(context.Background(), "telegram:1"); n != tt.want {
				t.Fatalf("counted %d; want %d", n, tt.want)
			}
		})
	}
}

// A redirect is an upstream error: the key and the body never go to the
// address it names.
func TestRedirectsAreNotFollowed(t *testing.T) {
	for _, provider := range []string{OpenAI, Anthropic} {
		for _, code := range []int{301, 302, 307, 308} {
			t.Run(fmt.Sprint(provider, code), func(t *testing.T) {
				elsewhere := &recordingUpstream{}
				other := httptest.NewServer(elsewhere)
				defer other.Close()
				up := &recordingUpstream{answer: func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, other.URL+r.URL.Path, code)
				}}
				usage := &MemoryUsage{}
				p := proxyTo(t, provider, up, newEngine(t), usage, session("member"))
				path := "/v1/chat/completions"
				if provider == Anthropic {
					path = "/v1/messages"
				}
				w := send(p, path, `{"model":"m","max_tokens":5,"messages":[]}`, nil)
				if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "redirect") {
					t.Fatalf("status %d body %s; want 502 naming the redirect", w.Code, w.Body)
				}
				if elsewhere.count() != 0 {
					t.Fatalf("the redirect was followed: %v", elsewhere.heads)
				}
				if n, _ := usage.TokensToday(context.Background(), "telegram:1"); n != 0 {
					t.Fatalf("a call the provider never ran counted %d tokens", n)
				}
			})
		}
	}
}

// Provider-side tools and betas reach the network from the provider's
// side; a session without network gets none of them, and the decision
// names each.
func TestProviderSideToolsAreDecided(t *testing.T) {
	network := session("member")
	network.Network = true
	tests := []struct {
		name     string
		facts    engine.SessionFacts
		roles    map[string]any
		provider string
		body     string
		beta     string
		wantCode int
		want     engine.ModelInput // the fields compared
	}{
		{"the issue's request, no network", session("owner"), nil, Anthropic,
			`{"model":"m","max_tokens":5,"messages":[],"mcp_servers":[{"type":"url","url":"https://mcp.evil.test/sse","name":"x"}],"tools":[{"type":"web_fetch_20250910","name":"web_fetch"}]}`,
			"mcp-client-2025-04-04,web-fetch-2025-09-10", 403,
			engine.ModelInput{ProviderTools: []string{"web_fetch_20250910"}, MCPServers: []string{"https://mcp.evil.test/sse"}, Betas: []string{"mcp-client-2025-04-04", "web-fetch-2025-09-10"}}},
		{"web search, no network", session("member"), nil, Anthropic,
			`{"model":"m","max_tokens":5,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}`, "", 403,
			engine.ModelInput{ProviderTools: []string{"web_search_20250305"}}},
		{"url image source, no network", session("member"), nil, Anthropic,
			`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x.test/a.png"}}]}]}`, "", 403,
			engine.ModelInput{ProviderTools: []string{ToolURLSource}}},
		{"openai web_search_options", session("member"), nil, OpenAI,
			`{"model":"m","web_search_options":{}}`, "", 403,
			engine.ModelInput{ProviderTools: []string{ToolWebSearchOptions}}},
		{"openai image by URL", session("member"), nil, OpenAI,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://169.254.169.254/"}}]}]}`, "", 403,
			engine.ModelInput{ProviderTools: []string{ToolURLSource}}},
		{"openai inline image is not fetched", session("member"), nil, OpenAI,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`, "", 200,
			engine.ModelInput{}},
		{"client tools are not provider tools", session("member"), nil, Anthropic,
			`{"model":"m","max_tokens":5,"messages":[],"tools":[{"name":"read_file","input_schema":{"type":"object"}}]}`, "prompt-caching-2024-07-31", 200,
			engine.ModelInput{Betas: []string{"prompt-caching-2024-07-31"}}},
		{"with network and the role's consent", network, map[string]any{"member": map[string]any{"provider_tools": []any{"web_search_*"}}}, Anthropic,
			`{"model":"m","max_tokens":5,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}`, "", 200,
			engine.ModelInput{ProviderTools: []string{"web_search_20250305"}}},
		{"unknown beta", session("member"), nil, Anthropic, `{"model":"m","max_tokens":5,"messages":[]}`, "brand-new-2030-01-01", 403,
			engine.ModelInput{Betas: []string{"brand-new-2030-01-01"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []engine.ModelInput
			rec := engine.RecorderFunc(func(_ context.Context, in engine.Input, _ *engine.Decision) error {
				if m, ok := in.(engine.ModelInput); ok {
					mu.Lock()
					got = append(got, m)
					mu.Unlock()
				}
				return nil
			})
			up := &recordingUpstream{}
			p := proxyTo(t, tt.provider, up, engineWith(t, tt.roles, rec), &MemoryUsage{}, tt.facts)
			path := "/v1/chat/completions"
			if tt.provider == Anthropic {
				path = "/v1/messages"
			}
			hdr := map[string]string{}
			if tt.beta != "" {
				hdr["anthropic-beta"] = tt.beta
			}
			w := send(p, path, tt.body, hdr)
			if w.Code != tt.wantCode {
				t.Fatalf("status %d body %s; want %d", w.Code, w.Body, tt.wantCode)
			}
			if (tt.wantCode == 200) != (up.count() == 1) {
				t.Fatalf("%d calls reached the provider", up.count())
			}
			if len(got) != 1 {
				t.Fatalf("%d decisions recorded; want 1", len(got))
			}
			if fmt.Sprint(got[0].ProviderTools, got[0].MCPServers, got[0].Betas) != fmt.Sprint(tt.want.ProviderTools, tt.want.MCPServers, tt.want.Betas) {
				t.Fatalf("decided on tools %v, servers %v, betas %v; want %v %v %v", got[0].ProviderTools, got[0].MCPServers, got[0].Betas,
					tt.want.ProviderTools, tt.want.MCPServers, tt.want.Betas)
			}
			// The audit record names each of them.
			line := audit.FromDecision(got[0], &engine.Decision{Entry: engine.Model})
			for k, v := range map[string][]string{"provider_tools": tt.want.ProviderTools, "mcp_servers": tt.want.MCPServers, "betas": tt.want.Betas} {
				if line.Detail[k] != strings.Join(v, ",") {
					t.Errorf("audit detail %s = %q; want %q", k, line.Detail[k], strings.Join(v, ","))
				}
			}
			if tt.wantCode == 200 && tt.provider == Anthropic && up.heads[0].Get("anthropic-beta") != tt.beta {
				t.Fatalf("upstream anthropic-beta %q; want %q", up.heads[0].Get("anthropic-beta"), tt.beta)
			}
		})
	}
}

// An upstream that echoes what it was sent never gets the key back to the
// sandbox: error bodies are read for their type and message only, and
// every secret is redacted from anything relayed.
func TestUpstreamEchoesLeakNoSecret(t *testing.T) {
	echo := func(status int, jsonErr bool) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			var hs []string
			for k, v := range r.Header {
				hs = append(hs, k+": "+strings.Join(v, ","))
			}
			all := strings.Join(hs, "; ")
			w.WriteHeader(status)
			if jsonErr {
				b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]any{"type": "invalid_request_error", "message": "bad headers: " + all}, "debug": all})
				w.Write(b)
				return
			}
			fmt.Fprintf(w, "<html>%s</html>", all)
		}
	}
	tests := []struct {
		name     string
		provider string
		answer   func(w http.ResponseWriter, r *http.Request)
		wantCode int
		want     string
	}{
		{"json error, openai", OpenAI, echo(400, true), 400, "invalid_request_error"},
		{"json error, anthropic", Anthropic, echo(401, true), 401, "bad headers"},
		{"html error", OpenAI, echo(502, false), 502, "the model provider answered 502 Bad Gateway"},
		{"echo in a 200", Anthropic, echo(200, true), 200, "[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := proxyTo(t, tt.provider, &recordingUpstream{answer: tt.answer}, newEngine(t), &MemoryUsage{}, session("member"))
			path := "/v1/chat/completions"
			if tt.provider == Anthropic {
				path = "/v1/messages"
			}
			w := send(p, path, `{"model":"m","max_tokens":5,"messages":[]}`, nil)
			if w.Code != tt.wantCode || !strings.Contains(w.Body.String(), tt.want) {
				t.Fatalf("status %d body %s; want %d containing %q", w.Code, w.Body, tt.wantCode, tt.want)
			}
			if strings.Contains(w.Body.String(), testKey) {
				t.Fatalf("the key reached the sandbox: %s", w.Body)
			}
			if tt.wantCode != 200 && strings.Contains(w.Body.String(), "debug") {
				t.Fatalf("the error body was relayed: %s", w.Body)
			}
		})
	}
}
