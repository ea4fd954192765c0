package gateway

import "testing"

// TestMetricsKeepGoRuntimeSeries: the Go runtime series operators' dashboards
// read stay on /metrics (collectors.NewGoCollector, which replaced the
// deprecated prometheus.NewGoCollector).
func TestMetricsKeepGoRuntimeSeries(t *testing.T) {
	zero := func() float64 { return 0 }
	m := newMetrics(metricSources{active: zero, reloadRefusals: zero, auditRefused: zero,
		unrecorded: zero, pendingDenials: zero, poolReady: zero})
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]bool{}
	for _, f := range fams {
		got[f.GetName()] = true
	}
	for _, name := range []string{"go_goroutines", "go_gc_duration_seconds", "go_memstats_heap_alloc_bytes", "go_info"} {
		if !got[name] {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
