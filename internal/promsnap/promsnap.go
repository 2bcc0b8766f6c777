// Package promsnap builds the Prometheus collectors lsnode's components
// register on a node's registry: metrics named lsnode_<subsystem>_<name>,
// read from one snapshot of the component per scrape (the snapshot its
// dashboard card shows), so no counter is kept twice.
package promsnap

import "github.com/prometheus/client_golang/prometheus"

// Namespace prefixes every lsnode metric.
const Namespace = "lsnode"

// Desc describes the metric lsnode_<subsystem>_<name>.
func Desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, subsystem, name), help, labels, nil)
}

// Collector collects the metrics Descs describes: Read takes one snapshot
// and emits each value.
type Collector struct {
	Descs []*prometheus.Desc
	Read  func(emit Emit)
}

// Emit sends one value of d (labels in d's order).
type Emit func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string)

// Describe implements prometheus.Collector.
func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.Descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	c.Read(func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	})
}
