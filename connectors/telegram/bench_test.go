package telegram_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors/internal/testkit"
	"github.com/parachute-gateway/parachute/connectors/telegram"
	fake "github.com/parachute-gateway/parachute/test/fakes/telegram"
)

// benchRig: a webhook-mode connector, its handler called in process, the
// real engine and policies with 1,000 allowed users, rate limits and
// decision recording on, an echo agent, replies sent to the fake Bot API
// over loopback HTTP.
func benchRig(b *testing.B) (*fake.Server, http.Handler) {
	f := fake.New(token)
	b.Cleanup(f.Close)
	c, err := telegram.New(telegram.Options{Name: "tg", Token: token, Endpoint: f.Endpoint(), WebhookListen: "127.0.0.1:0", WebhookSecret: "bench-secret", Logger: testkit.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	if err := c.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	users := make([]string, 1000)
	for i := range users {
		users[i] = strconv.Itoa(10000 + i)
	}
	router := testkit.Router(b, testkit.Data("tg", "telegram", []string{"1001"}, users), &testkit.Turns{}, testkit.Discard())
	return f, c.WebhookHandler(ctx, router)
}

func deliver(b *testing.B, h http.Handler, n int) {
	user := 10000 + n%1000
	body := fmt.Sprintf(`{"update_id":%d,"message":{"message_id":%d,"date":1,"from":{"id":%d,"is_bot":false,"first_name":"U"},"chat":{"id":%d,"type":"private"},"text":"ping %d"}}`, n+1, n+1, user, user, n)
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set(telegram.SecretHeader, "bench-secret")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("webhook status %d", rec.Code)
	}
}

// BenchmarkTelegramInboundToReply: one update at a time, from the webhook
// request to the reply accepted by the (fake) Bot API. Reports the median.
func BenchmarkTelegramInboundToReply(b *testing.B) {
	f, h := benchRig(b)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		deliver(b, h, i)
		if got := f.WaitSent(i+1, 10*time.Second); len(got) < i+1 {
			b.Fatalf("reply %d not accepted by the fake in 10 s", i+1)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkTelegramThroughput: updates from 1,000 users delivered as fast
// as the webhook takes them; messages per second until every reply is
// accepted by the fake Bot API.
func BenchmarkTelegramThroughput(b *testing.B) {
	f, h := benchRig(b)
	var seq atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			deliver(b, h, int(seq.Add(1))-1)
		}
	})
	if got := f.WaitSent(b.N, time.Minute); len(got) < b.N {
		b.Fatalf("%d of %d replies accepted by the fake in a minute", len(got), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
