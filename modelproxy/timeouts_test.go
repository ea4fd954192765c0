package modelproxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/engine"
)

// An upstream that goes silent, or never answers, ends the call within the
// configured bound; the reservation stays counted, since the provider may
// have worked on it.
func TestSilentUpstreamsEndTheCall(t *testing.T) {
	const body = `{"model":"m","max_tokens":100,"messages":[]}`
	tests := []struct {
		name     string
		stream   bool
		answer   func(w http.ResponseWriter, r *http.Request, done <-chan struct{})
		wantCode int
		wantText string
	}{
		{"stream goes silent", true, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"h\"}}]}\n\n")
			w.(http.Flusher).Flush()
			<-done
		}, 200, "data:"},
		{"body goes silent", false, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			fmt.Fprint(w, `{"choices":`)
			w.(http.Flusher).Flush()
			<-done
		}, 502, "sent nothing for"},
		{"headers never come", false, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) {
			<-done
		}, 502, "could not be reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.answer(w, r, done) }))
			defer up.Close()
			defer close(done) // the handlers stay silent until the test is over
			usage := settleSignal{&MemoryUsage{}, make(chan int64, 1)}
			p, err := New(Options{Provider: OpenAI, BaseURL: up.URL, APIKey: testKey, Decider: newEngine(t), Usage: usage,
				Session:     func(*http.Request) (engine.SessionFacts, bool) { return session("member"), true },
				IdleTimeout: 100 * time.Millisecond, ResponseHeaderTimeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			b := body
			if tt.stream {
				b = strings.Replace(body, `"m",`, `"m","stream":true,`, 1)
			}
			w := send(p, "/v1/chat/completions", b, nil)
			if w.Code != tt.wantCode || !strings.Contains(w.Body.String(), tt.wantText) {
				t.Fatalf("status %d body %s; want %d containing %q", w.Code, w.Body, tt.wantCode, tt.wantText)
			}
			if got := <-usage.settled; got < 100 {
				t.Fatalf("settled at %d; want the reservation (at least max_tokens 100)", got)
			}
		})
	}
}

// A sandbox that sends its headers and then trickles (or stops sending)
// the body is answered within ReadTimeout, not held open.
func TestSlowRequestBodyIsCut(t *testing.T) {
	up := &recordingUpstream{}
	p := proxyTo(t, OpenAI, up, newEngine(t), &MemoryUsage{}, session("member"))
	p.opts.ReadTimeout = 100 * time.Millisecond
	srv := httptest.NewServer(p)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound on the test, not a wait
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || up.count() != 0 {
		t.Fatalf("status %d, %d upstream calls; want 400 and none", resp.StatusCode, up.count())
	}
}

// Every secret in Options.Secrets is redacted like the key.
func TestSecretsAreRedacted(t *testing.T) {
	const botToken = "123456:bot-token-the-gateway-holds"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"error":{"type":"invalid_request_error","message":"saw %s and %s"}}`, botToken, r.Header.Get("Authorization"))
	}))
	defer up.Close()
	p, err := New(Options{Provider: OpenAI, BaseURL: up.URL, APIKey: testKey, Secrets: []string{botToken, "short"},
		Decider: newEngine(t), Usage: &MemoryUsage{},
		Session: func(*http.Request) (engine.SessionFacts, bool) { return session("member"), true }})
	if err != nil {
		t.Fatal(err)
	}
	w := send(p, "/v1/chat/completions", `{"model":"m"}`, nil)
	if strings.Contains(w.Body.String(), botToken) || strings.Contains(w.Body.String(), testKey) || !strings.Contains(w.Body.String(), "[redacted]") {
		t.Fatalf("body %s", w.Body)
	}
	if n, _ := p.opts.Usage.(*MemoryUsage).TokensToday(context.Background(), "telegram:1"); n != 0 {
		t.Fatalf("an error answer counted %d tokens", n)
	}
}
