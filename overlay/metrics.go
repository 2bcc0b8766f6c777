package overlay

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics registers the overlay's gauges (lsnode_overlay_*) on reg.
// Each scrape reads one Stats snapshot, the one the dashboard shows.
func (o *Overlay) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(statsCollector{o})
}

func overlayDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("lsnode", "overlay", name), help, nil, nil)
}

var (
	mMembers = overlayDesc("members", "Live members in this node's membership view.")
	mRT      = overlayDesc("routing_table_peers", "Peers in the kad-dht routing table.")
	mConns   = overlayDesc("connections", "Open libp2p connections.")
	mPublic  = overlayDesc("reachable_public", "1 when the node is publicly reachable (a member), 0 behind NAT.")
	mRelayed = overlayDesc("relayed_addresses", "Circuit relay addresses this node announces.")
)

type statsCollector struct{ o *Overlay }

func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mMembers, mRT, mConns, mPublic, mRelayed} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.o.Stats(0)
	public := 0
	if st.Public {
		public = 1
	}
	for _, g := range []struct {
		d *prometheus.Desc
		v int
	}{{mMembers, st.MembersTotal}, {mRT, st.RoutingTable}, {mConns, st.Connections}, {mPublic, public}, {mRelayed, len(st.Relayed)}} {
		ch <- prometheus.MustNewConstMetric(g.d, prometheus.GaugeValue, float64(g.v))
	}
}
