package sessions

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// Concurrent reservations never see the same count: each one's "before"
// includes every reservation made ahead of it, so a budget check on it
// cannot be passed twice with the same headroom.
func TestUsageReserveIsAtomic(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t)
	u := Usage{Store: s}
	const calls, each = 50, 30
	befores := make([]int64, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			_, b, err := u.Reserve(ctx, "local:a", each)
			if err != nil {
				t.Error(err)
			}
			befores[i] = b
		})
	}
	wg.Wait()
	slices.Sort(befores)
	for i, b := range befores {
		if b != int64(i*each) {
			t.Fatalf("reservation %d saw %d tokens before it; want %d (all: %v)", i, b, i*each, befores)
		}
	}
	if n, _ := u.TokensToday(ctx, "local:a"); n != calls*each {
		t.Fatalf("count %d; want %d", n, calls*each)
	}
}

func TestUsageSettle(t *testing.T) {
	tests := []struct {
		name     string
		reserve  int64
		settle   []int64 // each Settle call in turn
		want     int64
		restart  bool // close and reopen the store between Reserve and Settle
		nextDays bool // Settle after a Reserve on a later day pruned it
	}{
		{"to reported usage", 500, []int64{120}, 120, false, false},
		{"released", 500, []int64{0}, 0, false, false},
		{"above the reservation", 500, []int64{700}, 700, false, false},
		{"negative counts as zero", 500, []int64{-5}, 0, false, false},
		{"twice changes nothing", 500, []int64{120, 400}, 120, false, false},
		{"never settled: counted at the reservation", 500, nil, 500, true, false},
		{"after a restart", 500, []int64{80}, 80, true, false},
		{"pruned the next day: stays reserved", 500, []int64{80}, 500, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, path := openStore(t)
			day := time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)
			u := Usage{Store: s, Now: func() time.Time { return day }}
			_ = u.AddTokens(ctx, "local:a", 10)
			id, before, err := u.Reserve(ctx, "local:a", tt.reserve)
			if err != nil || before != 10 {
				t.Fatalf("Reserve: before %d, %v", before, err)
			}
			if tt.restart {
				s.Close()
				s2, err := OpenStore(StoreOptions{Path: path})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s2.Close() })
				u.Store = s2
			}
			if tt.nextDays {
				next := Usage{Store: u.Store, Now: func() time.Time { return day.Add(2 * time.Hour) }}
				if _, _, err := next.Reserve(ctx, "local:b", 1); err != nil {
					t.Fatal(err)
				}
			}
			for _, a := range tt.settle {
				if err := u.Settle(ctx, id, a); err != nil {
					t.Fatal(err)
				}
			}
			if n, _ := u.TokensToday(ctx, "local:a"); n != 10+tt.want {
				t.Fatalf("count %d; want %d", n, 10+tt.want)
			}
		})
	}
}
