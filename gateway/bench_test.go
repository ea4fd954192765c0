package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"
)

// BenchmarkTurnOverhead measures one message through the gateway with a
// warm session: local connector HTTP, dedup, message decision, session
// look-up, history, one exec on an in-process sandbox that asks the session
// socket once, the reply, and every decision durably audited. The model and
// the sandbox's own exec cost are not in it (runtime benchmarks measure
// exec). Reports p50/p99 in µs.
func BenchmarkTurnOverhead(b *testing.B) {
	_, conn, _ := startB(b)
	url := "http://" + conn.Addr().String() + "/v1/messages"
	client := &http.Client{}
	send := func(i int) {
		body, _ := json.Marshal(map[string]string{"user": "alice", "text": fmt.Sprintf("m%d", i), "message_id": fmt.Sprintf("id%d", i)})
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
	send(-1) // warm the session
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		send(i)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
