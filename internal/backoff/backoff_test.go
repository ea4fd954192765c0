package backoff

import (
	"context"
	"testing"
	"time"
)

// TestNextEqualJitter pins the jitter at both ends and checks that every wait
// lies in [d/2, d] for the doubling, capped d: equal jitter, as documented.
func TestNextEqualJitter(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		want     []time.Duration // d for each attempt
	}{
		{"doubles then caps", 100 * time.Millisecond, time.Second,
			[]time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}},
		{"zero value uses defaults", 0, 0,
			[]time.Duration{DefaultMin, 2 * DefaultMin, 4 * DefaultMin}},
		{"min above max is capped", time.Hour, time.Second,
			[]time.Duration{time.Second, time.Second}},
		{"no overflow after many attempts", time.Second, 0,
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax, DefaultMax}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, end := range []string{"low", "high"} {
				old := jitter
				t.Cleanup(func() { jitter = old })
				jitter = func(n int64) int64 {
					if end == "low" {
						return 0
					}
					return n - 1
				}
				b := Backoff{Min: tt.min, Max: tt.max}
				for i, d := range tt.want {
					got := b.Next()
					want := d / 2
					if end == "high" {
						want = d/2 + d/2
					}
					if got != want {
						t.Fatalf("%s jitter, attempt %d: Next() = %v, want %v (d = %v)", end, i, got, want, d)
					}
				}
			}
		})
	}
}

func TestNextRandomStaysInBounds(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for i := range 1000 {
		d := min(10*time.Millisecond<<min(i, 16), 80*time.Millisecond)
		if got := b.Next(); got < d/2 || got > d {
			t.Fatalf("attempt %d: Next() = %v, want within [%v, %v]", i, got, d/2, d)
		}
	}
}

func TestResetStartsOver(t *testing.T) {
	old := jitter
	t.Cleanup(func() { jitter = old })
	jitter = func(int64) int64 { return 0 }
	b := Backoff{Min: time.Second, Max: time.Hour}
	b.Next()
	b.Next()
	b.Reset()
	if got := b.Next(); got != time.Second/2 {
		t.Fatalf("after Reset, Next() = %v, want %v", got, time.Second/2)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep with a cancelled context reported that the hour passed")
	}
	if !Sleep(context.Background(), 0) {
		t.Fatal("Sleep(0) reported cancellation")
	}
}
