package lsp

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// benchCluster starts 5 nodes (node 0 writes) and counts the replica
// protocol messages that cross the network (a node's own replica is
// answered in process and not counted): the round trips an operation costs.
func benchCluster(b *testing.B) (*cluster, *atomic.Int64) {
	ca := newTestCA(b)
	cred := ca.issue(b, []string{"biloxi.example"}, nil, false)
	var msgs atomic.Int64
	var ids [5]atomic.Value
	c := newClusterWith(b, 5, []*Credential{cred}, ca, func(i int, cfg *Config) {
		cfg.fault = func(from overlay.PeerID, m *message) *message {
			if self, _ := ids[i].Load().(overlay.PeerID); from != self {
				msgs.Add(1)
			}
			return nil
		}
	})
	for i, ov := range c.ovs {
		ids[i].Store(ov.ID())
	}
	return c, &msgs
}

func BenchmarkPublish(b *testing.B) {
	c, msgs := benchCluster(b)
	ctx := context.Background()
	msgs.Store(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.svcs[0].Publish(ctx, fmt.Sprintf("sip:p%d@biloxi.example", i), binding("sip:p@192.0.2.1", time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	time.Sleep(100 * time.Millisecond) // stores beyond W land
	b.ReportMetric(float64(msgs.Load())/float64(b.N), "msgs/op")
}

func BenchmarkRegister(b *testing.B) {
	c, msgs := benchCluster(b)
	ctx := context.Background()
	msgs.Store(0)
	var n atomic.Int64
	cpu0 := cpuTime(b)
	b.ResetTimer()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := c.svcs[0].Register(ctx, fmt.Sprintf("sip:r%d@biloxi.example", i), reg("sip:r@192.0.2.1", "c", 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	time.Sleep(100 * time.Millisecond)
	regs, batches := c.svcs[0].RegisterStats()
	var checks uint64
	for _, s := range c.svcs {
		checks += s.verifier.sigChecks.Load()
	}
	b.ReportMetric(float64(msgs.Load())/float64(b.N), "msgs/op")
	b.ReportMetric(float64(regs)/float64(max(batches, 1)), "regs/batch")
	b.ReportMetric(float64(checks)/float64(b.N), "sigchecks/op")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op") // all 5 nodes: front-end and replicas
}

func BenchmarkLookup(b *testing.B) {
	c, msgs := benchCluster(b)
	ctx := context.Background()
	aor := "sip:bob@biloxi.example"
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.1", time.Hour)); err != nil {
		b.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	msgs.Store(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if bs, err := c.svcs[1+i%4].Lookup(ctx, aor); err != nil || len(bs) != 1 {
			b.Fatal(bs, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(msgs.Load())/float64(b.N), "msgs/op")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
