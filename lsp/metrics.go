package lsp

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lsnode/lsnode/internal/promsnap"
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
	for _, c := range []prometheus.Collector{storeCollector(s.StoreStats, s.DomainUsage), s.ops} {
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
		Namespace: promsnap.Namespace, Subsystem: "lsp", Name: "operation_duration_seconds",
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

var (
	mRecords    = promsnap.Desc("lsp", "stored_records", "AORs this replica holds.")
	mEntries    = promsnap.Desc("lsp", "stored_entries", "Binding entries (tombstones included) this replica holds.")
	mBytes      = promsnap.Desc("lsp", "stored_bytes", "Encoded bytes of the entries this replica holds.")
	mDomEntries = promsnap.Desc("lsp", "domain_stored_entries", "Binding entries (tombstones included) this replica holds, by the AOR's domain (the 20 largest; the rest summed as _other).", "domain")
	mDomBytes   = promsnap.Desc("lsp", "domain_stored_bytes", "Encoded bytes of the entries this replica holds, by the AOR's domain (the 20 largest; the rest summed as _other).", "domain")
)

// storeCollector exports what this replica stores: StoreStats, and
// DomainUsage for the MaxDomainLabels domains holding the most.
func storeCollector(stats func() StoreStats, domains func(n int) (top []DomainUsage, rest DomainUsage)) promsnap.Collector {
	return promsnap.Collector{Descs: []*prometheus.Desc{mRecords, mEntries, mBytes, mDomEntries, mDomBytes},
		Read: func(emit promsnap.Emit) {
			st := stats()
			emit(mRecords, prometheus.GaugeValue, float64(st.Records))
			emit(mEntries, prometheus.GaugeValue, float64(st.Entries))
			emit(mBytes, prometheus.GaugeValue, float64(st.Bytes))
			top, rest := domains(MaxDomainLabels)
			for _, d := range top {
				emit(mDomEntries, prometheus.GaugeValue, float64(d.Entries), d.Domain)
				emit(mDomBytes, prometheus.GaugeValue, float64(d.Bytes), d.Domain)
			}
			if rest.Entries > 0 {
				emit(mDomEntries, prometheus.GaugeValue, float64(rest.Entries), OtherDomains)
				emit(mDomBytes, prometheus.GaugeValue, float64(rest.Bytes), OtherDomains)
			}
		}}
}
