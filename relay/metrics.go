package relay

import "github.com/prometheus/client_golang/prometheus"

// TURNStats is a snapshot of the TURN server: what the dashboard and the
// metrics show.
type TURNStats struct {
	// Allocations live now.
	Allocations int64 `json:"allocations"`
	// Denied counts permissions the peer policy refused.
	Denied int64 `json:"denied"`
}

// Stats returns a snapshot of the TURN server's counters.
func (s *Server) Stats() TURNStats {
	return TURNStats{Allocations: s.Allocations(), Denied: s.Denied()}
}

// MediaStats is a snapshot of the RTP relay.
type MediaStats struct {
	// Sessions live now.
	Sessions int `json:"media_sessions"`
	// Forwarded and Dropped count packets.
	Forwarded int64 `json:"media_forwarded"`
	Dropped   int64 `json:"media_dropped"`
}

// Stats returns a snapshot of the media relay's counters.
func (m *Media) Stats() MediaStats {
	return MediaStats{Sessions: m.Sessions(), Forwarded: m.Forwarded(), Dropped: m.Dropped()}
}

func relayDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("lsnode", "relay", name), help, nil, nil)
}

var (
	mAllocs    = relayDesc("allocations", "TURN allocations now.")
	mDenied    = relayDesc("denied_peers_total", "TURN permissions refused by the peer policy.")
	mSessions  = relayDesc("media_sessions", "RTP relay sessions now.")
	mMediaFwd  = relayDesc("media_forwarded_packets_total", "RTP/RTCP packets the media relay forwarded.")
	mMediaDrop = relayDesc("media_dropped_packets_total", "Packets the media relay dropped (unknown source or full).")
)

// RegisterMetrics registers the TURN server's metrics
// (lsnode_relay_allocations, lsnode_relay_denied_peers_total) on reg,
// read from one Stats snapshot per scrape.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(collector{descs: []*prometheus.Desc{mAllocs, mDenied}, collect: func(ch chan<- prometheus.Metric) {
		st := s.Stats()
		ch <- prometheus.MustNewConstMetric(mAllocs, prometheus.GaugeValue, float64(st.Allocations))
		ch <- prometheus.MustNewConstMetric(mDenied, prometheus.CounterValue, float64(st.Denied))
	}})
}

// RegisterMetrics registers the media relay's metrics
// (lsnode_relay_media_*) on reg, read from one Stats snapshot per scrape.
func (m *Media) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(collector{descs: []*prometheus.Desc{mSessions, mMediaFwd, mMediaDrop}, collect: func(ch chan<- prometheus.Metric) {
		st := m.Stats()
		ch <- prometheus.MustNewConstMetric(mSessions, prometheus.GaugeValue, float64(st.Sessions))
		ch <- prometheus.MustNewConstMetric(mMediaFwd, prometheus.CounterValue, float64(st.Forwarded))
		ch <- prometheus.MustNewConstMetric(mMediaDrop, prometheus.CounterValue, float64(st.Dropped))
	}})
}

// collector is a fixed set of descriptions and a function that reads them.
type collector struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
