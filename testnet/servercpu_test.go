package testnet_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// selfCPU is this process's CPU time so far: the in-process testnet's
// nodes (sipp runs in processes of its own).
func selfCPU() (float64, error) {
	own, _, err := testnet.ProcCPU("self")
	return own, err
}

// cpuPerCall runs g at rate for dur and returns the server's CPU (read by
// cpu before and after) per successful call, and the run's result. A
// fixed rate both servers sustain makes the figure comparable where the
// highest rate without a failure is a step noisy on 2 cores.
func cpuPerCall(b *testing.B, g sippGen, rate int, dur time.Duration, cpu func() (float64, error)) (time.Duration, sippResult) {
	b.Helper()
	c0, err := cpu()
	if err != nil {
		b.Fatal(err)
	}
	res := g.run(b, rate, dur)
	c1, err := cpu()
	if err != nil {
		b.Fatal(err)
	}
	if res.success == 0 {
		return 0, res
	}
	return time.Duration((c1 - c0) / float64(res.success) * float64(time.Second)), res
}

// allocPerCall is cpuPerCall for the in-process testnet, with what its
// nodes allocated per call (bytes and objects: the garbage collector's
// work, steadier than the CPU on a shared machine).
func allocPerCall(b *testing.B, g sippGen, rate int, dur time.Duration) (cpu time.Duration, bytes, objects float64, res sippResult) {
	b.Helper()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu, res = cpuPerCall(b, g, rate, dur, selfCPU)
	runtime.ReadMemStats(&m1)
	if res.success == 0 {
		return cpu, 0, 0, res
	}
	n := float64(res.success)
	return cpu, float64(m1.TotalAlloc-m0.TotalAlloc) / n, float64(m1.Mallocs-m0.Mallocs) / n, res
}

// perCall formats a cpuPerCall figure with the run's failures, if any.
func perCall(d time.Duration, res sippResult) string {
	s := fmt.Sprintf("%.0fµs", float64(d)/1e3)
	if !res.ok() {
		s += fmt.Sprintf(" (%d of %d calls failed: %s)", res.calls-res.success, res.calls, res.why)
	}
	return s
}
