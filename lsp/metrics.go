package lsp

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxDomainLabels bounds the domain label's values: the domains holding
// the most entries get their own series, the rest are summed under
// OtherDomains. Domain names come from the overlay, so unbounded labels
// would let any signer grow every member's scrape.
const MaxDomainLabels = 20

// OtherDomains labels the sum over the domains past MaxDomainLabels (no
// host name has an underscore).
const OtherDomains = "_other"

// RegisterMetrics registers the location service's metrics on reg: what
// this replica stores (lsnode_lsp_stored_*, lsnode_lsp_domain_stored_*),
// read from one StoreStats and one DomainUsage per scrape, and the
// latency of its operations (lsnode_lsp_operation_duration_seconds),
// which it observes from New on.
func (s *Service) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{storeCollector{s.StoreStats, s.DomainUsage}, s.ops} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// newOps returns the histogram of the service's operations, by op and
// result.
func newOps() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "lsnode", Subsystem: "lsp", Name: "operation_duration_seconds",
		Help:    "Location service operations (lookup, publish, remove) by outcome.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
	}, []string{"op", "result"})
}

// observe records one operation (Publish, Lookup, Remove, Register) begun
// at start, ended with *err.
func (s *Service) observe(op string, start time.Time, err *error) {
	result := "ok"
	if *err != nil {
		result = "error"
	}
	s.ops.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

func lspDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("lsnode", "lsp", name), help, labels, nil)
}

var (
	mRecords    = lspDesc("stored_records", "AORs this replica holds.")
	mEntries    = lspDesc("stored_entries", "Binding entries (tombstones included) this replica holds.")
	mBytes      = lspDesc("stored_bytes", "Encoded bytes of the entries this replica holds.")
	mDomEntries = lspDesc("domain_stored_entries", "Binding entries (tombstones included) this replica holds, by the AOR's domain (the 20 largest; the rest summed as _other).", "domain")
	mDomBytes   = lspDesc("domain_stored_bytes", "Encoded bytes of the entries this replica holds, by the AOR's domain (the 20 largest; the rest summed as _other).", "domain")
)

// storeCollector exports what this replica stores: StoreStats, and
// DomainUsage for the MaxDomainLabels domains holding the most.
type storeCollector struct {
	stats   func() StoreStats
	domains func(n int) (top []DomainUsage, rest DomainUsage)
}

func (storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mRecords, mEntries, mBytes, mDomEntries, mDomBytes} {
		ch <- d
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.stats()
	gauge(mRecords, float64(st.Records))
	gauge(mEntries, float64(st.Entries))
	gauge(mBytes, float64(st.Bytes))
	top, rest := c.domains(MaxDomainLabels)
	for _, d := range top {
		gauge(mDomEntries, float64(d.Entries), d.Domain)
		gauge(mDomBytes, float64(d.Bytes), d.Domain)
	}
	if rest.Entries > 0 {
		gauge(mDomEntries, float64(rest.Entries), OtherDomains)
		gauge(mDomBytes, float64(rest.Bytes), OtherDomains)
	}
}
