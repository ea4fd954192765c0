package browser

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Timing is what the browser measured of the page in the tab, from the
// Performance API (navigation and resource entries, first-contentful-paint).
// Times are from the start of the navigation.
type Timing struct {
	Page     string        // what the test calls the page
	URL      string        // the document's address
	TTFB     time.Duration // first byte of the response
	DOMReady time.Duration // DOMContentLoaded handled
	FCP      time.Duration // first contentful paint; 0 when the page painted nothing
	Load     time.Duration // load event handled
	// Requests counts the document and every resource it loaded.
	Requests int
	// Transfer is the bytes that came over the network for them, headers
	// included (a resource from the cache counts 0).
	Transfer int
	// Weight is their encoded body bytes, cached or not: the page's weight.
	Weight int
}

// measureJS waits (a bounded while) for the page's first contentful paint,
// then reads the navigation and resource entries.
const measureJS = `new Promise((resolve) => {
  const read = () => {
    const nav = performance.getEntriesByType('navigation')[0];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    const res = performance.getEntriesByType('resource');
    let transfer = nav ? nav.transferSize : 0, weight = nav ? nav.encodedBodySize : 0;
    for (const r of res) { transfer += r.transferSize; weight += r.encodedBodySize; }
    resolve({
      url: document.URL,
      ttfb: nav ? nav.responseStart : 0,
      domReady: nav ? nav.domContentLoadedEventEnd : 0,
      load: nav ? nav.loadEventEnd : 0,
      fcp: fcp ? fcp.startTime : 0,
      requests: res.length + (nav ? 1 : 0),
      transfer: transfer,
      weight: weight,
    });
  };
  if (performance.getEntriesByName('first-contentful-paint').length) { read(); return; }
  new PerformanceObserver((list, obs) => { obs.disconnect(); read(); }).observe({type: 'paint', buffered: true});
  setTimeout(read, 3000); // a page that paints nothing still reports its load
})`

// Measure reads the timing of the page in the tab, naming it page.
func (b *Browser) Measure(t testing.TB, page string) Timing {
	t.Helper()
	v := Eval[struct {
		URL      string  `json:"url"`
		TTFB     float64 `json:"ttfb"`
		DOMReady float64 `json:"domReady"`
		Load     float64 `json:"load"`
		FCP      float64 `json:"fcp"`
		Requests int     `json:"requests"`
		Transfer int     `json:"transfer"`
		Weight   int     `json:"weight"`
	}](t, b, measureJS)
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	return Timing{
		Page: page, URL: v.URL,
		TTFB: ms(v.TTFB), DOMReady: ms(v.DOMReady), FCP: ms(v.FCP), Load: ms(v.Load),
		Requests: v.Requests, Transfer: v.Transfer, Weight: v.Weight,
	}
}

// Table renders timings as a fixed-width table for the test log.
func Table(ts []Timing) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-22s %8s %9s %8s %8s %5s %10s %9s\n", "page", "ttfb", "domready", "fcp", "load", "reqs", "transfer", "weight")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
	for _, x := range ts {
		fmt.Fprintf(&sb, "%-22s %8s %9s %8s %8s %5d %9dB %8dB\n", x.Page, ms(x.TTFB), ms(x.DOMReady), ms(x.FCP), ms(x.Load), x.Requests, x.Transfer, x.Weight)
	}
	return sb.String()
}
