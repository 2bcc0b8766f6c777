package testnet_test

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"syscall"
	"time"
)

// runStats is a snapshot of the Go runtime's own counters, taken around a
// measured phase so a bench can say whether its slow operations waited on
// the process (the scheduler, the garbage collector) rather than the network:
// with a hundred nodes in one process, every node's timers share 2 cores.
type runStats struct {
	at      time.Time
	cpu     time.Duration // the process's user and system time
	samples []metrics.Sample
}

var runStatNames = []string{
	"/gc/cycles/total:gc-cycles",
	"/sched/latencies:seconds",
	"/sched/pauses/total/gc:seconds",
}

func takeRunStats() runStats {
	s := make([]metrics.Sample, len(runStatNames))
	for i, n := range runStatNames {
		s[i].Name = n
	}
	metrics.Read(s)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
	busy := (r.cpu - r0.cpu).Seconds() / max(wall, 1e-9)
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
		if p99 < 0 && float64(seen) >= 0.99*float64(total) {
			p99 = up
		}
		maxv = up
	}
	return p99, maxv
}
