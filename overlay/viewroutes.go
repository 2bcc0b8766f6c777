package overlay

import (
	"context"
	"errors"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
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
// FIND_NODE answers need, replaced when a member's entry is a new
// incarnation. The table then serves partial views and clients as the
// walk would, and kad-dht's own refresh is off. A member kad-dht drops
// (its query failed, or it stopped serving the DHT) is offered again only
// after 10 minutes or as a new incarnation. A pass runs on each change
// of the view and every 10 minutes; it marks every table peer
// irreplaceable, and kad-dht's own finds are let in only if the view holds
// them live (a routing-table filter, overlay.go), so no peer the view does
// not vouch for is handed to those who ask. A partial view or a
// client still walks: its view does not hold the members it needs.

// routesFeedTTL is how long the addresses given to the peerstore for a
// routing-table peer last (a value of its own: they are told apart from
// others by it when a member announces new ones). A pass gives them again
// at half of it, and one runs every routesFeedEvery even when the view
// has not changed.
const (
	routesFeedTTL   = 61 * time.Minute
	routesFeedEvery = 10 * time.Minute
)

// feedsRoutes says whether this node's view, not kad-dht's walk, fills its
// routing table: a full view that serves.
func (o *Overlay) feedsRoutes() bool {
	return o.cfg.View != ViewPartial && o.cfg.Reachability == ReachPublic
}

// feedRoutes runs until ctx ends, bringing the routing table to the view
// on each change of it (at most once per gossip period) and every
// routesFeedEvery.
func (m *members) feedRoutes(ctx context.Context) {
	ch, done := m.subscribe()
	defer done()
	f := &routesFeed{fed: map[peer.ID]fedAddrs{}, tried: map[peer.ID]bool{}, dropped: map[peer.ID]fedAddrs{}}
	t := time.NewTicker(max(m.o.cfg.GossipInterval, 100*time.Millisecond))
	defer t.Stop()
	changed, last := true, time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			changed = true
			continue
		case now := <-t.C:
			if changed || now.Sub(last) >= routesFeedEvery {
				changed, last = false, now
				m.feedRoutesOnce(now, f)
			}
		}
	}
}

// routesFeed is what feedRoutes keeps between passes. A pass costs
// O(members): the table's own lookups (Find sorts the whole table) are
// not used, and a member the table refused for a full bucket is offered
// again only once the table has lost a peer.
type routesFeed struct {
	fed   map[peer.ID]fedAddrs // table peers whose addresses were given
	tried map[peer.ID]bool     // members refused for a full bucket
	// dropped: live members kad-dht took out of the table (a failed
	// query, or identify says it no longer serves the DHT), with when and
	// the incarnation then. The view vouches that such a member is up,
	// not that it answers FIND_NODE: it is offered again only after
	// routesFeedEvery or as a new incarnation, so a member that answers
	// probes but refuses DHT streams is not handed to askers on every
	// change of the view.
	dropped map[peer.ID]fedAddrs
}

// fedAddrs: when a peer's addresses were given, from which incarnation of
// its entry.
type fedAddrs struct {
	at  time.Time
	inc uint64
}

type liveMember struct {
	id    peer.ID
	inc   uint64
	addrs [][]byte
}

// feedRoutesOnce adds the view's live members to the routing table, takes
// out the peers it does not hold live, and marks every peer irreplaceable
// (the view, not kad-dht's own finds, decides who is in).
func (m *members) feedRoutesOnce(now time.Time, f *routesFeed) {
	var live []liveMember
	m.mu.Lock()
	m.m.Each(now, func(e *membership.Entry) bool {
		if p := peer.ID(e.ID); p != m.self {
			live = append(live, liveMember{p, e.Inc, e.Addrs})
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
	for _, p := range rt.ListPeers() {
		if isLive[p] {
			in[p] = true
		} else {
			rt.RemovePeer(p)
		}
	}
	room := false // a peer left the table since the last pass
	for p, a := range f.fed {
		if !in[p] {
			room = true
			if isLive[p] {
				f.dropped[p] = fedAddrs{at: now, inc: a.inc}
			}
			delete(f.fed, p)
		}
	}
	for _, l := range live {
		if d, ok := f.dropped[l.id]; ok {
			if d.inc == l.inc && now.Sub(d.at) < routesFeedEvery {
				continue
			}
			delete(f.dropped, l.id)
		}
		if !in[l.id] && (!f.tried[l.id] || room) {
			ok, err := rt.TryAddPeer(l.id, false, false)
			in[l.id] = ok
			if errors.Is(err, kb.ErrPeerRejectedNoCapacity) {
				f.tried[l.id] = true
			} else {
				delete(f.tried, l.id)
			}
		}
		if in[l.id] {
			m.feedAddrs(now, f, l)
		}
	}
	for p := range f.tried {
		if !isLive[p] {
			delete(f.tried, p)
		}
	}
	for p := range f.dropped {
		if !isLive[p] {
			delete(f.dropped, p)
		}
	}
	rt.MarkAllPeersIrreplaceable()
}

// feedAddrs gives the peerstore a table peer's announced addresses, again
// at half their TTL, and replaces them when its entry is a new incarnation.
func (m *members) feedAddrs(now time.Time, f *routesFeed, l liveMember) {
	ps := m.o.host.Peerstore()
	was, ok := f.fed[l.id]
	if ok && was.inc == l.inc && now.Sub(was.at) <= routesFeedTTL/2 {
		return
	}
	if ok && was.inc != l.inc {
		ps.UpdateAddrs(l.id, routesFeedTTL, 0) // the old incarnation's
	}
	ps.AddAddrs(l.id, decodeAddrs(l.addrs), routesFeedTTL)
	f.fed[l.id] = fedAddrs{at: now, inc: l.inc}
}
