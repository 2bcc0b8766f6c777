package node

import (
	"context"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/proxy"
	"github.com/lsnode/lsnode/relay"
	"github.com/lsnode/lsnode/sipnet"
)

const (
	// stateMembers and stateDomains bound the lists the dashboard's state
	// shows.
	stateMembers = 256
	stateDomains = 50
)

// view is what the admin listener reads of the node (admin.Node).
type view struct{ n *Node }

// Ready says why the node should not get traffic yet, "" when it should:
// joined (overlay.Joined: what the location service also waits for) and
// SIP listening when configured.
func (v view) Ready() string {
	n := v.n
	if !n.overlay.Joined() {
		return "not joined: no bootstrap peer has answered yet"
	}
	if n.cfg.SIP != "" && n.sip == nil {
		return "SIP not listening"
	}
	return ""
}

// Trace runs a lookup of aor and records how it went.
func (v view) Trace(ctx context.Context, aor string, iterative bool) (*lsp.Trace, error) {
	return v.n.lsp.Trace(ctx, aor, iterative)
}

// State is the dashboard's snapshot of the node.
func (v view) State() any { return v.n.state() }

// state is what the dashboard shows of the node (admin/dashboard/app.js
// reads it): the overlay's Stats, and the other parts' snapshots.
type state struct {
	Node    string `json:"node"`
	Overlay string `json:"overlay"`
	Domain  string `json:"domain,omitempty"`
	overlay.Stats
	Uptime       float64              `json:"uptime_s"`
	Client       bool                 `json:"client,omitempty"`
	Certificates []certInfo           `json:"certificates,omitempty"`
	Store        lsp.StoreStats       `json:"store"`
	Domains      []lsp.DomainCount    `json:"domains"`
	Registrar    []sipnet.StatusCount `json:"registrar,omitempty"`
	Proxy        *proxy.Stats         `json:"proxy,omitempty"`
	ProxyCodes   []sipnet.StatusCount `json:"proxy_responses,omitempty"`
	Relay        *relayState          `json:"relay,omitempty"`
}

type relayState struct {
	TURN bool `json:"turn"`
	relay.TURNStats
	relay.MediaStats
}

// state reads the node's state for the dashboard.
func (n *Node) state() state {
	st := state{Node: n.cfg.Name, Overlay: n.cfg.Overlay.Name, Domain: n.cfg.Domain, Stats: n.overlay.Stats(stateMembers),
		Uptime: time.Since(n.started).Seconds(), Client: n.cfg.Overlay.Client, Certificates: n.certs}
	st.Store = n.lsp.StoreStats()
	st.Domains = n.lsp.Domains(stateDomains)
	if n.reg != nil {
		st.Registrar = n.reg.Responses().Snapshot()
	}
	if n.proxy != nil {
		s := n.proxy.Stats()
		st.Proxy = &s
		st.ProxyCodes = n.proxy.Responses().Snapshot()
	}
	if n.relay != nil || n.media != nil {
		r := &relayState{}
		if n.relay != nil {
			r.TURN, r.TURNStats = true, n.relay.Stats()
		}
		if n.media != nil {
			r.MediaStats = n.media.Stats()
		}
		st.Relay = r
	}
	return st
}
