package node

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/lsnode/lsnode/metrics"
)

// newMetrics builds the node's metrics over its components; the location
// service is wired to it at start (Observe), the rest is read on scrape.
func (n *Node) newMetrics() *metrics.Metrics {
	src := metrics.Sources{
		Members: func() int { return len(n.overlay.Members()) },
		RoutingTable: func() int {
			if d := n.overlay.DHT(); d != nil {
				return d.RoutingTable().Size()
			}
			return 0
		},
		Connections: func() int { return len(n.overlay.Host().Network().Conns()) },
		Public: func() int {
			if n.overlay.Reachability() == network.ReachabilityPublic {
				return 1
			}
			return 0
		},
		Relayed: func() int { return len(n.overlay.RelayedAddrs()) },
		Store:   func() (int, int, int64) { return n.lsp.StoreStats() },
		Domains: func() (top []metrics.DomainStored, rest metrics.DomainStored) {
			t, r := n.lsp.DomainUsage(metrics.MaxDomainLabels)
			for _, u := range t {
				top = append(top, metrics.DomainStored{Domain: u.Domain, Entries: u.Entries, Bytes: u.Bytes})
			}
			return top, metrics.DomainStored{Entries: r.Entries, Bytes: r.Bytes}
		},
	}
	for _, c := range n.certs {
		switch c.Role {
		case "domain":
			src.DomainCertExpiry = c.NotAfter
		case "member":
			src.MemberCertExpiry = c.NotAfter
		}
	}
	if n.reg != nil {
		src.RegistrarResponses = func() map[metrics.MethodCode]int64 { return countsOf(n.reg.Responses().Each) }
	}
	if n.proxy != nil {
		src.ProxyResponses = func() map[metrics.MethodCode]int64 { return countsOf(n.proxy.Responses().Each) }
		src.Proxy = func() metrics.ProxyStats {
			s := n.proxy.Stats()
			return metrics.ProxyStats{Requests: s.Requests, Forwarded: s.Forwarded, Direct: s.Direct, CacheHits: s.CacheHits,
				Lookups: s.Lookups, Anchored: s.Anchored, Relayed: s.Relayed, NATPings: s.NATPings, Flowed: s.Flowed, Flows: n.proxy.Flows()}
		}
	}
	if n.relay != nil {
		src.Allocations, src.Denied = n.relay.Allocations, n.relay.Denied
	}
	if n.media != nil {
		src.MediaSessions = func() int64 { return int64(n.media.Sessions()) }
		src.MediaForwarded, src.MediaDropped = n.media.Forwarded, n.media.Dropped
	}
	return metrics.New(src)
}

func countsOf(each func(func(string, int, int64))) map[metrics.MethodCode]int64 {
	out := map[metrics.MethodCode]int64{}
	each(func(m string, c int, v int64) { out[metrics.MethodCode{Method: m, Code: c}] = v })
	return out
}

// startAdmin serves /metrics (Prometheus), /healthz (the process answers),
// /readyz (joined: the view holds another member, or the node is alone by
// configuration; SIP listening when configured), the dashboard
// (/dashboard/) and, with admin_pprof, /debug/pprof/.
func (n *Node) startAdmin(cfg *Config, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.Admin)
	if err != nil {
		return fmt.Errorf("node: listen admin %s: %w", cfg.Admin, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := n.notReady(); reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	n.mountDashboard(mux)
	if cfg.AdminPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	n.adminLn = ln
	n.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = n.admin.Serve(ln) }()
	return nil
}

// notReady says why the node should not get traffic yet, "" when it should.
func (n *Node) notReady() string {
	others := 0
	for _, p := range n.overlay.Members() {
		if p != n.overlay.ID() {
			others++
		}
	}
	if others == 0 && len(n.cfg.Overlay.Bootstrap) > 0 {
		return "no other overlay member reached yet"
	}
	if n.cfg.SIP != "" && n.registrar == nil {
		return "SIP not listening"
	}
	return ""
}

// AdminAddr returns the bound admin address, or "" without one.
func (n *Node) AdminAddr() string {
	if n.adminLn == nil {
		return ""
	}
	return n.adminLn.Addr().String()
}
