package node

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lsnode/lsnode/internal/promsnap"
	"github.com/lsnode/lsnode/metrics"
)

// The node's own metrics: the expiry of the certificates the node holds.
// Every part it runs registers its own (RegisterMetrics, in its package's
// metrics.go); startMetrics only lists them.

var (
	dDomainCert = promsnap.Desc("lsp", "domain_certificate_expiry_timestamp_seconds",
		"When the domain certificate that signs this node's writes expires (Unix time).")
	dMemberCert = promsnap.Desc("overlay", "member_certificate_expiry_timestamp_seconds",
		"When this node's federation member certificate expires (Unix time).")
	dReady = promsnap.Desc("node", "ready", "1 when the node should get traffic (/readyz answers 200), else 0.")
)

// readyMetric is /readyz as a gauge, for alerts.
type readyMetric struct{ n *Node }

func (r readyMetric) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(promsnap.Collector{Descs: []*prometheus.Desc{dReady}, Read: func(emit promsnap.Emit) {
		v := 0.0
		if (view{r.n}).Ready() == "" {
			v = 1
		}
		emit(dReady, prometheus.GaugeValue, v)
	}})
}

// certMetrics are the expiry times of the certificates the node holds
// (certInfo, which the dashboard shows too).
type certMetrics []certInfo

func (c certMetrics) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(promsnap.Collector{Descs: []*prometheus.Desc{dDomainCert, dMemberCert}, Read: func(emit promsnap.Emit) {
		for _, ci := range c {
			d := dDomainCert
			if ci.Role == "member" {
				d = dMemberCert
			}
			emit(d, prometheus.GaugeValue, float64(ci.NotAfter.Unix()))
		}
	}})
}

// startMetrics registers the metrics of every part the node runs.
func (n *Node) startMetrics(context.Context) error {
	rs := []metrics.Registrant{certMetrics(n.certs), readyMetric{n}, n.overlay, n.lsp}
	if n.reg != nil {
		rs = append(rs, n.reg)
	}
	if n.proxy != nil {
		rs = append(rs, n.proxy)
	}
	if n.relay != nil {
		rs = append(rs, n.relay)
	}
	if n.media != nil {
		rs = append(rs, n.media)
	}
	return n.metrics.Register(rs...)
}
