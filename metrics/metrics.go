// Package metrics holds one node's Prometheus registry (namespace lsnode),
// so many nodes can share a process. It owns no metric of its own: each
// component registers its collectors on the Registerer it is given
// (RegisterMetrics(prometheus.Registerer) error, in the component's
// metrics.go), reading the same snapshot its dashboard card shows.
package metrics

import (
	"errors"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registrant is a component that registers its own collectors.
type Registrant interface {
	RegisterMetrics(reg prometheus.Registerer) error
}

// Metrics is a node's registry.
type Metrics struct {
	reg   *prometheus.Registry
	mu    sync.Mutex
	names map[string]bool // every metric a collector described
}

// New returns a registry holding the standard Go runtime (go_*) and
// process (process_*) collectors; those are of the whole process, which
// in a testnet several nodes share.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg, names: map[string]bool{}}
	m.Registerer().MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register has each of rs register its collectors; it reports every
// failure.
func (m *Metrics) Register(rs ...Registrant) error {
	var errs []error
	for _, r := range rs {
		errs = append(errs, r.RegisterMetrics(m.Registerer()))
	}
	return errors.Join(errs...)
}

// Registerer is where components register their collectors.
func (m *Metrics) Registerer() prometheus.Registerer { return recorder{m} }

// recorder registers on the registry and keeps the names of the metrics
// each collector describes (Names).
type recorder struct{ m *Metrics }

func (r recorder) Register(c prometheus.Collector) error {
	if err := r.m.reg.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.m.names[m[1]] = true
		}
	}
	return nil
}

func (r recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r recorder) Unregister(c prometheus.Collector) bool { return r.m.reg.Unregister(c) }

// fqName reads a Desc's name from its String (Desc has no accessor).
var fqName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

// Names are the metrics the registered collectors describe, sorted: those
// /metrics may show, labelled ones before any value is recorded too.
func (m *Metrics) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.names))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the node's registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }
