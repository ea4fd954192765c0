package console_test

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/console"
)

// TestRefusedLoginFloodIsBounded: a local process posting junk tokens
// writes at most refusedPerWindow records a minute, then one record
// counting the rest; a real token still signs in during the flood.
func TestRefusedLoginFloodIsBounded(t *testing.T) {
	f := newFixture(t)
	hc := f.client()
	refused := func() []audit.Record {
		var out []audit.Record
		for _, r := range f.b.records(t) {
			if r.Detail["event"] == console.EventLoginRefuse {
				out = append(out, r)
			}
		}
		return out
	}
	const flood = 200
	for i := range flood {
		resp := f.post(hc, "/console/login", url.Values{"token": {strconv.Itoa(i)}}, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("junk token %d: %s", i, resp.Status)
		}
	}
	if n := len(refused()); n == 0 || n > 20 {
		t.Fatalf("%d refused logins wrote %d records, want 1..20", flood, n)
	}
	// The operator's real token still works in the flood.
	resp := f.post(f.client(), "/console/login", url.Values{"token": {f.mint()}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("real token during a flood: %s", resp.Status)
	}
	// A minute on, the next refusal writes the count of the unrecorded ones.
	f.clk.Add(time.Minute)
	resp = f.post(hc, "/console/login", url.Values{"token": {"again"}}, nil)
	resp.Body.Close()
	rs := refused()
	var counted int
	for _, r := range rs {
		if len(r.Reasons) == 1 && r.Reasons[0] == console.ReasonLoginFlood {
			counted, _ = strconv.Atoi(r.Detail["not_recorded"])
		}
	}
	if counted+len(rs)-2 != flood { // less the count record and the last refusal
		t.Fatalf("records: %d one by one and a count of %d; want every one of %d refusals accounted for", len(rs)-2, counted, flood)
	}
}
