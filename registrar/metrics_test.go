package registrar

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: lsnode_registrar_requests_total exports the Responses the
// dashboard shows, by method and code, and passes promlint.
func TestMetrics(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	reg := prometheus.NewRegistry()
	if err := r.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	r.Responses().Add("REGISTER", 401)
	r.Responses().Add("REGISTER", 200)
	page := `
# HELP lsnode_registrar_requests_total Requests answered by the registrar, by method and final status.
# TYPE lsnode_registrar_requests_total counter
lsnode_registrar_requests_total{code="200",method="REGISTER"} 1
lsnode_registrar_requests_total{code="401",method="REGISTER"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(page)); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %+v", err, problems)
	}
}
