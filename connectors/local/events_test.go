package local_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/engine"
)

// steppedTurns reports each progress text, then waits until the client
// has seen it, so each one is an edit of its own.
type steppedTurns struct {
	progress []string
	final    string
	seen     chan struct{}
}

func (s *steppedTurns) Turn(ctx context.Context, req connectors.TurnRequest) (string, error) {
	if req.Progress == nil {
		return "no Progress given", nil
	}
	for _, p := range s.progress {
		req.Progress(p)
		select {
		case <-s.seen:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return s.final, nil
}

func (s *steppedTurns) NewSession(context.Context, connectors.TurnRequest) error { return nil }

// TestLocalEventStream: with "Accept: text/event-stream" the reply comes
// as server-sent events: the placeholder message, an edit per progress
// text, a final edit with the full reply, then done with the JSON answer.
// Without the header the answer is the one JSON object, as before.
func TestLocalEventStream(t *testing.T) {
	turns := &steppedTurns{progress: []string{"Hel", "Hello, wor"}, final: "Hello, world.", seen: make(chan struct{})}
	e, err := engine.New(context.Background(), engine.Options{PolicyDir: policyDir(), Data: data(1)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := connectors.NewRouter(connectors.RouterOptions{Decider: e, Turns: turns})
	if err != nil {
		t.Fatal(err)
	}
	c, err := local.New(local.Options{Name: "dev", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(r))
	t.Cleanup(srv.Close)

	req, _ := http.NewRequest("POST", srv.URL+"/v1/messages", strings.NewReader(`{"user":"u0","text":"hi"}`))
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, ct)
	}
	var got []string
	var done local.Response
	sc := bufio.NewScanner(resp.Body)
	name := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			switch name {
			case "message", "edit":
				var ev local.Event
				if err := json.Unmarshal([]byte(data), &ev); err != nil {
					t.Fatal(err)
				}
				if ev.ID != "1" {
					t.Errorf("%s of message %q, want the placeholder 1", name, ev.ID)
				}
				got = append(got, name+":"+ev.Text)
				if name == "edit" && ev.Text != turns.final {
					turns.seen <- struct{}{}
				}
			case "done":
				if err := json.Unmarshal([]byte(data), &done); err != nil {
					t.Fatal(err)
				}
			case "typing":
			default:
				t.Errorf("event %q: %s", name, data)
			}
		}
	}
	want := []string{"message:" + connectors.Placeholder, "edit:Hel", "edit:Hello, wor", "edit:Hello, world."}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events %q, want %q", got, want)
	}
	if done.Reply != turns.final || len(done.Chunks) != 1 {
		t.Errorf("done %+v, want the full reply", done)
	}
}
