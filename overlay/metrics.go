package overlay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lsnode/lsnode/internal/promsnap"
)

var (
	mMembers = promsnap.Desc("overlay", "members", "Live members in this node's membership view.")
	mRT      = promsnap.Desc("overlay", "routing_table_peers", "Peers in the kad-dht routing table.")
	mConns   = promsnap.Desc("overlay", "connections", "Open libp2p connections.")
	mPublic  = promsnap.Desc("overlay", "reachable_public", "1 when the node is publicly reachable (a member), 0 behind NAT.")
	mRelayed = promsnap.Desc("overlay", "relayed_addresses", "Circuit relay addresses this node announces.")
)

// RegisterMetrics registers the overlay's gauges (lsnode_overlay_*) on reg.
// Each scrape reads one Stats snapshot, the one the dashboard shows.
func (o *Overlay) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(promsnap.Collector{Descs: []*prometheus.Desc{mMembers, mRT, mConns, mPublic, mRelayed},
		Read: func(emit promsnap.Emit) {
			st := o.Stats(0)
			public := 0.0
			if st.Reachability == "public" {
				public = 1
			}
			emit(mMembers, prometheus.GaugeValue, float64(st.MembersTotal))
			emit(mRT, prometheus.GaugeValue, float64(st.RoutingTable))
			emit(mConns, prometheus.GaugeValue, float64(st.Connections))
			emit(mPublic, prometheus.GaugeValue, public)
			emit(mRelayed, prometheus.GaugeValue, float64(len(st.Relayed)))
		}})
}
