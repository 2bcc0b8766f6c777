package scripts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTargetsSummary: scripts/targets --summary reads the figures each
// benchmark reported (go test's metric units) and marks every target met,
// missed or missing; it exits 1 unless all are met.
func TestTargetsSummary(t *testing.T) {
	// bench is BenchmarkOverlay100's summary line with these figures (ms).
	bench := func(pub50, pub99, look50, look99 float64) string {
		return fmt.Sprintf("\nlsnode bench: 100 nodes start 14.4s (init 0.0s, stop 1.3s), RSS 13.1 MB/node (15.5 after load) | "+
			"publish p50 %.2fms p99 %.2fms 3363/s vs PutValue p50 7.21ms p99 25.43ms 161/s (13.9x p50, 13.3x p99) | "+
			"lookup p50 %.2fms p99 %.2fms 2380/s vs GetValue p50 5.64ms p99 30.80ms 166/s (5.6x p50, 2.2x p99; vs Quorum(2) p50 1.76ms: 1.8x) | errors 0\n",
			pub50, pub99, look50, look99)
	}
	good := map[string]string{
		"sim-idle-10k":   "BenchmarkSim-2 1 5 ns/op 310.5 B/s/node@10000 100 one-hop%@10000\n",
		"sim-churn-10k":  "lsnode membership sim: ...\nBenchmarkSim-2 1 5 ns/op 1989 B/s/node@10000 6.1 fail-p99-s@10000 9.03 join-p99-s@10000 99.3 one-hop%@10000\n",
		"sim-idle-100k":  "BenchmarkSim-2 1 5 ns/op 402 B/s/node@100000\n",
		"sim-churn-100k": "BenchmarkSim-2 1 5 ns/op 613 B/s/node@100000\n",
		"scale": "BenchmarkScale 1 5 ns/op 312 idleB/s/node@25 4.0 idleMB-RSS/node@25 0 lost+failed@25 400 idleB/s/node@50 0 lost+failed@50 " +
			"500 idleB/s/node@100 0 lost+failed@100 600 idleB/s/node@300 4.4 idleMB-RSS/node@300 0 lost+failed@300\n",
		// Medians: lookup p50 0.70 against 0.70, p99 2.00 against 6.00;
		// publish p50 0.50 against 0.70, p99 1.80 against 5.00.
		"overlay100-before-1": bench(0.63, 5.13, 0.67, 5.76),
		"overlay100-before-2": bench(0.83, 4.80, 0.73, 6.48),
		"overlay100-before-3": bench(0.70, 5.00, 0.70, 6.00),
		"overlay100-now-1":    bench(0.42, 1.62, 0.74, 2.02),
		"overlay100-now-2":    bench(0.50, 1.80, 0.70, 14.15),
		"overlay100-now-3":    bench(0.52, 1.91, 0.60, 2.00),
		"chaos":               "{\n  \"nodes\": 30,\n  \"lost\": 0,\n  \"unavailable\": 0\n}\n",
	}
	run := func(files map[string]string) (string, error) {
		t.Helper()
		dir := t.TempDir()
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command("./targets", "--summary", dir).CombinedOutput()
		return string(out), err
	}
	out, err := run(good)
	if err != nil || !strings.Contains(out, "lsnode overlay targets: 24 met, 0 missed") {
		t.Fatalf("every figure within its target: %v\n%s", err, out)
	}
	for _, want := range []string{"churn B/s/node, 10 000 simulated", "1989", "RSS flat: 300 nodes' over 25 nodes'", "1.10"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}

	bad := map[string]string{}
	for k, v := range good {
		bad[k] = v
	}
	bad["sim-churn-10k"] = strings.Replace(good["sim-churn-10k"], "1989 B/s", "2001 B/s", 1)
	bad["chaos"] = strings.Replace(good["chaos"], `"lost": 0`, `"lost": 3`, 1)
	delete(bad, "scale")
	bad["overlay100-now-3"] = bench(0.52, 1.91, 0.80, 2.00) // lookup p50 median 0.74 > 1.1 × 0.70
	out, err = run(bad)
	if err == nil || !strings.Contains(out, "lsnode overlay targets: 11 met, 13 missed") {
		t.Fatalf("a missed churn target, a lossy chaos run, a slower lookup and no scale run: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`lookup p50 ms, 100 nodes \(median of runs\) +0\.70 +0\.74 +≤ 0\.77 ms +met`).MatchString(out) {
		t.Errorf("lookup p50: want the medians 0.70 and 0.74 within 0.77:\n%s", out)
	}
	bad["overlay100-now-1"] = bench(0.42, 1.62, 0.80, 2.02)
	out, _ = run(bad)
	if !regexp.MustCompile(`lookup p50 ms, 100 nodes \(median of runs\) +0\.70 +0\.80 +≤ 0\.77 ms +MISSED`).MatchString(out) {
		t.Errorf("lookup p50: want the median 0.80 against 0.77 missed:\n%s", out)
	}
	delete(bad, "overlay100-now-2")
	bad["overlay100-now-1"] = "--- FAIL: BenchmarkOverlay100\n"
	out, _ = run(bad)
	if !strings.Contains(out, "publish/lookup errors, 100 nodes                        0          -") {
		t.Errorf("a failed run counts as missing errors:\n%s", out)
	}
	for _, want := range []string{"2001", "MISSED", "MISSING"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
}
