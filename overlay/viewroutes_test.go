package overlay

import (
	"context"
	"fmt"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// TestJoinFeedsRoutes: a full view joining an overlay of 30 dials a few
// members (its bootstrap peer, its ring neighbours), not the most of them
// that kad-dht's bootstrap walk dials, and its routing table still holds
// every member, with the addresses FIND_NODE answers need; a member that
// goes is taken out of it.
func TestJoinFeedsRoutes(t *testing.T) {
	const n = 30
	noWarm := func(_ int, c *Config) { c.WarmConns = -1 }
	os := startWith(t, n, "ov-feed", noWarm)
	waitMembers(t, os, n)
	j := startWith(t, 1, "ov-feed", func(i int, c *Config) { noWarm(i, c); c.Bootstrap = os[0].Addrs() })[0]
	os = append(os, j)
	waitMembers(t, os, n+1)
	rt := j.dht.RoutingTable()
	// A member is in the table, or its bucket is full of peers the view
	// put there (kad-dht keeps its bucket size, 20, of a common prefix
	// length: with 30 random IDs, now and then more than 20 share none
	// with the joiner's).
	placed := func(p peer.ID) bool { return rt.Find(p) != "" || !rt.UsefulNewPeer(p) }
	missing := func() []peer.ID {
		var out []peer.ID
		for _, o := range os[:n] {
			if !placed(o.ID()) {
				out = append(out, o.ID())
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for _, o := range os[:n] {
		if !placed(o.ID()) {
			t.Fatalf("the joiner's routing table (%d peers) lacks member %s, and its bucket has room", rt.Size(), o.ID().ShortString())
		}
		if rt.Find(o.ID()) == "" {
			continue // refused for a full bucket: no addresses given
		}
		if len(j.host.Peerstore().Addrs(o.ID())) == 0 {
			t.Fatalf("the joiner's peerstore has no address of routing-table peer %s", o.ID().ShortString())
		}
	}
	time.Sleep(3 * time.Second)
	outbound := 0
	for _, c := range j.host.Network().Conns() {
		if c.Stat().Direction == network.DirOutbound {
			outbound++
		}
	}
	// Bootstrap peer, ring successors and predecessors on four rings,
	// indirect-probe helpers: about 10. kad-dht's walk dialled 25–28 here.
	if outbound > 12 {
		t.Errorf("the joiner dialled %d of %d members within seconds of joining", outbound, n)
	}
	gone := os[n-1]
	gone.Close()
	deadline = time.Now().Add(30 * time.Second)
	for rt.Find(gone.ID()) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("member %s is still in the joiner's routing table 30 s after it went (view: %s)", gone.ID().ShortString(), j.members.state(gone.ID()))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFedTableDiversity: members on 12 loopback /24s (one /16, the group
// kad-dht's diversity filter counts) with max_per_subnet 2, which the view
// allows (two per /24). A full view's routing table holds all 12: kad-dht's
// filter, which sees a peer's addresses only once connected and would keep
// at most 4×2 of one /16, is not in a fed table's way.
func TestFedTableDiversity(t *testing.T) {
	const n = 12
	os := startWith(t, n, "ov-feed-div", func(i int, c *Config) {
		c.WarmConns = -1
		c.MaxPerSubnet = 2
		c.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.%d.1/tcp/0", 20+i)}
	})
	waitMembers(t, os, n)
	j := os[n-1]
	rt := j.dht.RoutingTable()
	deadline := time.Now().Add(15 * time.Second)
	for rt.Size() < n-1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if rt.Size() < n-1 {
		t.Fatalf("the routing table holds %d of the %d other members", rt.Size(), n-1)
	}
}

// TestFedTableOutsider: a kad-dht server of the overlay's protocol that is
// not a member (it never joined the view) connects to a member and answers
// its queries. A fed table takes only the view's live members, so the
// outsider is neither in the member's table nor handed out in its FIND_NODE
// answers; it stays out when the member's feed runs again.
func TestFedTableOutsider(t *testing.T) {
	const name = "ov-feed-out"
	os := startWith(t, 6, name, func(_ int, c *Config) { c.WarmConns = -1 })
	waitMembers(t, os, 6)
	m := os[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	outsider := func() (host.Host, *dht.IpfsDHT) {
		h := quietHost(t, muxer(), true)
		d, err := dht.New(h, dht.Mode(dht.ModeServer), dht.ProtocolPrefix(protocol.ID(ProtocolPrefix(name))),
			dht.DisableValues(), dht.DisableProviders(), dht.DisableAutoRefresh())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		if err := h.Connect(ctx, peer.AddrInfo{ID: m.ID(), Addrs: m.host.Addrs()}); err != nil {
			t.Fatal(err)
		}
		for d.RoutingTable().Size() == 0 { // kad-dht takes the member once identified
			if ctx.Err() != nil {
				t.Fatal("the outsider's routing table never took the member")
			}
			time.Sleep(50 * time.Millisecond)
		}
		return h, d
	}
	oh, od := outsider()
	// The outsider walks through the member: the member sees it answer
	// as a DHT server, which is what makes kad-dht take a peer.
	if _, err := od.GetClosestPeers(ctx, string(m.ID())); err != nil {
		t.Fatalf("the outsider's walk: %v", err)
	}
	time.Sleep(2 * time.Second) // kad-dht's check of a new peer, a feed pass
	if m.dht.RoutingTable().Find(oh.ID()) != "" {
		t.Fatal("the member's routing table took the outsider")
	}
	// Another asker's FIND_NODE walk gets members only (the table's
	// bucket size exceeds the members: a table peer would be handed out
	// for any key; kad-dht also hands out a connected peer asked for by
	// its own ID, which is not a table's answer).
	ah, ad := outsider()
	ps, err := ad.GetClosestPeers(ctx, "any key")
	if err != nil {
		t.Fatalf("the asker's walk: %v", err)
	}
	members := map[peer.ID]bool{}
	for _, o := range os {
		members[o.ID()] = true
	}
	for _, p := range ps {
		if !members[p] && p != ah.ID() {
			t.Fatalf("a FIND_NODE walk through member %s was handed %s, not a member", m.ID().ShortString(), p.ShortString())
		}
	}
	if m.dht.RoutingTable().Find(oh.ID()) != "" || m.dht.RoutingTable().Find(ah.ID()) != "" {
		t.Fatal("the member's routing table took an outsider")
	}
}

// TestFedTableDropped: a member that stops serving the DHT (it still
// answers the membership's probes, so the view holds it live) is dropped
// by kad-dht, and the next passes of the feed, on changes of the view, do
// not put it back: the view vouches that it is up, not that it answers
// FIND_NODE.
func TestFedTableDropped(t *testing.T) {
	const name = "ov-feed-drop"
	os := startWith(t, 6, name, func(_ int, c *Config) { c.WarmConns = -1 })
	waitMembers(t, os, 6)
	m, k := os[0], os[5]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.host.Connect(ctx, peer.AddrInfo{ID: k.ID(), Addrs: k.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	rt := m.dht.RoutingTable()
	for rt.Find(k.ID()) == "" {
		if ctx.Err() != nil {
			t.Fatal("the member's routing table never held k")
		}
		time.Sleep(50 * time.Millisecond)
	}
	k.host.RemoveStreamHandler(protocol.ID(ProtocolPrefix(name) + "/kad/1.0.0")) // identify tells m
	for rt.Find(k.ID()) != "" {
		if ctx.Err() != nil {
			t.Fatal("kad-dht kept a member that stopped serving the DHT")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Changes of the view: two members join, each a feed pass.
	os = append(os, startWith(t, 2, name, func(_ int, c *Config) { c.WarmConns = -1; c.Bootstrap = m.Addrs() })...)
	waitMembers(t, os, 8)
	time.Sleep(time.Second)
	if rt.Find(k.ID()) != "" {
		t.Fatal("the feed put back a member kad-dht dropped")
	}
	if st := m.members.state(k.ID()); st != "live" { // else the test shows nothing
		t.Fatalf("k is %s in m's view", st)
	}
}
