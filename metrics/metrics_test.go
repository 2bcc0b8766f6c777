package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// gaugeRegistrant registers one gauge, as a component's RegisterMetrics
// does.
type gaugeRegistrant struct{ g prometheus.Gauge }

func (r gaugeRegistrant) RegisterMetrics(reg prometheus.Registerer) error { return reg.Register(r.g) }

// TestMetricsLint: the components' collectors are served with their
// values, the page passes promlint, and registering a component twice is
// an error.
func TestMetricsLint(t *testing.T) {
	m := New()
	members := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "lsnode", Subsystem: "overlay", Name: "members", Help: "Live members."})
	members.Set(7)
	received := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "lsnode", Subsystem: "proxy", Name: "received_total", Help: "Requests received."})
	received.Add(12)
	if err := m.Register(gaugeRegistrant{members}, registrantFunc(func(reg prometheus.Registerer) error { return reg.Register(received) })); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	page := rec.Body.String()
	problems, err := promlint.New(strings.NewReader(page)).Lint()
	if err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %+v", err, problems)
	}
	for _, want := range []string{`lsnode_overlay_members 7`, `lsnode_proxy_received_total 12`} {
		if !strings.Contains(page, want) {
			t.Errorf("no %s in\n%s", want, page)
		}
	}
	if err := m.Register(gaugeRegistrant{members}); err == nil {
		t.Fatal("a collector registered twice")
	}
}

type registrantFunc func(prometheus.Registerer) error

func (f registrantFunc) RegisterMetrics(reg prometheus.Registerer) error { return f(reg) }
