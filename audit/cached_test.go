package audit

import (
	"testing"

	"github.com/parachute-gateway/parachute/engine"
)

// A decision answered from the engine's cache says so in its record, keeps
// the caller's detail and its turn ID (which is not policy input), and does
// not write into the caller's map.
func TestCachedDecisionRecord(t *testing.T) {
	detail := map[string]string{"resolved": "192.0.2.1"}
	in := engine.EgressInput{Session: engine.SessionFacts{ID: "s1", TurnID: "t1"}, Host: "example.com", Port: 443}
	for _, cached := range []bool{false, true} {
		r := FromDecision(in, &engine.Decision{ID: "d", Entry: engine.Egress, Reasons: []string{"x"}, Detail: detail, Cached: cached})
		if got := r.Detail["cached"] == "true"; got != cached {
			t.Errorf("cached %v: detail %v", cached, r.Detail)
		}
		if r.Detail["resolved"] != "192.0.2.1" || r.TurnID != "t1" {
			t.Errorf("cached %v: detail %v turn %q", cached, r.Detail, r.TurnID)
		}
	}
	if _, ok := detail["cached"]; ok {
		t.Error("the caller's detail map was written to")
	}
}
