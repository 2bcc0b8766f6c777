package packaging

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAlertRules: the alert rules load in Prometheus (promtool check
// rules) and each alert fires on the series that should fire it and not on
// healthy ones (promtool test rules alerts_test.yml).
func TestAlertRules(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool not installed (Debian package prometheus; scripts/deps test installs it)")
	}
	for _, args := range [][]string{{"check", "rules", "lsnode-alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestGrafanaDashboard: the dashboard is JSON Grafana imports: a title, a
// uid, and panels that each query Prometheus. (Its metric names are
// checked against a node's registry in node's TestMetricNamesInDocs.)
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/lsnode-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title, UID string
		Panels     []struct {
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard %q uid %q with %d panels", d.Title, d.UID, len(d.Panels))
	}
	for _, p := range d.Panels {
		if p.Title == "" || (p.Type != "stat" && p.Type != "timeseries") || len(p.Targets) == 0 {
			t.Errorf("panel %+v", p)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || !strings.Contains(tg.Expr, "_") {
				t.Errorf("panel %q: query %q", p.Title, tg.Expr)
			}
		}
	}
}
