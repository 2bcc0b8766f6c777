package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lsnode/lsnode/internal/promsnap"
)

var (
	mForwarded     = promsnap.Desc("proxy", "forwarded_total", "Requests sent on (one per branch).")
	mDirect        = promsnap.Desc("proxy", "direct_total", "Requests sent straight to a Contact found in the overlay.")
	mReceived      = promsnap.Desc("proxy", "received_total", "Requests received (ACK and CANCEL included).")
	mCacheHits     = promsnap.Desc("proxy", "lookup_cache_hits_total", "Lookups answered from the proxy's cache.")
	mLookups       = promsnap.Desc("proxy", "lookups_total", "Lookups the proxy asked the location service.")
	mAnchored      = promsnap.Desc("proxy", "anchored_calls_total", "Calls whose media was anchored on an RTP relay.")
	mRelayedOffers = promsnap.Desc("proxy", "relayed_offers_total", "Offers not anchored again (media auto): their media already goes to an overlay relay.")
	mNATPings      = promsnap.Desc("proxy", "nat_keepalives_total", "OPTIONS sent down NAT flows.")
	mFlowed        = promsnap.Desc("proxy", "flow_requests_total", "Requests sent down a NAT flow.")
	mFlows         = promsnap.Desc("proxy", "nat_flows", "NAT flows kept alive.")
	mAckHeld       = promsnap.Desc("proxy", "ack_held_total", "Requests in a dialog held until the ACK of its 2xx went on.")
	mAckLate       = promsnap.Desc("proxy", "ack_late_total", "Requests in a dialog sent on after waiting their longest for the ACK of its 2xx.")
)

// RegisterMetrics registers the proxy's metrics on reg: the final
// responses sent upstream by method and code
// (lsnode_proxy_requests_total, from Responses) and its counters
// (lsnode_proxy_*, from one Stats snapshot per scrape): what the
// dashboard shows.
func (p *Proxy) RegisterMetrics(reg prometheus.Registerer) error {
	stats := promsnap.Collector{
		Descs: []*prometheus.Desc{mForwarded, mDirect, mReceived, mCacheHits, mLookups, mAnchored, mRelayedOffers, mNATPings, mFlowed, mFlows, mAckHeld, mAckLate},
		Read: func(emit promsnap.Emit) {
			st := p.Stats()
			for _, v := range []struct {
				d *prometheus.Desc
				v int64
			}{{mReceived, st.Requests}, {mForwarded, st.Forwarded}, {mDirect, st.Direct}, {mCacheHits, st.CacheHits},
				{mLookups, st.Lookups}, {mAnchored, st.Anchored}, {mRelayedOffers, st.Relayed}, {mNATPings, st.NATPings}, {mFlowed, st.Flowed},
				{mAckHeld, st.AckHeld}, {mAckLate, st.AckLate}} {
				emit(v.d, prometheus.CounterValue, float64(v.v))
			}
			emit(mFlows, prometheus.GaugeValue, float64(st.Flows))
		}}
	for _, c := range []prometheus.Collector{
		p.responses.Collector("lsnode_proxy_requests_total", "Requests the proxy answered upstream, by method and final status."),
		stats,
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
