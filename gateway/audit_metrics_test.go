package gateway

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/matrix"
	"github.com/parachute-gateway/parachute/connectors/pairing"
	"github.com/parachute-gateway/parachute/engine"
)

// Every record the gateway writes is counted by kind, not only decisions:
// pairing and invite events, message text and what the Matrix connector
// refuses went around the metrics before the emitter. A record the
// registry refuses is a failure, and nothing is written for it.
func TestAuditMetricsCountEveryKind(t *testing.T) {
	zero := func() float64 { return 0 }
	m := newMetrics(metricSources{active: zero, reloadRefusals: zero, auditRefused: zero,
		unrecorded: zero, pendingDenials: zero, poolReady: zero})
	dir := t.TempDir()
	log, err := audit.Open(dir, audit.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	g := &Gateway{emit: audit.NewEmitter(log, m), metrics: m}
	ctx := context.Background()

	auth := authRecorder{g.emit}
	for _, e := range []pairing.Event{
		{Kind: pairing.KindPairRequest, Connector: "tg", Identity: "telegram:1", Actor: "telegram:1", OK: true},
		{Kind: pairing.KindPairApprove, Connector: "tg", Identity: "telegram:1", Actor: "operator", OK: true, Role: "member"},
		{Kind: pairing.KindInviteRedeem, Connector: "tg", Identity: "telegram:2", Actor: "telegram:2", OK: true},
	} {
		if err := auth.RecordAuth(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.recordText(ctx, &connectors.Message{Connector: "tg", Type: "telegram", UserID: "1", ChatID: "c", MessageID: "m", Text: "hello"}, "dec-1"); err != nil {
		t.Fatal(err)
	}
	if err := (matrixRecorder{connector: "mx", log: g.emit}).RecordMatrix(ctx, matrix.Record{Reason: matrix.ReasonForgedSender, Identity: "matrix:@a:x"}); err != nil {
		t.Fatal(err)
	}
	rec := recorder{next: g.emit, m: m}
	d := &engine.Decision{ID: "d1", Entry: engine.Tool, Allow: true}
	if err := rec.Record(ctx, engine.ToolInput{Tool: engine.ToolFacts{Name: "read_file"}}, d); err != nil {
		t.Fatal(err)
	}
	if _, err := g.emit.Append(ctx, audit.Record{Kind: "pairng", Decision: "allow"}); err == nil || !strings.Contains(err.Error(), `unknown record kind "pairng"`) {
		t.Fatalf("unknown kind: %v", err)
	}

	got := scrape(t, m)
	for series, want := range map[string]float64{
		`parachute_audit_records_total{kind="pairing"}`:          2,
		`parachute_audit_records_total{kind="invite"}`:           1,
		`parachute_audit_records_total{kind="message-text"}`:     1,
		`parachute_audit_records_total{kind="message"}`:          1,
		`parachute_audit_records_total{kind="tool"}`:             1,
		`parachute_audit_records_total{kind="pairng"}`:           0,
		`parachute_audit_failures_total`:                         1, // the unknown kind
		`parachute_audit_append_seconds_count`:                   6,
		`parachute_decisions_total{entry="tool",result="allow"}`: 1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	n := 0
	if err := audit.Read(dir, audit.ReadOptions{}, func(audit.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("%d records in the log, want 6 (the unknown kind is not written)", n)
	}
}

// scrape gathers m's counters and histogram counts as name{labels} → value.
func scrape(t *testing.T, m *metrics) map[string]float64 {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			name := f.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case mt.GetCounter() != nil:
				out[name] = mt.GetCounter().GetValue()
			case mt.GetHistogram() != nil:
				out[f.GetName()+"_count"] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}
