// Package metrics holds one node's Prometheus registry (namespace lsnode),
// so many nodes can share a process. It owns no metric of its own: each
// component registers its collectors on the Registerer it is given
// (RegisterMetrics(prometheus.Registerer) error, in the component's
// metrics.go), reading the same snapshot its dashboard card shows.
package metrics

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registrant is a component that registers its own collectors.
type Registrant interface {
	RegisterMetrics(reg prometheus.Registerer) error
}

// Metrics is a node's registry.
type Metrics struct {
	reg *prometheus.Registry
}

// New returns an empty registry.
func New() *Metrics { return &Metrics{reg: prometheus.NewRegistry()} }

// Register has each of rs register its collectors; it reports every
// failure.
func (m *Metrics) Register(rs ...Registrant) error {
	var errs []error
	for _, r := range rs {
		errs = append(errs, r.RegisterMetrics(m.reg))
	}
	return errors.Join(errs...)
}

// Registerer is where components register their collectors.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the node's registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }
