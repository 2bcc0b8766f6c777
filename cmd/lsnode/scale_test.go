package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// benchEnv returns the positive integer in the environment variable name,
// or def.
func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkScale is `make scale`: for each size of LSNODE_SCALE_SIZES
// (default 25,50,100,300) a testnet runs as processes, the nodes that are
// never killed LSNODE_SCALE_PER_PROCESS (50) to a process and the tenth
// that is killed each in its own. It measures the idle cost over
// LSNODE_SCALE_IDLE seconds (30), LSNODE_SCALE_WARMUP seconds (75: past
// the connection manager's one-minute grace) after every node sees every
// other; then for LSNODE_SCALE_CHURN seconds (60) kills -9 and restarts
// 10% of the nodes a minute while bindings are published and looked up
// (5 a second each), measures that too, and checks nothing was lost. One
// summary line; nothing else may use loopback meanwhile. The overlay runs
// at its production gossip interval, 1 s (LSNODE_SCALE_GOSSIP_MS; the
// testnet's own default is 500 ms). LSNODE_SCALE_DUMP=DIR keeps each
// grouped process's stderr in DIR and, when members do not converge, its
// goroutines' stacks (ChaosSpec.Dump); LSNODE_SCALE_CPUPROFILE=DIR, a
// CPU profile of each grouped process's first two minutes there and its
// heap at the end of the idle window, with its memory split on stderr
// (ChaosSpec.Profile). LSNODE_SCALE_REGION_BITS=B gives
// every node a partial view of B region bits (overlay.view: partial).
func BenchmarkScale(b *testing.B) {
	var sizes []int
	for _, s := range strings.Split(cmp.Or(os.Getenv("LSNODE_SCALE_SIZES"), "25,50,100,300"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 10 || n > 1000 {
			b.Fatalf("LSNODE_SCALE_SIZES: %q is not a size from 10 to 1000", s)
		}
		sizes = append(sizes, n)
	}
	exe := filepath.Join(b.TempDir(), "lsnode")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	churn := time.Duration(benchEnv("LSNODE_SCALE_CHURN", 60)) * time.Second
	var parts []string
	var err error
	for i := 0; i < b.N; i++ {
		parts = parts[:0]
		for _, n := range sizes {
			dir := filepath.Join(b.TempDir(), "tn")
			gossip := time.Duration(benchEnv("LSNODE_SCALE_GOSSIP_MS", 1000)) * time.Millisecond
			spec := testnet.Spec{Dir: dir, Nodes: n, GossipInterval: gossip}
			if spec.Conns, err = testnet.ParseConnBudget(os.Getenv("LSNODE_BENCH_CONNS")); err != nil {
				b.Fatal(err)
			}
			if bits := benchEnv("LSNODE_SCALE_REGION_BITS", 0); bits > 0 {
				spec.View, spec.RegionBits = "partial", bits
			}
			if _, err := testnet.Init(spec); err != nil {
				b.Fatal(err)
			}
			victims := int(math.Ceil(0.1 * float64(n)))
			rep, err := testnet.Chaos(context.Background(), dir, testnet.ChaosSpec{Exe: exe,
				PerProcess: benchEnv("LSNODE_SCALE_PER_PROCESS", 50), KillFraction: 0.1,
				Idle:     time.Duration(benchEnv("LSNODE_SCALE_IDLE", 30)) * time.Second,
				Warmup:   time.Duration(benchEnv("LSNODE_SCALE_WARMUP", 75)) * time.Second,
				Duration: churn, KillEvery: time.Minute / time.Duration(victims), Down: 2 * time.Second,
				Settle: 5 * time.Second, Grace: 15 * time.Second, Pace: 200 * time.Millisecond, Log: os.Stderr,
				Dump: os.Getenv("LSNODE_SCALE_DUMP"), Profile: os.Getenv("LSNODE_SCALE_CPUPROFILE"),
				StatsEvery: 5 * time.Second}) // the 1 s default took 4–7% of a 50-node group's CPU
			if err != nil {
				b.Errorf("%d nodes: %v", n, err)
				continue
			}
			if err := rep.Err(); err != nil {
				b.Error(err)
			}
			line := fmt.Sprintf("%d nodes in %d processes, views complete %.0f s after the start: idle %v; churn %v, %d kills, %d of %d bindings lost, %d of %d lookups failed",
				n, rep.Processes, rep.Converged, rep.Idle, rep.Churn, rep.Kills, rep.Lost, rep.Published, rep.FailedDuring, rep.LookupsDuring)
			fmt.Println(line) // each size as it ends: a later one may fail
			parts = append(parts, line)
			b.ReportMetric(rep.Idle.LoopbackBytesPerSec, fmt.Sprintf("idleB/s/node@%d", n))
			b.ReportMetric(rep.Churn.MembershipBytesPerSec, fmt.Sprintf("churnMembershipB/s/node@%d", n))
			b.ReportMetric(rep.Churn.LoopbackBytesPerSec, fmt.Sprintf("churnB/s/node@%d", n))
			b.ReportMetric(rep.Idle.RSSBytes/1e6, fmt.Sprintf("idleMB-RSS/node@%d", n))
			b.ReportMetric(100*rep.Idle.CPU, fmt.Sprintf("idleCPU%%@%d", n))
			b.ReportMetric(float64(rep.Lost+rep.Wrong+rep.FailedDuring), fmt.Sprintf("lost+failed@%d", n))
		}
	}
	fmt.Printf("lsnode scale bench: %s\n", strings.Join(parts, " | "))
}
