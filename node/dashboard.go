package node

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/proxy"
)

// The dashboard is static HTML, CSS and JavaScript embedded in the binary
// (nothing to build) reading two JSON endpoints on the admin listener.
//
//go:embed dashboard
var dashboardFiles embed.FS

const (
	// dashMembers and dashDomains bound the lists the state shows.
	dashMembers = 256
	dashDomains = 50
	// dashLookups bounds the lookups the dashboard runs at once; the rest
	// get 503. dashLookupTimeout bounds one.
	dashLookups       = 4
	dashLookupTimeout = 15 * time.Second
)

// dashState is what the dashboard shows of the node.
type dashState struct {
	Node         string            `json:"node"`
	ID           peer.ID           `json:"id"`
	Overlay      string            `json:"overlay"`
	Domain       string            `json:"domain,omitempty"`
	Uptime       float64           `json:"uptime_s"`
	Addrs        []string          `json:"addrs"`
	Reachability string            `json:"reachability"`
	Relayed      []string          `json:"relayed,omitempty"`
	Client       bool              `json:"client,omitempty"`
	Certificates []certInfo        `json:"certificates,omitempty"`
	SizeEstimate int               `json:"size_estimate"`
	MembersTotal int               `json:"members_total"`
	Members      []dashMember      `json:"members"`
	Connections  int               `json:"connections"`
	RoutingTable int               `json:"routing_table"`
	Buckets      []int             `json:"buckets"`
	Store        dashStore         `json:"store"`
	Domains      []lsp.DomainCount `json:"domains"`
	Registrar    []dashCount       `json:"registrar,omitempty"`
	Proxy        *proxy.Stats      `json:"proxy,omitempty"`
	ProxyCodes   []dashCount       `json:"proxy_responses,omitempty"`
	Relay        *dashRelay        `json:"relay,omitempty"`
}

type dashMember struct {
	ID           peer.ID  `json:"id"`
	Self         bool     `json:"self,omitempty"`
	Connected    bool     `json:"connected"`
	LatencyMS    float64  `json:"latency_ms,omitempty"`
	CommonPrefix int      `json:"common_prefix"`
	Services     []string `json:"services,omitempty"`
}

type dashStore struct {
	Records int   `json:"records"`
	Entries int   `json:"entries"`
	Bytes   int64 `json:"bytes"`
}

type dashCount struct {
	Method string `json:"method"`
	Code   int    `json:"code"`
	Count  int64  `json:"count"`
}

type dashRelay struct {
	TURN          bool  `json:"turn"`
	Allocations   int64 `json:"allocations"`
	Denied        int64 `json:"denied"`
	MediaSessions int   `json:"media_sessions"`
	Forwarded     int64 `json:"media_forwarded"`
	Dropped       int64 `json:"media_dropped"`
}

// mountDashboard serves the dashboard under /dashboard/ on mux.
func (n *Node) mountDashboard(mux *http.ServeMux) {
	files, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	static := http.StripPrefix("/dashboard/", http.FileServerFS(files))
	mux.Handle("GET /dashboard/", secured(static))
	mux.Handle("GET /{$}", http.RedirectHandler("/dashboard/", http.StatusFound))
	mux.Handle("GET /dashboard/api/state", secured(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		apiJSON(w, http.StatusOK, n.dashState())
	})))
	sem := make(chan struct{}, dashLookups)
	mux.Handle("GET /dashboard/api/lookup", secured(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aor := strings.TrimSpace(r.URL.Query().Get("aor"))
		if aor == "" {
			apiError(w, http.StatusBadRequest, "aor is required")
			return
		}
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		default:
			apiError(w, http.StatusServiceUnavailable, "too many lookups running; try again")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), dashLookupTimeout)
		defer cancel()
		tr, err := n.lsp.Trace(ctx, aor, r.URL.Query().Get("iterative") == "1")
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, lsp.ErrBadAOR) {
				code = http.StatusBadRequest
			}
			apiError(w, code, err.Error())
			return
		}
		apiJSON(w, http.StatusOK, tr)
	})))
}

// secured adds the headers that keep the dashboard's page its own: no
// script but its own files, no framing, no content sniffing.
func secured(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// dashState reads the node's state for the dashboard.
func (n *Node) dashState() dashState {
	ov := n.overlay
	self := ov.ID()
	selfKey := kb.ConvertPeerID(self)
	h := ov.Host()
	st := dashState{
		Node: n.cfg.Name, ID: self, Overlay: n.cfg.Overlay.Name, Domain: n.cfg.Domain,
		Uptime: time.Since(n.started).Seconds(), Addrs: ov.Addrs(), Client: n.cfg.Overlay.Client,
		Reachability: strings.ToLower(strings.TrimPrefix(ov.Reachability().String(), "Reachability")),
		SizeEstimate: ov.Size(), Connections: len(h.Network().Conns()), Certificates: n.certs,
	}
	for _, a := range ov.RelayedAddrs() {
		st.Relayed = append(st.Relayed, a.String())
	}
	services := ov.Services()
	members := ov.Members()
	st.MembersTotal = len(members)
	for _, p := range members {
		m := dashMember{ID: p, Self: p == self, CommonPrefix: kb.CommonPrefixLen(selfKey, kb.ConvertPeerID(p)),
			Services: services[p]}
		if p != self {
			m.Connected = h.Network().Connectedness(p) == network.Connected
			m.LatencyMS = float64(h.Peerstore().LatencyEWMA(p).Microseconds()) / 1000
		}
		st.Members = append(st.Members, m)
	}
	// The nearest members in XOR terms first: the ones this node's
	// replicas are most often shared with.
	slices.SortFunc(st.Members, func(a, b dashMember) int {
		if a.CommonPrefix != b.CommonPrefix {
			return b.CommonPrefix - a.CommonPrefix
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	if len(st.Members) > dashMembers {
		st.Members = st.Members[:dashMembers]
	}
	if d := ov.DHT(); d != nil {
		rt := d.RoutingTable()
		st.RoutingTable = rt.Size()
		for _, p := range rt.ListPeers() {
			cpl := kb.CommonPrefixLen(selfKey, kb.ConvertPeerID(p))
			for len(st.Buckets) <= cpl {
				st.Buckets = append(st.Buckets, 0)
			}
			st.Buckets[cpl]++
		}
	}
	st.Store.Records, st.Store.Entries, st.Store.Bytes = n.lsp.StoreStats()
	st.Domains = n.lsp.Domains(dashDomains)
	if n.reg != nil {
		st.Registrar = dashCounts(n.reg.Responses().Each)
	}
	if n.proxy != nil {
		s := n.proxy.Stats()
		st.Proxy = &s
		st.ProxyCodes = dashCounts(n.proxy.Responses().Each)
	}
	if n.relay != nil || n.media != nil {
		r := &dashRelay{}
		if n.relay != nil {
			r.TURN, r.Allocations, r.Denied = true, n.relay.Allocations(), n.relay.Denied()
		}
		if n.media != nil {
			r.MediaSessions, r.Forwarded, r.Dropped = n.media.Sessions(), n.media.Forwarded(), n.media.Dropped()
		}
		st.Relay = r
	}
	return st
}

func dashCounts(each func(func(string, int, int64))) []dashCount {
	var out []dashCount
	each(func(m string, c int, v int64) { out = append(out, dashCount{Method: m, Code: c, Count: v}) })
	slices.SortFunc(out, func(a, b dashCount) int {
		if a.Method != b.Method {
			return strings.Compare(a.Method, b.Method)
		}
		return a.Code - b.Code
	})
	return out
}
