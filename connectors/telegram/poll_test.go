package telegram_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/internal/testkit"
	"github.com/parachute-gateway/parachute/connectors/telegram"
	"github.com/parachute-gateway/parachute/internal/backoff"
	fake "github.com/parachute-gateway/parachute/test/fakes/telegram"
)

// TestPollingKeepsAMinimumInterval: a server that ignores the long-poll
// timeout answers getUpdates at once and empty. The connector must not
// spin: over 10 s (fake time) it polls about once a second.
func TestPollingKeepsAMinimumInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fake.NewInMemory(token)
		f.IgnoreTimeout(true)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A spinning connector never lets fake time pass: the transport
		// stops it after far more calls than 10 s allows, so the test
		// fails instead of hanging.
		rt := stopAfter{next: f.Transport(), f: f, n: 1000, stop: cancel}
		c, err := telegram.New(telegram.Options{
			Name: "tg", Token: token, Endpoint: "http://telegram.invalid/bot%s/%s",
			HTTPClient: &http.Client{Transport: rt}, Logger: testkit.Discard(), MinPollInterval: minPoll,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Run(ctx, nopHandler{}); err != nil {
			t.Fatal(err)
		}
		if n := f.Calls("getUpdates"); n > 11 {
			t.Fatalf("%d getUpdates calls in 10 s against a server answering at once, want at most 11", n)
		}
	})
}

// minPoll is the MinPollInterval under test (0: the default).
var minPoll time.Duration

// stopAfter calls stop once the fake has answered n getUpdates calls.
type stopAfter struct {
	next http.RoundTripper
	f    *fake.Server
	n    int
	stop func()
}

func (s stopAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	if s.f.Calls("getUpdates") >= s.n {
		s.stop()
	}
	return s.next.RoundTrip(r)
}

type nopHandler struct{}

func (nopHandler) Handle(context.Context, *connectors.Message, connectors.Replier) error { return nil }

// TestDropPendingKeepsWhatArrivesAfterStart: with drop_pending_updates,
// a message queued while the gateway was down is skipped, but one sent
// after the connector was made (after readiness, before polling began)
// is answered.
func TestDropPendingKeepsWhatArrivesAfterStart(t *testing.T) {
	f := fake.New(token)
	t.Cleanup(f.Close)
	f.Push(fake.Message{FromID: alice, Text: "sent while down", Date: time.Now().Add(-time.Hour)})
	lg := &testkit.Log{}
	c, err := telegram.New(telegram.Options{
		Name: "tg", Token: token, Endpoint: f.URL + "/", PollTimeout: time.Second, DropPending: true,
		Logger: lg.Logger(), Backoff: backoff.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Ready: the user writes before the connector has polled.
	f.Push(fake.Message{FromID: alice, Text: "sent right after ready"})
	turns := &testkit.Turns{}
	router := testkit.Router(t, testkit.Data("tg", "telegram", []string{"1001"}, []string{"1002"}), turns, lg.Logger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, router) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	sent := waitSent(t, f, 1, 10*time.Second)
	if len(sent) != 1 || !strings.Contains(sent[0].Text, "sent right after ready") {
		t.Fatalf("sent %+v, want the answer to the message sent after ready", sent)
	}
	f.Push(fake.Message{FromID: alice, Text: "sentinel"})
	sent = waitSent(t, f, 2, 10*time.Second)
	for _, s := range sent {
		if strings.Contains(s.Text, "sent while down") {
			t.Fatalf("answered a message queued while down: %+v", sent)
		}
	}
}
