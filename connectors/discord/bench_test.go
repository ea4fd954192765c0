package discord_test

import (
	"context"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/connectors/discord"
	"github.com/parachute-gateway/parachute/connectors/internal/testkit"
	fake "github.com/parachute-gateway/parachute/test/fakes/discord"
)

// BenchmarkDiscordInboundToReply: MESSAGE_CREATE sent by the fake gateway
// over WebSocket → connector → real policies (1,000 allowed users, rate
// limits and recording on) → echo agent → reply accepted by the fake REST
// API. One message at a time; reports the median.
func BenchmarkDiscordInboundToReply(b *testing.B) {
	f := fake.New(token)
	b.Cleanup(f.Close)
	c, err := discord.New(discord.Options{Name: "dc", Token: token, APIBase: f.Base(), Logger: testkit.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	users := make([]string, 1000)
	for i := range users {
		users[i] = strconv.Itoa(110000000000000000 + i)
	}
	router := testkit.Router(b, testkit.Data("dc", "discord", []string{owner}, users), &testkit.Turns{}, testkit.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, router) }()
	b.Cleanup(func() { cancel(); <-done })
	if !until(f, f.Connected) {
		b.Fatal("the connector did not open a gateway session in 10 s")
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		u := users[i%len(users)]
		t0 := time.Now()
		f.Send(fake.Message{ChannelID: dmChannel(u), AuthorID: u, Username: "u", Content: "ping"})
		if !until(f, func() bool { return len(f.Sent()) >= i+1 }) {
			b.Fatalf("reply %d not accepted by the fake in 10 s", i+1)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
