package overlay

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lsnode/lsnode/overlay/membership"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
)

// Stats is a snapshot of the overlay as one node sees it: what the
// operator's dashboard and metrics show, without reaching into libp2p.
type Stats struct {
	ID    PeerID   `json:"id"`
	Addrs []string `json:"addrs"`
	// Relayed are circuit-relay addresses (a NAT'd node's).
	Relayed []string `json:"relayed,omitempty"`
	// Reachability is "public", "private" or "unknown" (AutoNAT's verdict).
	Reachability string `json:"reachability"`
	Size         int    `json:"size_estimate"`
	Connections  int    `json:"connections"`
	// Members are the live members, nearest to this node in XOR terms
	// first (Stats(n) keeps the first n; MembersTotal counts them all).
	Members      []MemberStat `json:"members"`
	MembersTotal int          `json:"members_total"`
	// RoutingTable is the kad-dht routing table's size; Buckets its
	// peers by common prefix length with this node.
	RoutingTable int   `json:"routing_table"`
	Buckets      []int `json:"buckets"`
}

// MemberStat is one member in a Stats snapshot.
type MemberStat struct {
	ID           PeerID   `json:"id"`
	Self         bool     `json:"self,omitempty"`
	CommonPrefix int      `json:"common_prefix"`
	Connected    bool     `json:"connected"`
	LatencyMS    float64  `json:"latency_ms,omitempty"`
	Services     []string `json:"services,omitempty"`
}

// Stats returns a snapshot with at most maxMembers members listed (0: none
// listed, only counted).
func (o *Overlay) Stats(maxMembers int) Stats {
	self := o.ID()
	selfKey := kb.ConvertPeerID(self)
	h := o.routed
	reach := o.Reachability()
	st := Stats{ID: self, Addrs: o.Addrs(), Size: o.Size(), Connections: len(h.Network().Conns()),
		Reachability: strings.ToLower(strings.TrimPrefix(reach.String(), "Reachability"))}
	for _, a := range o.RelayedAddrs() {
		st.Relayed = append(st.Relayed, a.String())
	}
	members := o.Members()
	st.MembersTotal = len(members)
	if maxMembers > 0 {
		services := o.Services()
		for _, p := range members {
			m := MemberStat{ID: p, Self: p == self, CommonPrefix: kb.CommonPrefixLen(selfKey, kb.ConvertPeerID(p)),
				Services: services[p]}
			if p != self {
				m.Connected = h.Network().Connectedness(p) == network.Connected
				m.LatencyMS = float64(h.Peerstore().LatencyEWMA(p).Microseconds()) / 1000
			}
			st.Members = append(st.Members, m)
		}
		// The nearest members in XOR terms first: the ones this node's
		// replicas are most often shared with.
		slices.SortFunc(st.Members, func(a, b MemberStat) int {
			if a.CommonPrefix != b.CommonPrefix {
				return b.CommonPrefix - a.CommonPrefix
			}
			return strings.Compare(string(a.ID), string(b.ID))
		})
		if len(st.Members) > maxMembers {
			st.Members = st.Members[:maxMembers]
		}
	}
	if o.dht != nil {
		rt := o.dht.RoutingTable()
		st.RoutingTable = rt.Size()
		for _, p := range rt.ListPeers() {
			cpl := kb.CommonPrefixLen(selfKey, kb.ConvertPeerID(p))
			for len(st.Buckets) <= cpl {
				st.Buckets = append(st.Buckets, 0)
			}
			st.Buckets[cpl]++
		}
	}
	return st
}

// KeyPosition returns key's position in the keyspace (the SHA-256 kad-dht
// places it at).
func KeyPosition(key string) []byte { return kb.ConvertKey(key) }

// CommonPrefix returns how many leading bits p's keyspace position shares
// with pos (a KeyPosition).
func CommonPrefix(pos []byte, p PeerID) int {
	return kb.CommonPrefixLen(kb.ID(pos), kb.ConvertPeerID(p))
}

// MembershipStats returns the membership protocol's counters (messages and
// bytes by type, signatures checked, accusations, bans).
func (o *Overlay) MembershipStats() membership.Stats { return o.members.stats() }

// MemberState describes p in this node's membership view: "live",
// "probation", "suspect", "dead", "left", "suspected-here", "capped" or
// "unknown".
func (o *Overlay) MemberState(p PeerID) string { return o.members.state(p) }

// MembershipSendFailures counts the membership streams this node failed
// to open (a peer it could not reach), with the last failure's peer,
// connectedness and error.
func (o *Overlay) MembershipSendFailures() (uint64, string) { return o.members.sendFailures() }

// StreamUse describes the resource manager's stream and connection counts
// (system, transient, identify service): what refuses a stream when a
// limit is reached.
func (o *Overlay) StreamUse() string {
	rm := o.host.Network().ResourceManager()
	var out []string
	add := func(what string, st network.ScopeStat) {
		out = append(out, fmt.Sprintf("%s %d/%d streams in/out, %d/%d conns", what, st.NumStreamsInbound, st.NumStreamsOutbound, st.NumConnsInbound, st.NumConnsOutbound))
	}
	_ = rm.ViewSystem(func(s network.ResourceScope) error { add("system", s.Stat()); return nil })
	_ = rm.ViewTransient(func(s network.ResourceScope) error { add("transient", s.Stat()); return nil })
	_ = rm.ViewService(identify.ServiceName, func(s network.ServiceScope) error { add("identify", s.Stat()); return nil })
	return strings.Join(out, "; ")
}

// ConnUse describes this node's connections: how many, how many to
// peers in kad-dht's routing table, how many to ring neighbours, how many
// have no stream open, and the open streams by protocol.
func (o *Overlay) ConnUse() string {
	conns := o.host.Network().Conns()
	rt := o.dht.RoutingTable()
	cm := o.host.ConnManager()
	inRT, ring, idle := 0, 0, 0
	streams := map[string]int{}
	peers, strangers := map[peer.ID]bool{}, 0
	for _, c := range conns {
		p := c.RemotePeer()
		if !peers[p] {
			peers[p] = true
			if !o.members.knows(p) {
				strangers++
			}
		}
		if rt.Find(p) != "" {
			inRT++
		}
		if cm.IsProtected(p, "members") {
			ring++
		}
		ss := c.GetStreams()
		if len(ss) == 0 {
			idle++
		}
		for _, s := range ss {
			streams[string(s.Protocol())]++
		}
	}
	var dials, senders []uint64
	for i := range o.members.dials {
		dials = append(dials, o.members.dials[i].Load())
		senders = append(senders, o.members.sendersBy[i].Load())
	}
	return fmt.Sprintf("%d conns to %d peers (%d not in the view): %d to routing-table peers, %d to ring neighbours, %d without streams, %d warmed so far (%d cold); streams %v (routing table %d, membership senders %d); opened since the start %d out, %d in; membership dials by message type %v, senders started by message type %v, %d messages held back from unreachable peers",
		len(conns), len(peers), strangers, inRT, ring, idle, o.members.warmed.Load(), o.members.coldN.Load(), streams, rt.Size(), o.members.senders(),
		o.opened[0].Load(), o.opened[1].Load(), dials, senders, o.members.held.Load())
}

// MembershipSendFailuresTo counts the membership streams to p this node
// failed to open since it last opened one (up to 256 peers are kept), with
// the last failure.
func (o *Overlay) MembershipSendFailuresTo(p PeerID) (uint64, string) {
	return o.members.sendFailuresTo(p)
}

// MemberSuspicion tells who accused p in this node's view (the first
// accuser, then a confirming one), when, and whether it was spread.
func (o *Overlay) MemberSuspicion(p PeerID) (accusers []PeerID, at time.Time, spread bool) {
	return o.members.suspicion(p)
}
