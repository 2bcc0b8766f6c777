package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lsnode/lsnode/internal/promsnap"
)

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

var (
	mAllocs    = promsnap.Desc("relay", "allocations", "TURN allocations now.")
	mDenied    = promsnap.Desc("relay", "denied_peers_total", "TURN permissions refused by the peer policy.")
	mSessions  = promsnap.Desc("relay", "media_sessions", "RTP relay sessions now.")
	mMediaFwd  = promsnap.Desc("relay", "media_forwarded_packets_total", "RTP/RTCP packets the media relay forwarded.")
	mMediaDrop = promsnap.Desc("relay", "media_dropped_packets_total", "Packets the media relay dropped (unknown source or full).")
)

// RegisterMetrics registers the TURN server's metrics
// (lsnode_relay_allocations, lsnode_relay_denied_peers_total) on reg,
// read from one Stats snapshot per scrape.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(promsnap.Collector{Descs: []*prometheus.Desc{mAllocs, mDenied}, Read: func(emit promsnap.Emit) {
		st := s.Stats()
		emit(mAllocs, prometheus.GaugeValue, float64(st.Allocations))
		emit(mDenied, prometheus.CounterValue, float64(st.Denied))
	}})
}

// RegisterMetrics registers the media relay's metrics
// (lsnode_relay_media_*) on reg, read from one Stats snapshot per scrape.
func (m *Media) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(promsnap.Collector{Descs: []*prometheus.Desc{mSessions, mMediaFwd, mMediaDrop}, Read: func(emit promsnap.Emit) {
		st := m.Stats()
		emit(mSessions, prometheus.GaugeValue, float64(st.Sessions))
		emit(mMediaFwd, prometheus.CounterValue, float64(st.Forwarded))
		emit(mMediaDrop, prometheus.CounterValue, float64(st.Dropped))
	}})
}
