package testnet_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/registrar"
	"github.com/lsnode/lsnode/testnet"
)

// benchUsers writes n users of a.example (one password) as a users file and
// a sipp CSV; it returns their paths.
func benchUsers(tb testing.TB, dir string, n int) (usersPath, csvPath string) {
	tb.Helper()
	uf := registrar.UsersFile{Realm: "a.example"}
	var csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	for i := 0; i < n; i++ {
		u := fmt.Sprintf("bench%d", i)
		uf.Users = append(uf.Users, registrar.NewUserHash(u, "sip:"+u+"@a.example", "a.example", benchPassword))
		fmt.Fprintf(&csv, "%s;a.example;[authentication username=%s password=%s]\n", u, u, benchPassword)
	}
	usersPath = filepath.Join(dir, "bench-users.json")
	csvPath = filepath.Join(dir, "bench-users.csv")
	if err := uf.Save(usersPath); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(csvPath, []byte(csv.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return usersPath, csvPath
}

type soakSample struct {
	at         time.Duration
	rss        int64
	heap       uint64 // live heap after a GC
	goroutines int
}

type soakResult struct {
	rate          int
	dur           time.Duration
	ok            bool
	failed        string         // sipp's failure summary
	failures      map[string]int // its failed calls by kind (failureCounts)
	calls         int            // the calls sipp made
	samples       []soakSample
	before, after soakSample // before the load, and after it stopped
	start, end    soakSample // after the warm-up, and the load's last sample
	registrations int64
	batches       int64
	took          time.Duration // sipp's run: past dur, the server did not keep pace
}

func (r soakResult) String() string {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	return fmt.Sprintf("soak: REGISTER at %d/s for %v against a 10-node testnet (R=3), digest off: %s | after warm-up (t=%v) → end (t=%v): RSS %s → %s, live heap %s → %s, goroutines %d → %d | "+
		"idle before → after the load: RSS %s → %s, goroutines %d → %d | %d registrations in %d batches | sipp's run took %v",
		r.rate, r.dur, map[bool]string{true: "0 failed transactions", false: "FAILED: " + r.failed}[r.ok],
		r.start.at.Round(time.Second), r.end.at.Round(time.Second),
		mib(r.start.rss), mib(r.end.rss), mib(int64(r.start.heap)), mib(int64(r.end.heap)), r.start.goroutines, r.end.goroutines,
		mib(r.before.rss), mib(r.after.rss), r.before.goroutines, r.after.goroutines, r.registrations, r.batches, r.took.Round(time.Second))
}

// soak runs sipp REGISTER load at rate for dur against a stateless
// registrar of an in-process 10-node testnet, sampling this process's RSS
// and goroutines every interval.
func soak(tb testing.TB, rate int, dur, interval time.Duration) soakResult {
	if _, err := exec.LookPath("sipp"); err != nil {
		tb.Fatal("sipp not installed (Debian: sip-tester)")
	}
	dir := tb.TempDir()
	if _, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: 10, PerDomain: 2, Overlay: "soak"}); err != nil {
		tb.Fatal(err)
	}
	_, csvPath := benchUsers(tb, dir, 10000)
	nw, err := testnet.Start(context.Background(), dir, testnet.RunOptions{Logger: quiet(), DisableDHTRefresh: true, Tweak: func(c *node.Config) {
		fastGossip(c)
		c.Registrar.UsersFile, c.HTTP, c.Registrar.Open = "", "", true // digest off (and so no TURN credential endpoint)
	}})
	if err != nil {
		tb.Fatal(err)
	}
	defer nw.Close()
	sample := func(at time.Duration) soakSample {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return soakSample{at: at, rss: rssBytes(), heap: ms.HeapAlloc, goroutines: runtime.NumGoroutine()}
	}
	res := soakResult{rate: rate, dur: dur, before: sample(0)}
	scenario, _ := filepath.Abs("testdata/sipp/load_register.xml")
	// Warm-up: every user registered once (10000 at rate) and sipgo's
	// completed transactions at their steady count (kept for Timer J, 32 s).
	warm := max(dur/10, 10000*time.Second/time.Duration(rate), 35*time.Second)
	profiled := false
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	t0 := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s := sample(time.Since(t0))
				mu.Lock()
				res.samples = append(res.samples, s)
				mu.Unlock()
				if s.at >= warm && !profiled {
					profiled = true
					writeHeapProfile(".warm")
				}
			}
		}
	}()
	cctx, ccancel := context.WithTimeout(context.Background(), dur+time.Minute)
	defer ccancel()
	cmd := exec.CommandContext(cctx, "sipp", nw.Node(0).SIPAddr(), "-sf", scenario, "-inf", csvPath,
		"-r", fmt.Sprint(rate), "-m", fmt.Sprint(int(float64(rate)*dur.Seconds())),
		"-i", "127.0.0.1", "-p", fmt.Sprint(freeUDPPort(tb)), "-buff_size", "4194304",
		"-nostdin", "-timeout", fmt.Sprintf("%ds", int(dur.Seconds())+30), "-trace_err", "-error_file", "errors.log", "-nd")
	cmd.Dir = tb.TempDir()
	started := time.Now()
	out, err := cmd.CombinedOutput()
	res.took = time.Since(started)
	cancel()
	wg.Wait()
	res.ok, res.calls = err == nil, int(float64(rate)*dur.Seconds())
	if !res.ok {
		errs, _ := os.ReadFile(filepath.Join(cmd.Dir, "errors.log"))
		res.failures = failureCounts(errs, scenario)
		res.failed = fmt.Sprintf("%v: %v; %s", err, res.failures, tail(out))
	}
	for _, i := range []int{0, 1} {
		r, b := nw.Node(i).Location().RegisterStats()
		res.registrations, res.batches = res.registrations+r, res.batches+b
	}
	for _, s := range res.samples {
		if s.at >= warm {
			res.start = s
			break
		}
	}
	if n := len(res.samples); n > 0 {
		res.end = res.samples[n-1]
	}
	time.Sleep(3 * time.Second) // in-flight work drains, idle connections stay
	res.after = sample(time.Since(t0))
	writeHeapProfile(".end")
	return res
}

// writeHeapProfile writes a heap profile to $LSNODE_SOAK_HEAPPROFILE+suffix
// when that is set (to compare the warm-up with the end of a soak).
func writeHeapProfile(suffix string) {
	p := os.Getenv("LSNODE_SOAK_HEAPPROFILE")
	if p == "" {
		return
	}
	if f, err := os.Create(p + suffix); err == nil {
		_ = pprof.WriteHeapProfile(f)
		f.Close()
	}
}

// TestSoak: a short soak in CI (LSNODE_SOAK_SECONDS, 70; LSNODE_SOAK_RATE,
// 400/s, under -race in make test): every REGISTER answered 200, or 503
// when shed (at most 1% of them), sipp's run not stretched past its
// length by more than a quarter (the server kept pace: a UDP request it
// could not take is dropped by the kernel and retransmitted, a failure
// sipp's counts do not show), and
// neither goroutines nor memory grow from the end of the warm-up to the end of the run. The
// reported 10-minute soak is BenchmarkSoak (make soak).
func TestSoak(t *testing.T) {
	// 400/s: under -race on the 2-core machine the registrar answers about
	// 750/s at best (shedding 5% at 800/s), and one CI run shed 6% at
	// 600/s while others passed it: this test is for leaks and races, the
	// capacity is make soak's (2400/s, no -race). Before it answered
	// REGISTER without transactions it passed 800/s by taking 110 s for
	// 70 s of load: sipp retransmitted what the kernel dropped, which the
	// run's length now catches.
	res := soak(t, envInt("LSNODE_SOAK_RATE", 400), time.Duration(envInt("LSNODE_SOAK_SECONDS", 70))*time.Second, 2*time.Second)
	t.Log(res)
	if res.took > res.dur+res.dur/4 {
		t.Errorf("sipp's %v of load took %v: the registrar did not keep pace", res.dur, res.took.Round(time.Second))
	}
	for _, s := range res.samples {
		t.Logf("t=%v rss=%.1fMiB heap=%.1fMiB goroutines=%d", s.at.Round(time.Second), float64(s.rss)/(1<<20), float64(s.heap)/(1<<20), s.goroutines)
	}
	// Every REGISTER must get its final answer. A 503 with Retry-After is
	// one: the registrar shedding what it cannot take in time
	// (registrar.max_in_flight), which under -race depends on the machine's
	// speed, not on the code. A few are told apart from failures; more
	// than 1% of the calls, or any other failure, fails.
	if !res.ok {
		shed := res.failures["answered 503"]
		other := 0
		for k, n := range res.failures {
			if k != "answered 503" {
				other += n
			}
		}
		if shed == 0 || other > 0 || shed*100 > res.calls {
			t.Fatalf("failed transactions: %s", res.failed)
		}
		t.Logf("%d of %d REGISTERs shed with 503 (at most 1%% allowed), no other failure", shed, res.calls)
	}
	// Growth, not level: under load goroutines track requests in flight,
	// so allow the noise of a busy moment, not a leak's steady climb.
	if res.end.goroutines > res.start.goroutines+res.start.goroutines/4+64 {
		t.Errorf("goroutines grew from %d to %d", res.start.goroutines, res.end.goroutines)
	}
	if res.after.goroutines > res.before.goroutines+res.before.goroutines/4+64 {
		t.Errorf("goroutines after the load %d, before it %d", res.after.goroutines, res.before.goroutines)
	}
	if res.start.at == 0 {
		t.Fatalf("the run ended before its warm-up did")
	}
	if res.end.heap > res.start.heap+res.start.heap/4 {
		t.Errorf("live heap grew from %d to %d bytes after the warm-up", res.start.heap, res.end.heap)
	}
}

// BenchmarkSoak is the reported soak: REGISTER at LSNODE_SOAK_RATE (2400/s:
// 80% of the 3000/s BenchmarkRegister sustained, digest off) for
// LSNODE_SOAK_SECONDS (600), sampling RSS and goroutines every 30 s.
func BenchmarkSoak(b *testing.B) {
	res := soak(b, envInt("LSNODE_SOAK_RATE", 2400), time.Duration(envInt("LSNODE_SOAK_SECONDS", 600))*time.Second, 30*time.Second)
	for _, s := range res.samples {
		b.Logf("t=%v rss=%.1fMiB heap=%.1fMiB goroutines=%d", s.at.Round(time.Second), float64(s.rss)/(1<<20), float64(s.heap)/(1<<20), s.goroutines)
	}
	fmt.Printf("\n%s\n", res)
	if !res.ok {
		b.Fatal("soak failed")
	}
}
