package node

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNodeMetrics: the node's own metrics (certificate expiry) pass
// promlint with their names; the location service's latency is lsp's
// (lsp.TestStoreMetrics).
func TestNodeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	certs := certMetrics{{Role: "domain", NotAfter: time.Unix(1_900_000_000, 0)}}
	if err := certs.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		b.WriteString(mf.String())
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %+v", err, problems)
	}
	if want := `lsnode_lsp_domain_certificate_expiry_timestamp_seconds`; !strings.Contains(b.String(), want) {
		t.Errorf("no %s in %s", want, b.String())
	}
	if strings.Contains(b.String(), "member_certificate") {
		t.Error("a member certificate expiry without a member certificate")
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 1 {
		t.Errorf("%d certificate series (%v), want 1", n, err)
	}
}
