package proxy

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics registers the proxy's metrics on reg: the final
// responses sent upstream by method and code
// (lsnode_proxy_requests_total, from Responses) and its counters
// (lsnode_proxy_*, from one Stats snapshot per scrape): what the
// dashboard shows.
func (p *Proxy) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		p.responses.Collector("lsnode_proxy_requests_total", "Requests the proxy answered upstream, by method and final status."),
		statsCollector{p},
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func proxyDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("lsnode", "proxy", name), help, nil, nil)
}

var (
	mForwarded     = proxyDesc("forwarded_total", "Requests sent on (one per branch).")
	mDirect        = proxyDesc("direct_total", "Requests sent straight to a Contact found in the overlay.")
	mReceived      = proxyDesc("received_total", "Requests received (ACK and CANCEL included).")
	mCacheHits     = proxyDesc("lookup_cache_hits_total", "Lookups answered from the proxy's cache.")
	mLookups       = proxyDesc("lookups_total", "Lookups the proxy asked the location service.")
	mAnchored      = proxyDesc("anchored_calls_total", "Calls whose media was anchored on an RTP relay.")
	mRelayedOffers = proxyDesc("relayed_offers_total", "Offers not anchored again (media auto): their media already goes to an overlay relay.")
	mNATPings      = proxyDesc("nat_keepalives_total", "OPTIONS sent down NAT flows.")
	mFlowed        = proxyDesc("flow_requests_total", "Requests sent down a NAT flow.")
	mFlows         = proxyDesc("nat_flows", "NAT flows kept alive.")
)

// statsCollector exports a Stats snapshot.
type statsCollector struct{ p *Proxy }

func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mForwarded, mDirect, mReceived, mCacheHits, mLookups, mAnchored, mRelayedOffers, mNATPings, mFlowed, mFlows} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Stats()
	for _, v := range []struct {
		d *prometheus.Desc
		v int64
	}{{mReceived, st.Requests}, {mForwarded, st.Forwarded}, {mDirect, st.Direct}, {mCacheHits, st.CacheHits},
		{mLookups, st.Lookups}, {mAnchored, st.Anchored}, {mRelayedOffers, st.Relayed}, {mNATPings, st.NATPings}, {mFlowed, st.Flowed}} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.v))
	}
	ch <- prometheus.MustNewConstMetric(mFlows, prometheus.GaugeValue, float64(st.Flows))
}
