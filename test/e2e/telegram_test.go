package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/test/fakes/model"
	tgfake "github.com/parachute-gateway/parachute/test/fakes/telegram"
)

// Through the Telegram connector (against the fake Bot API): a stranger on
// a public bot is a sandboxed guest, and the message past the guest's rate
// limit gets a polite retry-after reply instead of a turn.
func TestTelegramPublicBotGuestRateLimited(t *testing.T) {
	tg := tgfake.New(tgToken)
	t.Cleanup(tg.Close)
	e := setup(t, fmt.Sprintf(`
connectors:
  tg:
    type: telegram
    token_env: E2E_TG_TOKEN
    api_endpoint: %s
    drop_pending_updates: false
    public: true
roles:
  guest: {messages_per_minute: 2, message_burst: 2}
`, tg.URL), model.Script{Steps: []model.Step{model.Reply("hello guest")}, RepeatLast: true})

	for i := 1; i <= 3; i++ {
		tg.Push(tgfake.Message{FromID: 4242, FirstName: "admin", ChatID: 4242, ChatType: "private", Text: fmt.Sprintf("message %d", i)})
	}
	sent := tg.WaitSent(3, 60*time.Second)
	if len(sent) < 3 {
		t.Fatalf("the bot sent %d messages, want 3: %+v", len(sent), sent)
	}
	var answered, limited int
	for _, s := range sent {
		switch {
		case strings.Contains(s.Text, "hello guest"):
			answered++
		case strings.Contains(strings.ToLower(s.Text), "try again"):
			limited++
		}
	}
	if answered != 2 || limited != 1 {
		t.Fatalf("answered %d, rate-limited %d; want 2 and 1: %+v", answered, limited, sent)
	}
	var sawLimit bool
	for _, r := range e.records() {
		if r.Kind == "message" && r.User == "telegram:4242" {
			if strings.Contains(strings.Join(r.Reasons, ","), "rate-limited") {
				sawLimit = true
			}
			if r.Connector != "tg" {
				t.Errorf("record connector %q", r.Connector)
			}
		}
		if r.Kind == "session" && r.User == "telegram:4242" && r.TrustLevel != "sandboxed" {
			t.Errorf("a public bot's guest got trust %q", r.TrustLevel)
		}
	}
	if !sawLimit {
		t.Error("the rate-limited message was not recorded with reason rate-limited")
	}
}
