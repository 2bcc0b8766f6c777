package testnet_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// loopbackBytes returns the bytes sent on the loopback interface so far.
func loopbackBytes(tb testing.TB) int64 {
	tx, err := testnet.LoopbackSent()
	if err != nil {
		tb.Fatal(err)
	}
	return tx
}

// cpuSeconds returns the CPU time this process has used (user + system).
func cpuSeconds(tb testing.TB) float64 {
	own, _, err := testnet.ProcCPU("self")
	if err != nil {
		tb.Fatal(err)
	}
	return own
}

// idleCost is what an idle testnet of n nodes costs each node.
type idleCost struct {
	n           int
	bytesPerSec float64 // loopback bytes sent per node per second
	rss         float64 // process RSS per node, bytes
	conns       float64 // open overlay connections per node
	cpu         float64 // process CPU, fraction of one core
	members     float64 // membership protocol payload sent per node per second
}

func (c idleCost) String() string {
	return fmt.Sprintf("%d nodes %.2f KB/s/node (membership payload %.2f), RSS %.1f MB/node, %.0f conns/node, CPU %.0f%%",
		c.n, c.bytesPerSec/1000, c.members/1000, c.rss/1e6, c.conns, 100*c.cpu)
}

// measureIdle starts an in-process testnet of n nodes with the testnet's
// defaults (two domains, gossip every 500 ms), lets it settle, and measures
// what standing still costs over the window.
func measureIdle(b *testing.B, n int, settle, window time.Duration) idleCost {
	dir := b.TempDir()
	if _, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: n}); err != nil {
		b.Fatal(err)
	}
	opts := testnet.RunOptions{Logger: quiet()}
	bits := envInt("LSNODE_IDLE_PARTIAL", 0)
	opts.Tweak = func(cfg *node.Config) {
		if bits > 0 {
			cfg.Overlay.View, cfg.Overlay.RegionBits = "partial", bits
		}
		connBudget(cfg)
	}
	var peaked chan string
	if os.Getenv("LSNODE_IDLE_CONNS") != "" {
		peaked = make(chan string, 1)
		go func() { peaked <- peakGoroutines(n, settle, os.Getenv("LSNODE_IDLE_PEAKPROFILE")) }()
	}
	nw, err := testnet.Start(context.Background(), dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer nw.Close()
	time.Sleep(settle)
	if peaked != nil {
		fmt.Println(<-peaked)
	}
	sent := func() (t uint64) {
		for i := range n {
			t += nw.Node(i).Overlay().MembershipStats().BytesSent
		}
		return t
	}
	if path := os.Getenv("LSNODE_IDLE_CPUPROFILE"); path != "" { // the window alone, not the start-up
		f, err := os.Create(fmt.Sprintf("%s.%d", path, n))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	tx0, cpu0, m0, t0 := loopbackBytes(b), cpuSeconds(b), sent(), time.Now()
	time.Sleep(window)
	tx1, cpu1, m1, secs := loopbackBytes(b), cpuSeconds(b), sent(), time.Since(t0).Seconds()
	if os.Getenv("LSNODE_IDLE_FREEOS") != "" { // what the nodes hold, without the start-up's retained peak
		before := rssBytes()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(live)
		fmt.Printf("RSS per node before FreeOSMemory %.1f MB, after %.1f MB (heap in use %.1f MB, of it live %.1f MB; stacks %.1f MB)\n", float64(before)/1e6/float64(n), float64(rssBytes())/1e6/float64(n),
			float64(ms.HeapInuse)/1e6/float64(n), float64(live[0].Value.Uint64())/1e6/float64(n), float64(ms.StackInuse)/1e6/float64(n))
	}
	c := idleCost{n: n, bytesPerSec: float64(tx1-tx0) / float64(n) / secs, rss: float64(rssBytes()) / float64(n),
		cpu: (cpu1 - cpu0) / secs, members: float64(m1-m0) / float64(n) / secs}
	for i := range n {
		c.conns += float64(nw.Node(i).Overlay().Stats(0).Connections)
	}
	c.conns /= float64(n)
	if os.Getenv("LSNODE_IDLE_CONNS") != "" {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("memory per node: heap in use %.1f MB, heap idle %.1f MB (released %.1f), stacks %.1f MB, goroutines %d, other %.1f MB\n",
			float64(ms.HeapInuse)/1e6/float64(n), float64(ms.HeapIdle)/1e6/float64(n), float64(ms.HeapReleased)/1e6/float64(n),
			float64(ms.StackInuse)/1e6/float64(n), runtime.NumGoroutine()/n, float64(ms.Sys-ms.HeapSys-ms.StackSys)/1e6/float64(n))
		for _, i := range []int{0, n / 2, n - 1} {
			fmt.Printf("node %d: %s; membership messages sent by type %v\n", i, nw.Node(i).Overlay().ConnUse(), nw.Node(i).Overlay().MembershipStats().SentByType)
		}
	}
	if path := os.Getenv("LSNODE_IDLE_HEAPPROFILE"); path != "" { // what the running nodes hold
		writeHeap(b, fmt.Sprintf("%s.%d", path, n))
	}
	if path := os.Getenv("LSNODE_IDLE_GOROUTINES"); path != "" { // what the running nodes' goroutines wait in
		var prof bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&prof, 1)
		if err := os.WriteFile(fmt.Sprintf("%s.%d", path, n), prof.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// peakGoroutines samples the goroutine count every 50 ms for d, says the
// highest per node and when it was, and writes the goroutine profile
// taken at that moment to path (if given): what the start-up's memory
// peak is made of.
func peakGoroutines(n int, d time.Duration, path string) string {
	var peak int
	var at time.Duration
	var prof bytes.Buffer
	t0 := time.Now()
	for time.Since(t0) < d {
		if g := runtime.NumGoroutine(); g > peak {
			peak, at = g, time.Since(t0)
			if path != "" && g > 20*n {
				prof.Reset()
				pprof.Lookup("goroutine").WriteTo(&prof, 0)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if path != "" && prof.Len() > 0 {
		if err := os.WriteFile(path, prof.Bytes(), 0o644); err != nil {
			return fmt.Sprintf("peak goroutines per node %d; its profile: %v", peak/n, err)
		}
	}
	return fmt.Sprintf("peak goroutines per node %d, %.1f s after the start", peak/n, at.Seconds())
}

// connBudget sets the connection budget of LSNODE_BENCH_CONNS
// ("TARGET,WARM[,GRACE]": overlay.target_conns, warm_conns and
// conn_grace), if given.
func connBudget(cfg *node.Config) {
	c, err := testnet.ParseConnBudget(os.Getenv("LSNODE_BENCH_CONNS"))
	if err != nil {
		panic(err)
	}
	c.Apply(&cfg.Overlay)
}

// writeHeap writes the heap's profile after a collection to path.
func writeHeap(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIdle measures an idle overlay's cost per node at several sizes
// (LSNODE_IDLE_SIZES, default 25,50,100), each after LSNODE_IDLE_SETTLE
// seconds (75: past the connection manager's one-minute grace, so start-up
// connections are trimmed) over LSNODE_IDLE_SECONDS (30; a CPU profile of
// it alone in LSNODE_IDLE_CPUPROFILE.N, the heap after it in
// LSNODE_IDLE_HEAPPROFILE.N; LSNODE_IDLE_PARTIAL=B: every node keeps a
// partial view of B region bits): loopback bytes sent, RSS,
// overlay connections and process CPU, as one summary line. Nothing else
// may use loopback meanwhile. It is the baseline for membership whose cost
// does not grow with the overlay's size.
func BenchmarkIdle(b *testing.B) {
	sizes := []int{25, 50, 100}
	if v := os.Getenv("LSNODE_IDLE_SIZES"); v != "" {
		sizes = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 2 || n > 1000 {
				b.Fatalf("LSNODE_IDLE_SIZES: %q is not a size from 2 to 1000", s)
			}
			sizes = append(sizes, n)
		}
	}
	settle := time.Duration(envInt("LSNODE_IDLE_SETTLE", 75)) * time.Second
	window := time.Duration(envInt("LSNODE_IDLE_SECONDS", 30)) * time.Second
	var parts []string
	for i := 0; i < b.N; i++ {
		parts = parts[:0]
		for _, n := range sizes {
			c := measureIdle(b, n, settle, window)
			parts = append(parts, c.String())
			b.ReportMetric(c.bytesPerSec, fmt.Sprintf("B/s/node@%d", n))
		}
	}
	fmt.Printf("lsnode idle bench: %s\n", strings.Join(parts, " | "))
}
