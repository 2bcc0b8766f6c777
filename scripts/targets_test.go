package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTargetsSummary: scripts/targets --summary reads the figures each
// benchmark reported (go test's metric units) and marks every target met,
// missed or missing; it exits 1 unless all are met.
func TestTargetsSummary(t *testing.T) {
	good := map[string]string{
		"sim-idle-10k":   "BenchmarkSim-2 1 5 ns/op 310.5 B/s/node@10000 100 one-hop%@10000\n",
		"sim-churn-10k":  "lsnode membership sim: ...\nBenchmarkSim-2 1 5 ns/op 1989 B/s/node@10000 6.1 fail-p99-s@10000 9.03 join-p99-s@10000 99.3 one-hop%@10000\n",
		"sim-idle-100k":  "BenchmarkSim-2 1 5 ns/op 402 B/s/node@100000\n",
		"sim-churn-100k": "BenchmarkSim-2 1 5 ns/op 613 B/s/node@100000\n",
		"scale": "BenchmarkScale 1 5 ns/op 312 idleB/s/node@25 4.0 idleMB-RSS/node@25 0 lost+failed@25 400 idleB/s/node@50 0 lost+failed@50 " +
			"500 idleB/s/node@100 0 lost+failed@100 600 idleB/s/node@300 4.4 idleMB-RSS/node@300 0 lost+failed@300\n",
		"overlay100": "BenchmarkOverlay100 1 5 ns/op 0.41 lookup-p50-ms 1.5 lookup-p99-ms 0 lsp-errors 0.3 pub-p50-ms 1.9 pub-p99-ms\n",
		"chaos":      "{\n  \"nodes\": 30,\n  \"lost\": 0,\n  \"unavailable\": 0\n}\n",
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
	delete(bad, "overlay100")
	out, err = run(bad)
	if err == nil || !strings.Contains(out, "lsnode overlay targets: 17 met, 7 missed") {
		t.Fatalf("a missed churn target, a lossy chaos run and no overlay100 run: %v\n%s", err, out)
	}
	for _, want := range []string{"2001", "MISSED", "MISSING"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
}
