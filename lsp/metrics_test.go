package lsp

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStoreMetrics: the store's metrics export StoreStats and DomainUsage
// (the MaxDomainLabels largest domains, the rest summed as OtherDomains),
// the operations' latency by op and result, and pass promlint.
func TestStoreMetrics(t *testing.T) {
	s := &Service{store: newStore(dssync.MutexWrap(ds.NewMapDatastore()), quota{}), ops: newOps()}
	for i := range 25 { // 5 domains past the bound
		s.store.signers[fmt.Sprintf("d%02d.example", i)] = &usage{n: 100 - i, bytes: 1000}
	}
	for i := range 3 {
		s.store.recs[fmt.Sprintf("sip:u%d@d00.example", i)] = &record{}
	}
	reg := prometheus.NewRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	var err error
	s.observe("lookup", time.Now(), &err)
	err = errors.New("unavailable")
	s.observe("publish", time.Now(), &err)
	page := gatherText(t, reg)
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %+v", err, problems)
	}
	for _, want := range []string{
		`lsnode_lsp_stored_records 3`,
		`lsnode_lsp_stored_entries 2200`, // 100+99+…+76
		`lsnode_lsp_stored_bytes 25000`,
		`lsnode_lsp_domain_stored_entries{domain="d00.example"} 100`,
		`lsnode_lsp_domain_stored_entries{domain="d19.example"} 81`,
		`lsnode_lsp_domain_stored_entries{domain="_other"} 390`, // 80+79+78+77+76
		`lsnode_lsp_domain_stored_bytes{domain="_other"} 5000`,
		`lsnode_lsp_operation_duration_seconds_count{op="lookup",result="ok"} 1`,
		`lsnode_lsp_operation_duration_seconds_count{op="publish",result="error"} 1`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("no %s in\n%s", want, page)
		}
	}
	if strings.Contains(page, `domain="d20.example"`) || strings.Count(page, "lsnode_lsp_domain_stored_entries{") != MaxDomainLabels+1 {
		t.Errorf("domain labels not bounded to %d + %s", MaxDomainLabels, OtherDomains)
	}
	if got := s.StoreStats(); got != (StoreStats{Records: 3, Entries: 2200, Bytes: 25000}) {
		t.Errorf("StoreStats %+v", got)
	}
}

// gatherText is reg's page in the text format.
func gatherText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name, v := mf.GetName(), 0.0
			switch {
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Histogram != nil:
				name, v = name+"_count", float64(m.Histogram.GetSampleCount())
			}
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			fmt.Fprintf(&b, "%s %g\n", name, v)
		}
	}
	return b.String()
}
