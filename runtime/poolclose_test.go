package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Close is bounded however containerd behaves: a refill's sandbox start
// stuck in a wedged containerd (one that ignores even the cancellation)
// holds Close only until the deadline, from the caller's context or
// PoolCloseTimeout; a start that honours cancellation lets Close return
// at once. No containerd here: the refill is a goroutine the pool waits
// for, as refill starts one.
func TestPoolCloseBounded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration // 0: the caller gives none
		honours  bool          // the stuck start returns when cancelled
		took     time.Duration
		wantErr  bool
	}{
		{name: "wedged, no deadline: the default bounds it", took: PoolCloseTimeout, wantErr: true},
		{name: "wedged, caller's deadline", deadline: 2 * time.Second, took: 2 * time.Second, wantErr: true},
		{name: "start honours cancellation", honours: true, took: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &Pool{ready: map[string][]*pooled{}, fill: map[string]bool{}}
				p.refills, p.cancelRefill = context.WithCancel(context.Background())
				wedge := make(chan struct{})
				defer close(wedge)
				p.wg.Add(1)
				go func() { // a refill inside p.start
					defer p.wg.Done()
					if tc.honours {
						<-p.refills.Done()
						return
					}
					<-wedge
				}()
				ctx := context.Background()
				if tc.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.deadline)
					defer cancel()
				}
				start := time.Now()
				err := p.Close(ctx)
				if took := time.Since(start); took != tc.took {
					t.Errorf("Close took %s, want %s", took, tc.took)
				}
				if (err != nil) != tc.wantErr {
					t.Fatalf("Close: %v, want an error: %v", err, tc.wantErr)
				}
				if tc.wantErr && (!errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "start still under way")) {
					t.Fatalf("Close's error does not say what was left: %v", err)
				}
			})
		})
	}
}
