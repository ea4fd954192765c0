package console

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The metric series the charts read from the gateway's registry.
const (
	MetricDecisions = "parachute_decisions_total" // {entry, result}
	MetricDenials   = "parachute_denials_total"   // {entry, reason}
)

// sample is the counters at one instant.
type sample struct {
	at        time.Time
	decisions float64
	denials   map[string]float64 // by reason
}

// sampler keeps the last n samples in memory.
type sampler struct {
	mu   sync.Mutex
	n    int
	ring []sample
}

func newSampler(n int) *sampler { return &sampler{n: n} }

// add gathers g once and keeps the totals.
func (s *sampler) add(at time.Time, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	sm := sample{at: at, denials: map[string]float64{}}
	for _, mf := range mfs {
		switch mf.GetName() {
		case MetricDecisions:
			for _, m := range mf.GetMetric() {
				sm.decisions += m.GetCounter().GetValue()
			}
		case MetricDenials:
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" {
						sm.denials[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring = append(s.ring, sm)
	if len(s.ring) > s.n {
		s.ring = s.ring[len(s.ring)-s.n:]
	}
	return nil
}

func (s *sampler) snapshot() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.ring...)
}

// chartData is what the charts template draws: an SVG polyline of
// decisions per second and one bar per denial reason in the window.
type chartData struct {
	Window  string
	Rate    string // the latest decisions/s
	Peak    string
	Points  string // polyline points in a 300×60 box
	Samples int
	Bars    []bar
	Height  int // of the bars' viewBox
}

type bar struct {
	Reason string
	Count  int64
	Width  int // of 160
	Y      int // the bar's top
	TY     int // the labels' baseline
	NX     int // where the count is written
}

const chartW, chartH = 300.0, 60.0

func (c *Console) charts() chartData {
	ss := c.samples.snapshot()
	cd := chartData{Samples: len(ss), Rate: "0", Peak: "0"}
	if len(ss) < 2 {
		cd.Window = "collecting samples"
		return cd
	}
	cd.Window = ss[len(ss)-1].at.Sub(ss[0].at).Round(time.Second).String()
	rates := make([]float64, 0, len(ss)-1)
	peak := 0.0
	for i := 1; i < len(ss); i++ {
		dt := ss[i].at.Sub(ss[i-1].at).Seconds()
		r := 0.0
		if d := ss[i].decisions - ss[i-1].decisions; dt > 0 && d > 0 {
			r = d / dt
		}
		rates = append(rates, r)
		peak = max(peak, r)
	}
	cd.Rate, cd.Peak = fmt.Sprintf("%.1f", rates[len(rates)-1]), fmt.Sprintf("%.1f", peak)
	var pts []string
	for i, r := range rates {
		x := chartW * float64(i) / float64(max(len(rates)-1, 1))
		y := chartH
		if peak > 0 {
			y = chartH - (chartH-2)*r/peak
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
	}
	cd.Points = strings.Join(pts, " ")
	first, last := ss[0], ss[len(ss)-1]
	var most int64
	for reason, v := range last.denials {
		n := int64(v - first.denials[reason])
		if n > 0 {
			cd.Bars = append(cd.Bars, bar{Reason: reason, Count: n})
			most = max(most, n)
		}
	}
	sort.Slice(cd.Bars, func(i, j int) bool {
		if cd.Bars[i].Count != cd.Bars[j].Count {
			return cd.Bars[i].Count > cd.Bars[j].Count
		}
		return cd.Bars[i].Reason < cd.Bars[j].Reason
	})
	if len(cd.Bars) > 8 {
		cd.Bars = cd.Bars[:8]
	}
	for i := range cd.Bars {
		cd.Bars[i].Width = max(2, int(160*cd.Bars[i].Count/most))
		cd.Bars[i].Y = i * 18
		cd.Bars[i].TY = i*18 + 11
		cd.Bars[i].NX = 134 + cd.Bars[i].Width
	}
	cd.Height = max(18, len(cd.Bars)*18)
	return cd
}
