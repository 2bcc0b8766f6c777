package sim

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSmallConverges: 200 members with churn and 1% loss: every change
// reaches the observers and lookups come back right.
func TestSmallConverges(t *testing.T) {
	r, err := Run(Config{N: 200, Seed: 1, Warmup: 10 * time.Second, Duration: 30 * time.Second,
		Median: 10 * time.Minute, Loss: 0.01, Observers: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.Joins+r.Failures == 0 {
		t.Fatal("no churn happened")
	}
	if r.Unreached > 0 {
		t.Fatalf("%d changes never reached 99%% of the views", r.Unreached)
	}
	// A member that joined a moment ago is on probation (not yet in
	// anyone's replica sets): the simulator is deterministic, so this
	// fraction is the protocol's, not the machine's.
	if r.Right*100 < 95*r.LookupsDone {
		t.Fatalf("%d of %d lookups never found the true replica set", r.LookupsDone-r.Right, r.LookupsDone)
	}
}

// TestPartialConverges: the same with half the members keeping partial
// views of a quarter of the overlay: changes reach every view that holds
// their region, and lookups, routed to the key's region when it is not
// the asker's, come back right.
func TestPartialConverges(t *testing.T) {
	r, err := Run(Config{N: 200, Seed: 2, Warmup: 10 * time.Second, Duration: 30 * time.Second,
		Median: 10 * time.Minute, Loss: 0.01, Observers: 200, Partial: 0.5, RegionBits: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.Joins+r.Failures == 0 || r.Routed == 0 || r.PartialMembers == 0 {
		t.Fatalf("no churn (%d), no routed lookups (%d) or no partial views (%d)", r.Joins+r.Failures, r.Routed, r.PartialMembers)
	}
	if r.Unreached > 0 || r.WronglyDead > 0 {
		t.Fatalf("%d changes never reached 99%% of the views holding them; %d wrongly dead", r.Unreached, r.WronglyDead)
	}
	if r.Right*100 < 95*r.LookupsDone {
		t.Fatalf("%d of %d lookups never found the true replica set", r.LookupsDone-r.Right, r.LookupsDone)
	}
}

// BenchmarkSim runs the membership of LSNODE_SIM_MEMBERS members (default
// 10000; a comma-separated list for several sizes) in virtual time with
// churn at a LSNODE_SIM_MEDIAN session median (default 1h), 0.1% loss,
// a LSNODE_SIM_WARMUP warm-up (seconds, default 20) and a LSNODE_SIM_SECONDS
// window (default 60), and prints
// one line per size (LSNODE_SIM_PARTIAL=F@B: a fraction F of the members
// keep partial views of B region bits): bytes/s per node (mean, p99), messages and signature
// checks per second, the spread of joins and failures, and lookups.
func BenchmarkSim(b *testing.B) {
	sizes := []int{10000}
	if v := os.Getenv("LSNODE_SIM_MEMBERS"); v != "" {
		sizes = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 10 || n > 200000 {
				b.Fatalf("LSNODE_SIM_MEMBERS: %q is not a size from 10 to 200000", s)
			}
			sizes = append(sizes, n)
		}
	}
	median := time.Hour
	if v := os.Getenv("LSNODE_SIM_MEDIAN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("LSNODE_SIM_MEDIAN: %v", err)
		}
		median = d
	}
	window := envSeconds(b, "LSNODE_SIM_SECONDS", 60)
	// LSNODE_SIM_WARMUP: seconds before the window (default 20). A view
	// holds a dead member Tombstone (5 min) and hands it to each joiner,
	// so bytes under churn reach their steady state only after that.
	warmup := envSeconds(b, "LSNODE_SIM_WARMUP", 20)
	var stalls time.Duration
	if v := os.Getenv("LSNODE_SIM_STALLS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("LSNODE_SIM_STALLS: %v", err)
		}
		stalls = d
	}
	seed := uint64(1)
	if v := os.Getenv("LSNODE_SIM_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			b.Fatalf("LSNODE_SIM_SEED: %q is not a number", v)
		}
		seed = n
	}
	var flush time.Duration
	if v := os.Getenv("LSNODE_SIM_FLUSH"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("LSNODE_SIM_FLUSH: %q is not a duration", v)
		}
		flush = d
	}
	rings, hops := envOneToFour(b, "LSNODE_SIM_FLOODRINGS"), envOneToFour(b, "LSNODE_SIM_SEEDHOPS")
	var partial float64
	bits := 0
	if v := os.Getenv("LSNODE_SIM_PARTIAL"); v != "" {
		f, b2, ok := strings.Cut(v, "@")
		var err error
		if partial, err = strconv.ParseFloat(f, 64); err != nil || partial < 0 || partial > 1 || !ok {
			b.Fatalf("LSNODE_SIM_PARTIAL: %q is not FRACTION@BITS (0.5@4)", v)
		}
		if bits, err = strconv.Atoi(b2); err != nil || bits < 1 || bits > 6 {
			b.Fatalf("LSNODE_SIM_PARTIAL: region bits %q are not 1 to 6", b2)
		}
	}
	for i := 0; i < b.N; i++ {
		for _, n := range sizes {
			r, err := Run(Config{N: n, Seed: seed, Warmup: warmup, Duration: window, Median: median, Loss: 0.001,
				Stalls: stalls, StallFor: 3 * time.Second, Partial: partial, RegionBits: bits, FlushEvery: flush, FloodRings: rings, SeedHops: hops})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(r.SentMean, fmt.Sprintf("B/s/node@%d", n))
			if r.Joins > 0 {
				b.ReportMetric(r.JoinP99.Seconds(), fmt.Sprintf("join-p99-s@%d", n))
			}
			if r.Failures > 0 {
				b.ReportMetric(r.FailP99.Seconds(), fmt.Sprintf("fail-p99-s@%d", n))
			}
			b.ReportMetric(pct(r.OneHop, r.LookupsDone), fmt.Sprintf("one-hop%%@%d", n))
			b.ReportMetric(pct(r.Right, r.LookupsDone), fmt.Sprintf("right%%@%d", n))
			b.ReportMetric(float64(r.Unreached), fmt.Sprintf("unreached@%d", n))
			fmt.Printf("lsnode membership sim: %s\n", r)
			fmt.Printf("  payload B/s/node by message type (messages/s): %s\n", byType(r))
		}
	}
}

// envOneToFour reads a count from 1 to 4 from the variable name (0:
// unset, the membership's default).
func envOneToFour(b *testing.B, name string) int {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 4 {
		b.Fatalf("%s: %q is not 1 to 4", name, v)
	}
	return n
}

// byType lists the payload each message type cost a node per second, and
// how many messages.
func byType(r Report) string {
	names := []string{1: "ping", "ack", "ping-req", "have", "want", "updates", "join", "snapshot", "sync", "summary", "accuse", "sub-sync"}
	var out []string
	for t, b := range r.ByType {
		if b == 0 || r.Members == 0 {
			continue
		}
		name := fmt.Sprint(t)
		if t < len(names) && names[t] != "" {
			name = names[t]
		}
		per := float64(r.Members) * r.Window.Seconds()
		out = append(out, fmt.Sprintf("%s %.0f (%.2f msgs)", name, b/per, r.MsgsByType[t]/per))
	}
	return strings.Join(out, ", ")
}

// envSeconds is the whole number of seconds (at least 1) in the variable
// name, or def when it is unset.
func envSeconds(b *testing.B, name string, def int) time.Duration {
	n := def
	if v := os.Getenv(name); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("%s: %q is not a whole number of seconds", name, v)
		}
	}
	return time.Duration(n) * time.Second
}
