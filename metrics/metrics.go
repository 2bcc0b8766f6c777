// Package metrics exposes one node's state as Prometheus metrics (namespace
// lsnode; subsystems registrar, proxy, lsp, overlay, relay) on a registry of
// its own, so many nodes can share a process. Most metrics are read from the
// components' own counters when scraped; lookup and publish latencies are
// histograms fed by the location service.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "lsnode"

// Sources are the components a node runs; nil fields are left out.
type Sources struct {
	// Overlay: live members (this node included when it serves), kad-dht
	// routing-table size, open connections, 1 if publicly reachable,
	// relayed addresses.
	Members, RoutingTable, Connections, Public, Relayed func() int
	// Store: records (AORs), entries and encoded bytes this replica holds.
	Store func() (records, entries int, bytes int64)
	// Domains: entries and bytes this replica holds for the domains
	// holding the most (at most MaxDomainLabels), and for all the others.
	Domains func() (top []DomainStored, rest DomainStored)
	// Registrar and proxy: final responses sent, by method and status.
	RegistrarResponses, ProxyResponses func() map[MethodCode]int64
	// Proxy counters (proxy.Stats) and NAT flows kept alive.
	Proxy func() ProxyStats
	// Certificates: when the domain credential's certificate (it signs
	// every binding this node writes) and the federation member
	// certificate expire; zero times are left out.
	DomainCertExpiry, MemberCertExpiry time.Time
	// Relay: TURN allocations now, refused peers, media sessions now,
	// media packets forwarded and dropped.
	Allocations, Denied, MediaSessions, MediaForwarded, MediaDropped func() int64
}

// MaxDomainLabels bounds the domain label's values: the domains holding
// the most entries get their own series, the rest are summed under
// OtherDomains. Domain names come from the overlay, so unbounded labels
// would let any signer grow every member's scrape.
const MaxDomainLabels = 20

// OtherDomains labels the sum over the domains past MaxDomainLabels (no
// host name has an underscore).
const OtherDomains = "_other"

// DomainStored is what a replica holds for one domain.
type DomainStored struct {
	Domain  string
	Entries int
	Bytes   int64
}

// MethodCode keys a response count.
type MethodCode struct {
	Method string
	Code   int
}

// ProxyStats are the proxy's counters the metrics export.
type ProxyStats struct {
	Requests, Forwarded, Direct, CacheHits, Lookups, Anchored, Relayed, NATPings, Flowed int64
	Flows                                                                                int
}

// Metrics is a node's registry.
type Metrics struct {
	reg     *prometheus.Registry
	latency *prometheus.HistogramVec
}

// New registers the metrics of src.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "lsp", Name: "operation_duration_seconds",
		Help:    "Location service operations (lookup, publish, remove) by outcome.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
	}, []string{"op", "result"})
	m.reg.MustRegister(m.latency, collector{src})
	return m
}

// Observe records one location-service operation (lsp.Config.Observe).
func (m *Metrics) Observe(op string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.latency.WithLabelValues(op, result).Observe(d.Seconds())
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the node's registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

type collector struct{ src Sources }

func desc(sub, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, name), help, labels, nil)
}

var (
	dMembers       = desc("overlay", "members", "Live members in this node's membership view.")
	dRT            = desc("overlay", "routing_table_peers", "Peers in the kad-dht routing table.")
	dConns         = desc("overlay", "connections", "Open libp2p connections.")
	dPublic        = desc("overlay", "reachable_public", "1 when the node is publicly reachable (a member), 0 behind NAT.")
	dRelayed       = desc("overlay", "relayed_addresses", "Circuit relay addresses this node announces.")
	dRecords       = desc("lsp", "stored_records", "AORs this replica holds.")
	dEntries       = desc("lsp", "stored_entries", "Binding entries (tombstones included) this replica holds.")
	dBytes         = desc("lsp", "stored_bytes", "Encoded bytes of the entries this replica holds.")
	dDomEntries    = desc("lsp", "domain_stored_entries", "Binding entries (tombstones included) this replica holds, by the AOR's domain (the 20 largest; the rest summed as _other).", "domain")
	dDomBytes      = desc("lsp", "domain_stored_bytes", "Encoded bytes of the entries this replica holds, by the AOR's domain (the 20 largest; the rest summed as _other).", "domain")
	dDomainCert    = desc("lsp", "domain_certificate_expiry_timestamp_seconds", "When the domain certificate that signs this node's writes expires (Unix time).")
	dMemberCert    = desc("overlay", "member_certificate_expiry_timestamp_seconds", "When this node's federation member certificate expires (Unix time).")
	dRegRes        = desc("registrar", "requests_total", "Requests answered by the registrar, by method and final status.", "method", "code")
	dProxyRes      = desc("proxy", "requests_total", "Requests the proxy answered upstream, by method and final status.", "method", "code")
	dForwarded     = desc("proxy", "forwarded_total", "Requests sent on (one per branch).")
	dDirect        = desc("proxy", "direct_total", "Requests sent straight to a Contact found in the overlay.")
	dReceived      = desc("proxy", "received_total", "Requests received (ACK and CANCEL included).")
	dCacheHits     = desc("proxy", "lookup_cache_hits_total", "Lookups answered from the proxy's cache.")
	dLookups       = desc("proxy", "lookups_total", "Lookups the proxy asked the location service.")
	dAnchored      = desc("proxy", "anchored_calls_total", "Calls whose media was anchored on an RTP relay.")
	dRelayedOffers = desc("proxy", "relayed_offers_total", "Offers not anchored again (media auto): their media already goes to an overlay relay.")
	dNATPings      = desc("proxy", "nat_keepalives_total", "OPTIONS sent down NAT flows.")
	dFlowed        = desc("proxy", "flow_requests_total", "Requests sent down a NAT flow.")
	dFlows         = desc("proxy", "nat_flows", "NAT flows kept alive.")
	dAllocs        = desc("relay", "allocations", "TURN allocations now.")
	dDenied        = desc("relay", "denied_peers_total", "TURN permissions refused by the peer policy.")
	dSessions      = desc("relay", "media_sessions", "RTP relay sessions now.")
	dMediaFwd      = desc("relay", "media_forwarded_packets_total", "RTP/RTCP packets the media relay forwarded.")
	dMediaDrop     = desc("relay", "media_dropped_packets_total", "Packets the media relay dropped (unknown source or full).")
	allDescs       = []*prometheus.Desc{dMembers, dRT, dConns, dPublic, dRelayed, dRecords, dEntries, dBytes, dDomEntries, dDomBytes, dDomainCert, dMemberCert, dRegRes, dProxyRes, dForwarded, dDirect, dReceived, dCacheHits, dLookups, dAnchored, dRelayedOffers, dNATPings, dFlowed, dFlows, dAllocs, dDenied, dSessions, dMediaFwd, dMediaDrop}
	gauge, count   = prometheus.GaugeValue, prometheus.CounterValue
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src
	put := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	for _, g := range []struct {
		d *prometheus.Desc
		f func() int
	}{{dMembers, s.Members}, {dRT, s.RoutingTable}, {dConns, s.Connections}, {dPublic, s.Public}, {dRelayed, s.Relayed}} {
		if g.f != nil {
			put(g.d, gauge, float64(g.f()))
		}
	}
	if s.Store != nil {
		r, e, b := s.Store()
		put(dRecords, gauge, float64(r))
		put(dEntries, gauge, float64(e))
		put(dBytes, gauge, float64(b))
	}
	if s.Domains != nil {
		top, rest := s.Domains()
		if len(top) > MaxDomainLabels { // the source's bound, enforced here too
			for _, d := range top[MaxDomainLabels:] {
				rest.Entries += d.Entries
				rest.Bytes += d.Bytes
			}
			top = top[:MaxDomainLabels]
		}
		for _, d := range top {
			put(dDomEntries, gauge, float64(d.Entries), d.Domain)
			put(dDomBytes, gauge, float64(d.Bytes), d.Domain)
		}
		if rest.Entries > 0 {
			put(dDomEntries, gauge, float64(rest.Entries), OtherDomains)
			put(dDomBytes, gauge, float64(rest.Bytes), OtherDomains)
		}
	}
	for _, c := range []struct {
		d *prometheus.Desc
		t time.Time
	}{{dDomainCert, s.DomainCertExpiry}, {dMemberCert, s.MemberCertExpiry}} {
		if !c.t.IsZero() {
			put(c.d, gauge, float64(c.t.Unix()))
		}
	}
	for _, rc := range []struct {
		d *prometheus.Desc
		f func() map[MethodCode]int64
	}{{dRegRes, s.RegistrarResponses}, {dProxyRes, s.ProxyResponses}} {
		if rc.f == nil {
			continue
		}
		for k, v := range rc.f() {
			put(rc.d, count, float64(v), k.Method, strconv.Itoa(k.Code))
		}
	}
	if s.Proxy != nil {
		p := s.Proxy()
		put(dReceived, count, float64(p.Requests))
		put(dForwarded, count, float64(p.Forwarded))
		put(dDirect, count, float64(p.Direct))
		put(dCacheHits, count, float64(p.CacheHits))
		put(dLookups, count, float64(p.Lookups))
		put(dAnchored, count, float64(p.Anchored))
		put(dRelayedOffers, count, float64(p.Relayed))
		put(dNATPings, count, float64(p.NATPings))
		put(dFlowed, count, float64(p.Flowed))
		put(dFlows, gauge, float64(p.Flows))
	}
	for _, g := range []struct {
		d *prometheus.Desc
		t prometheus.ValueType
		f func() int64
	}{{dAllocs, gauge, s.Allocations}, {dDenied, count, s.Denied}, {dSessions, gauge, s.MediaSessions},
		{dMediaFwd, count, s.MediaForwarded}, {dMediaDrop, count, s.MediaDropped}} {
		if g.f != nil {
			put(g.d, g.t, float64(g.f()))
		}
	}
}
