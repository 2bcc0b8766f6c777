package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: the proxy's metrics export the Responses and Stats the
// dashboard shows, with their names and labels, and pass promlint.
func TestMetrics(t *testing.T) {
	p := flowProxy(t, "flow secret for tests")
	reg := prometheus.NewRegistry()
	if err := p.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	p.flows.Edge("198.51.100.7:40123", "udp", time.Now().Add(time.Minute))
	p.stats.requests.Add(12)
	p.stats.lookups.Add(4)
	p.responses.Add("INVITE", 200)
	if st := p.Stats(); st.Flows != 1 || st.Requests != 12 {
		t.Fatalf("stats %+v", st)
	}
	page := `
# HELP lsnode_proxy_nat_flows NAT flows kept alive.
# TYPE lsnode_proxy_nat_flows gauge
lsnode_proxy_nat_flows 1
# HELP lsnode_proxy_received_total Requests received (ACK and CANCEL included).
# TYPE lsnode_proxy_received_total counter
lsnode_proxy_received_total 12
# HELP lsnode_proxy_lookups_total Lookups the proxy asked the location service.
# TYPE lsnode_proxy_lookups_total counter
lsnode_proxy_lookups_total 4
# HELP lsnode_proxy_requests_total Requests the proxy answered upstream, by method and final status.
# TYPE lsnode_proxy_requests_total counter
lsnode_proxy_requests_total{code="200",method="INVITE"} 1
`
	names := []string{"lsnode_proxy_nat_flows", "lsnode_proxy_received_total", "lsnode_proxy_lookups_total", "lsnode_proxy_requests_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(page), names...); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg); n != 13 {
		t.Errorf("%d series, want 13 (12 counters and gauges, 1 response count)", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %+v", err, problems)
	}
}
