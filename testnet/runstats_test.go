package testnet_test

import (
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// runStats is a snapshot of the Go runtime's own counters, taken around a
// measured phase so a bench can say whether its slow operations waited on
// the process (the scheduler, the garbage collector) rather than the network:
// with a hundred nodes in one process, every node's timers share 2 cores.
type runStats struct {
	at      time.Time
	cpu     float64 // the process's user and system seconds
	samples []metrics.Sample
}

func takeRunStats() runStats {
	s := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/sched/latencies:seconds"},
		{Name: "/sched/pauses/total/gc:seconds"},
	}
	metrics.Read(s)
	cpu, _, _ := testnet.ProcCPU("self")
	return runStats{at: time.Now(), cpu: cpu, samples: s}
}

// since describes what happened between r0 and r: GC cycles, the cores the
// process kept busy, the p99 and max of the time a runnable
// goroutine waited for a core, and the longest stop-the-world pause.
func (r runStats) since(r0 runStats) string {
	val := func(x runStats, i int) metrics.Value { return x.samples[i].Value }
	var gcs uint64
	if v := val(r, 0); v.Kind() == metrics.KindUint64 {
		gcs = v.Uint64() - val(r0, 0).Uint64()
	}
	wall := r.at.Sub(r0.at).Seconds()
	busy := (r.cpu - r0.cpu) / max(wall, 1e-9)
	schedP99, schedMax := histDelta(val(r0, 1), val(r, 1))
	_, pauseMax := histDelta(val(r0, 2), val(r, 2))
	return fmt.Sprintf("%.2fs: %d GCs, %.2f of %d cores busy, a runnable goroutine waited p99 %s max %s, GC stop-the-world max %s",
		wall, gcs, busy, runtime.GOMAXPROCS(0),
		ms(time.Duration(schedP99*1e9)), ms(time.Duration(schedMax*1e9)), ms(time.Duration(pauseMax*1e9)))
}

// histDelta returns the p99 and the upper bound of the highest non-empty
// bucket of the samples a Float64Histogram gained between a and b.
func histDelta(a, b metrics.Value) (p99, maxv float64) {
	if a.Kind() != metrics.KindFloat64Histogram || b.Kind() != metrics.KindFloat64Histogram {
		return 0, 0
	}
	ha, hb := a.Float64Histogram(), b.Float64Histogram()
	counts := make([]uint64, len(hb.Counts))
	var total uint64
	for i := range hb.Counts {
		counts[i] = hb.Counts[i]
		if i < len(ha.Counts) {
			counts[i] -= ha.Counts[i]
		}
		total += counts[i]
	}
	if total == 0 {
		return 0, 0
	}
	var seen uint64
	p99 = -1
	for i, c := range counts {
		if c == 0 {
			continue
		}
		seen += c
		up := hb.Buckets[i+1]
		if math.IsInf(up, 1) {
			up = hb.Buckets[i] // the last bucket is open: its lower bound
		}
		if p99 < 0 && float64(seen) >= 0.99*float64(total) {
			p99 = up
		}
		maxv = up
	}
	return p99, maxv
}
