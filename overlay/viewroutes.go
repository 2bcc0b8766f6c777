package overlay

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/lsnode/lsnode/overlay/membership"
)

// A full view feeds kad-dht's routing table. kad-dht fills its own by
// walking the overlay: at start (Bootstrap) a lookup of this node's ID and
// one of a random key per bucket, then the same every 10 minutes, with a
// ping of every table peer it has not queried since. Each dials members
// this node has no other use for: measured on 120 members in one process,
// a joining node dialled 72–80 of them within 15 s, one Noise handshake
// each on both sides; on 2 cores, 30 such joins at once are what kept 300
// nodes from converging (the probes of live members went unanswered). A
// full view already knows every member, its addresses and whether it is
// up, so such a node does not walk: it puts the live members in the table
// (kad-dht keeps its bucket size of them; a member that goes is taken out)
// and gives the peerstore the addresses of those it keeps, which kad-dht's
// FIND_NODE answers need. The table then serves partial views and clients
// as the walk would, and kad-dht's own refresh is off. A partial view or a
// client still walks: its view does not hold the members it needs.

// routesFeedTTL is how long the addresses given to the peerstore for a
// routing-table peer last; they are given again at half of it.
const routesFeedTTL = time.Hour

// feedsRoutes says whether this node's view, not kad-dht's walk, fills its
// routing table: a full view that serves.
func (o *Overlay) feedsRoutes() bool {
	return o.cfg.View != ViewPartial && o.cfg.Reachability == ReachPublic
}

// feedRoutes runs until ctx ends, bringing the routing table to the view
// on each change of it, at most once per gossip period.
func (m *members) feedRoutes(ctx context.Context) {
	ch, done := m.subscribe()
	defer done()
	f := &routesFeed{fed: map[peer.ID]time.Time{}, tried: map[peer.ID]bool{}}
	t := time.NewTicker(max(m.o.cfg.GossipInterval, 100*time.Millisecond))
	defer t.Stop()
	changed := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			changed = true
			continue
		case <-t.C:
		}
		if changed {
			changed = false
			m.feedRoutesOnce(time.Now(), f)
		}
	}
}

// routesFeed is what feedRoutes keeps between passes. A pass costs
// O(members): the table's own lookups (Find sorts the whole table) are
// not used, and a member the table refused (its bucket full) is offered
// again only once the table has lost a peer.
type routesFeed struct {
	fed   map[peer.ID]time.Time // table peers, when their addresses were last given
	tried map[peer.ID]bool      // the live members of the last pass
	size  int                   // the table's size after the last pass
}

// feedRoutesOnce adds the view's live members to the routing table and
// takes out the peers it does not hold live.
func (m *members) feedRoutesOnce(now time.Time, f *routesFeed) {
	type member struct {
		id    peer.ID
		addrs [][]byte
	}
	var live []member
	m.mu.Lock()
	m.m.Each(now, func(e *membership.Entry) bool {
		if p := peer.ID(e.ID); p != m.self {
			live = append(live, member{p, e.Addrs})
		}
		return true
	})
	m.mu.Unlock()
	isLive := make(map[peer.ID]bool, len(live))
	for _, l := range live {
		isLive[l.id] = true
	}
	rt := m.o.dht.RoutingTable()
	in := map[peer.ID]bool{}
	room := rt.Size() < f.size // kad-dht took a peer out since
	for _, p := range rt.ListPeers() {
		if isLive[p] {
			in[p] = true
		} else {
			rt.RemovePeer(p)
			room = true
		}
	}
	ps := m.o.host.Peerstore()
	for _, l := range live {
		if !in[l.id] && (!f.tried[l.id] || room) {
			// Refused when its bucket is full (or by the diversity filter).
			in[l.id], _ = rt.TryAddPeer(l.id, false, false)
		}
		if at, ok := f.fed[l.id]; in[l.id] && (!ok || now.Sub(at) > routesFeedTTL/2) {
			ps.AddAddrs(l.id, decodeAddrs(l.addrs), routesFeedTTL)
			f.fed[l.id] = now
		}
	}
	for p := range f.fed {
		if !in[p] {
			delete(f.fed, p)
		}
	}
	f.tried, f.size = isLive, rt.Size()
}
