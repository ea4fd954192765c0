package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/connectors/matrix"
)

// A Matrix refusal is a durable message denial in the audit log, with the
// reason and the event's IDs, never text; without a log it is an error.
func TestMatrixRecorder(t *testing.T) {
	dir := t.TempDir()
	log, err := audit.Open(dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := matrixRecorder{connector: "mx", log: audit.NewEmitter(log, nil)}
	err = rec.RecordMatrix(context.Background(), matrix.Record{Reason: matrix.ReasonForgedSender, Identity: "matrix:@alice:x",
		ChatID: "!room:x", EventID: "$ev", Detail: map[string]string{"trust": "unknown device"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	var got []audit.Record
	if err := audit.Read(dir, audit.ReadOptions{}, func(e audit.Entry) error { got = append(got, e.Record); return nil }); err != nil {
		t.Fatal(err)
	}
	var r *audit.Record
	for i := range got {
		if got[i].Connector == "mx" {
			r = &got[i]
		}
	}
	if r == nil || r.Kind != "message" || r.Decision != "deny" || r.User != "matrix:@alice:x" ||
		strings.Join(r.Reasons, ",") != matrix.ReasonForgedSender || r.Detail["event_id"] != "$ev" || r.Detail["chat_id"] != "!room:x" || r.Detail["trust"] != "unknown device" {
		t.Errorf("record = %+v", r)
	}
	if err := (matrixRecorder{connector: "mx"}).RecordMatrix(context.Background(), matrix.Record{}); err == nil {
		t.Error("no audit log, yet recorded")
	}
}
