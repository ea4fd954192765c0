package gateway

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/engine"
)

// metrics are the gateway's Prometheus series, served on the admin
// listener's /metrics.
type metrics struct {
	reg             *prometheus.Registry
	decisions       *prometheus.CounterVec
	decisionLatency *prometheus.HistogramVec
	rateLimited     *prometheus.CounterVec
	denials         *prometheus.CounterVec
	auditLatency    prometheus.Histogram
	auditFailures   prometheus.Counter
	auditRecords    *prometheus.CounterVec
	sandboxStarts   *prometheus.CounterVec
}

// metricSources are the counts the gateway reads from its parts when
// scraped.
type metricSources struct {
	active         func() float64 // sessions with a running sandbox
	reloadRefusals func() float64 // engine.Refusals
	auditRefused   func() float64 // audit.Log.Refused
	unrecorded     func() float64 // sessions.Manager.Unrecorded
	pendingDenials func() float64 // connectors.Router.PendingDenials
	poolReady      func() float64 // runtime.Pool.ReadyTotal (0 without a warm pool)
}

func newMetrics(src metricSources) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parachute_decisions_total", Help: "Policy decisions by entry point and result.",
		}, []string{"entry", "result"}),
		decisionLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parachute_decision_seconds", Help: "Policy decision latency.",
			Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3, 0.25},
		}, []string{"entry"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parachute_rate_limited_total", Help: "Decisions denied by a rate limit, by entry point.",
		}, []string{"entry"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parachute_denials_total", Help: "Denied decisions by entry point and reason (one count per reason; the console charts it).",
		}, []string{"entry", "reason"}),
		auditLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parachute_audit_append_seconds", Help: "Durable audit append latency.",
			Buckets: []float64{50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 5e-3, 25e-3, 0.1},
		}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: string(audit.MetricFailures), Help: "Audit appends that failed, a record the registry refuses included (the decision was then denied, the action refused).",
		}),
		auditRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: string(audit.MetricRecords), Help: "Durable audit records by kind (every append goes through the gateway's audit.Emitter; checkpoints and gaps, which the log writes itself, are not counted).",
		}, []string{"kind"}),
		sandboxStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parachute_sandbox_starts_total", Help: "Sandbox starts by runtime and result.",
		}, []string{"runtime", "result"}),
	}
	m.reg.MustRegister(m.decisions, m.decisionLatency, m.rateLimited, m.denials, m.auditLatency, m.auditFailures, m.auditRecords, m.sandboxStarts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parachute_sessions_active", Help: "Sessions with a running sandbox.",
		}, src.active),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "parachute_policy_reload_refusals_total", Help: "Policy reloads refused (compile error, failing tests or examples); the last good policy stayed in force.",
		}, src.reloadRefusals),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "parachute_audit_refused_total", Help: "Audit appends the log refused (full disk, failed fsync, closed) since start.",
		}, src.auditRefused),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "parachute_session_events_unrecorded_total", Help: "Sandbox stops and hook outcomes that happened without their audit record (a stop is never held back by one).",
		}, src.unrecorded),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parachute_denials_pending", Help: "Denied messages past the denial budget, counted and not yet recorded in a summary.",
		}, src.pendingDenials),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parachute_pool_ready", Help: "Pre-started sandboxes waiting in the warm pool, all profiles.",
		}, src.poolReady),
		collectors.NewGoCollector(),
	)
	return m
}

// Appended implements audit.Observer: every append the gateway's
// emitter makes, decisions and all other kinds alike, is timed and counted.
func (m *metrics) Appended(k audit.Kind, took time.Duration, err error) {
	if took > 0 { // 0: refused before the log was asked
		m.auditLatency.Observe(took.Seconds())
	}
	if err != nil {
		m.auditFailures.Inc()
		return
	}
	m.auditRecords.WithLabelValues(string(k)).Inc()
}

// recorder counts every decision; the emitter it wraps times and counts
// the record.
type recorder struct {
	next engine.Recorder
	m    *metrics
}

func (r recorder) Record(ctx context.Context, in engine.Input, d *engine.Decision) error {
	entry := string(d.Entry)
	result := "deny"
	if d.Allow {
		result = "allow"
	}
	r.m.decisions.WithLabelValues(entry, result).Inc()
	r.m.decisionLatency.WithLabelValues(entry).Observe(d.Latency.Seconds())
	if slices.Contains(d.Reasons, engine.ReasonRateLimited) {
		r.m.rateLimited.WithLabelValues(entry).Inc()
	}
	if !d.Allow {
		for _, reason := range d.Reasons {
			r.m.denials.WithLabelValues(entry, reason).Inc()
		}
	}
	return r.next.Record(ctx, in, d)
}
