package metrics

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestMetricsLint: every metric, with every source present, is exported
// with its value and labels, and the page passes promlint; a source left
// out drops its metrics.
func TestMetricsLint(t *testing.T) {
	n := func(v int) func() int { return func() int { return v } }
	n64 := func(v int64) func() int64 { return func() int64 { return v } }
	m := New(Sources{
		Members: n(7), RoutingTable: n(20), Connections: n(9), Public: n(1), Relayed: n(0),
		Store:            func() (int, int, int64) { return 3, 5, 900 },
		DomainCertExpiry: time.Unix(1_900_000_000, 0),
		Domains: func() ([]DomainStored, DomainStored) {
			// A source that ignores the bound: 25 domains, 5 past it.
			var top []DomainStored
			for i := range 25 {
				top = append(top, DomainStored{Domain: fmt.Sprintf("d%02d.example", i), Entries: 100 - i, Bytes: 1000})
			}
			return top, DomainStored{Entries: 2, Bytes: 50}
		},
		RegistrarResponses: func() map[MethodCode]int64 {
			return map[MethodCode]int64{{"REGISTER", 200}: 10, {"REGISTER", 401}: 10}
		},
		ProxyResponses: func() map[MethodCode]int64 { return map[MethodCode]int64{{"INVITE", 200}: 4} },
		Proxy:          func() ProxyStats { return ProxyStats{Requests: 12, Forwarded: 8, Lookups: 4, Flows: 2} },
		Allocations:    n64(1), Denied: n64(0), MediaSessions: n64(2), MediaForwarded: n64(100), MediaDropped: n64(1),
	})
	m.Observe("lookup", 800*time.Microsecond, nil)
	m.Observe("publish", 3*time.Millisecond, errors.New("unavailable"))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	page := rec.Body.String()
	problems, err := promlint.New(strings.NewReader(page)).Lint()
	if err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %+v", err, problems)
	}
	for _, want := range []string{
		`lsnode_registrar_requests_total{code="401",method="REGISTER"} 10`,
		`lsnode_proxy_requests_total{code="200",method="INVITE"} 4`,
		`lsnode_overlay_members 7`,
		`lsnode_lsp_stored_bytes 900`,
		`lsnode_lsp_domain_certificate_expiry_timestamp_seconds 1.9e+09`,
		`lsnode_lsp_domain_stored_entries{domain="d00.example"} 100`,
		`lsnode_lsp_domain_stored_entries{domain="d19.example"} 81`,
		`lsnode_lsp_domain_stored_entries{domain="_other"} 392`, // 80+79+78+77+76 + 2
		`lsnode_lsp_domain_stored_bytes{domain="_other"} 5050`,
		`lsnode_proxy_nat_flows 2`,
		`lsnode_relay_media_forwarded_packets_total 100`,
		`lsnode_lsp_operation_duration_seconds_count{op="publish",result="error"} 1`,
		`lsnode_lsp_operation_duration_seconds_bucket{op="lookup",result="ok",le="0.001"} 1`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("no %s in\n%s", want, page)
		}
	}
	if strings.Contains(page, "member_certificate") {
		t.Error("a member certificate expiry without a member certificate")
	}
	if strings.Contains(page, `domain="d20.example"`) || strings.Count(page, "lsnode_lsp_domain_stored_entries{") != MaxDomainLabels+1 {
		t.Errorf("domain labels not bounded to %d + %s", MaxDomainLabels, OtherDomains)
	}
	// Only the overlay: no registrar, proxy or relay metrics.
	only := New(Sources{Members: n(1)})
	if c := testutil.CollectAndCount(only.Registry()); c != 1 {
		t.Fatalf("%d metrics with one source", c)
	}
}
