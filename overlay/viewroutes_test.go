package overlay

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
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
	deadline := time.Now().Add(10 * time.Second)
	for rt.Size() < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for _, o := range os[:n] {
		if rt.Find(o.ID()) == "" {
			t.Fatalf("the joiner's routing table (%d peers) lacks member %s", rt.Size(), o.ID().ShortString())
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
