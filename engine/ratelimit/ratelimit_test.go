package ratelimit

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(max int) (*Limiter, *clock) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	return New(Options{MaxBuckets: max, Now: c.now}), c
}

func TestAllow(t *testing.T) {
	tests := []struct {
		name        string
		rate, burst float64
		calls       int
		advance     time.Duration // before the last call
		wantLast    bool
		wantRetry   time.Duration
	}{
		{name: "within burst", rate: 1, burst: 3, calls: 3, wantLast: true},
		{name: "burst exhausted", rate: 1, burst: 3, calls: 4, wantLast: false, wantRetry: time.Second},
		{name: "refilled after wait", rate: 1, burst: 3, calls: 4, advance: time.Second, wantLast: true},
		{name: "half refilled", rate: 2, burst: 1, calls: 2, advance: 250 * time.Millisecond, wantLast: false, wantRetry: 250 * time.Millisecond},
		{name: "zero rate never refills", rate: 0, burst: 2, calls: 3, advance: time.Hour, wantLast: false, wantRetry: 0},
		{name: "zero burst allows nothing", rate: 10, burst: 0, calls: 1, wantLast: false, wantRetry: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, c := newTest(0)
			var ok bool
			var retry time.Duration
			for i := 0; i < tt.calls; i++ {
				if i == tt.calls-1 {
					c.advance(tt.advance)
				}
				ok, retry = l.Allow("k", tt.rate, tt.burst)
			}
			if ok != tt.wantLast || retry != tt.wantRetry {
				t.Fatalf("last call = (%v, %v), want (%v, %v)", ok, retry, tt.wantLast, tt.wantRetry)
			}
		})
	}
}

func TestKeysAreIndependent(t *testing.T) {
	l, _ := newTest(0)
	if ok, _ := l.Allow("a", 0, 1); !ok {
		t.Fatal("first call on a refused")
	}
	if ok, _ := l.Allow("a", 0, 1); ok {
		t.Fatal("second call on a allowed")
	}
	if ok, _ := l.Allow("b", 0, 1); !ok {
		t.Fatal("a's exhaustion leaked into b")
	}
}

func TestLoweredBurstTakesEffect(t *testing.T) {
	l, _ := newTest(0)
	l.Allow("k", 0, 100)
	if ok, _ := l.Allow("k", 0, 1); !ok {
		t.Fatal("first call under lowered burst refused")
	}
	if ok, _ := l.Allow("k", 0, 1); ok {
		t.Fatal("lowered burst not applied: 99 tokens kept")
	}
}

func TestRefund(t *testing.T) {
	l, _ := newTest(0)
	l.Allow("k", 0, 1)
	l.Refund("k", 1)
	if ok, _ := l.Allow("k", 0, 1); !ok {
		t.Fatal("refunded token not available")
	}
	l.Refund("k", 1)
	l.Refund("k", 1)
	l.Allow("k", 0, 1)
	if ok, _ := l.Allow("k", 0, 1); ok {
		t.Fatal("refund went past burst")
	}
}

// Memory stays bounded: full buckets are swept, and when every bucket holds
// state the limiter refuses rather than forgetting a drained bucket.
func TestBoundedMemory(t *testing.T) {
	l, c := newTest(shards) // one bucket per shard
	for i := 0; i < 10*shards; i++ {
		l.Allow("idle-"+strconv.Itoa(i), 1, 1) // drains each bucket it creates
		c.advance(2 * time.Second)             // … which then refills
	}
	if n := l.Len(); n > shards {
		t.Fatalf("live buckets = %d, want at most %d", n, shards)
	}
	if l.Full() != 0 {
		t.Fatalf("refused %d checks though every old bucket had refilled", l.Full())
	}

	l2, _ := newTest(shards)
	refused := 0
	for i := 0; i < 10*shards; i++ {
		if ok, _ := l2.Allow("drained-"+strconv.Itoa(i), 0, 1); !ok {
			refused++
		}
	}
	if refused == 0 || l2.Full() == 0 {
		t.Fatal("limiter at capacity with only drained buckets did not fail closed")
	}
	if n := l2.Len(); n > shards {
		t.Fatalf("live buckets = %d, want at most %d", n, shards)
	}
}

func TestValid(t *testing.T) {
	nan := func() float64 { z := 0.0; return z / z }()
	inf := func() float64 { z := 0.0; return 1 / z }()
	for _, tt := range []struct {
		rate, burst float64
		want        bool
	}{{1, 1, true}, {0, 0, true}, {-1, 1, false}, {1, -1, false}, {nan, 1, false}, {1, inf, false}} {
		if got := Valid(tt.rate, tt.burst); got != tt.want {
			t.Errorf("Valid(%v, %v) = %v, want %v", tt.rate, tt.burst, got, tt.want)
		}
	}
}

func TestConcurrentNeverOverGrants(t *testing.T) {
	l, _ := newTest(0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if ok, _ := l.Allow("shared", 0, 50); ok {
					mu.Lock()
					granted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if granted != 50 {
		t.Fatalf("granted %d tokens from a burst of 50", granted)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(Options{})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "message:telegram:" + strconv.Itoa(100000+i)
		l.Allow(keys[i], 1e9, 1e9)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.Allow(keys[i%len(keys)], 1e9, 1e9)
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	l := New(Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := "tool:" + strconv.Itoa(int(time.Now().UnixNano()%1000))
		for pb.Next() {
			l.Allow(key, 1e9, 1e9)
		}
	})
}
