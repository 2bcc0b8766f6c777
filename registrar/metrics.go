package registrar

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics registers the registrar's final responses by method and
// code (lsnode_registrar_requests_total) on reg, read from the Responses
// snapshot the dashboard shows.
func (r *Registrar) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(r.responses.Collector("lsnode_registrar_requests_total",
		"Requests answered by the registrar, by method and final status."))
}
