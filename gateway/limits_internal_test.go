package gateway

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/engine/ratelimit"
)

// What a kill -9 can lose: the spends of the last LimitSaveInterval. A
// flooder's spends are on disk one interval later without any shutdown.
func TestLimitsSavedWithinOneInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), RateLimitFileName)
		g := &Gateway{log: zerolog.Nop(), limiter: ratelimit.New(ratelimit.Options{}), limitsPath: path}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { g.persistLimits(ctx, LimitSaveInterval); close(done) }()
		defer func() { cancel(); <-done }()

		for range 5 {
			g.limiter.Allow("message:flood", 0, 5)
		}
		time.Sleep(LimitSaveInterval) // fake time: one tick
		synctest.Wait()

		// As if killed now: a new process reads what is on disk.
		after := ratelimit.New(ratelimit.Options{})
		if err := after.ReadFile(path); err != nil {
			t.Fatal(err)
		}
		if ok, _ := after.Allow("message:flood", 0, 5); ok {
			t.Fatal("spends made a full interval before the kill were not on disk")
		}
	})
}
