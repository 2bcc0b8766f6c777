package overlay

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestConnBudget: a member connected to every other member (as after a
// joining node's kad-dht bootstrap in a small overlay) is trimmed back to
// its budget, TargetConns plus the ring neighbours it protects, once
// ConnGrace has passed. kad-dht protects the peers of its two farthest
// buckets, about three quarters of the overlay; budgetCM makes that a tag.
// Trimmed, the overlay is stable: over the next 10 s no member opens more
// than a few connections (the membership does not redial what the
// connection manager trims, round after round) and every view still holds
// every member.
func TestConnBudget(t *testing.T) {
	const n, target = 24, 8
	os := startWith(t, n, "ov-budget", func(_ int, c *Config) {
		c.TargetConns, c.WarmConns, c.ConnGrace = target, -1, time.Second
	})
	waitMembers(t, os, n)
	// The mesh is the test's setup, not what it checks: a dial the
	// membership made a moment before (to a peer whose connection the other
	// end had just trimmed) can leave the pair in the swarm's dial backoff,
	// so the test's dials skip it and try again.
	ctx := network.WithForceDirectDial(context.Background(), "TestConnBudget mesh")
	for _, a := range os {
		for _, b := range os {
			if a == b {
				continue
			}
			var err error
			for try := 0; try < 5; try++ {
				if err = a.host.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.host.Addrs()}); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	far := func(o *Overlay) (k int) { // the peers kad-dht would protect
		for _, p := range o.dht.RoutingTable().ListPeers() {
			if kb.CommonPrefixLen(kb.ConvertPeerID(o.ID()), kb.ConvertPeerID(p)) < 2 {
				k++
			}
		}
		return k
	}
	if k := far(os[0]); k <= target {
		t.Fatalf("node 0's routing table has %d peers in its two farthest buckets, not more than the budget %d: this test shows nothing", k, target)
	}
	over := func(o *Overlay) (k int) { // connected peers past the budget, ring neighbours aside
		seen := map[peer.ID]bool{}
		for _, c := range o.host.Network().Conns() {
			p := c.RemotePeer()
			if !seen[p] && !o.host.ConnManager().IsProtected(p, "members") {
				k++
			}
			seen[p] = true
		}
		return max(0, k-target)
	}
	deadline := time.Now().Add(40 * time.Second)
	for i := 0; i < n; {
		if over(os[i]) == 0 {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d holds %d connections past its budget of %d (+ ring neighbours) after 40 s; %d routing-table peers in its farthest buckets",
				i, over(os[i]), target, far(os[i]))
		}
		time.Sleep(200 * time.Millisecond)
	}
	opened := make([]atomic.Int64, n)
	for i, o := range os {
		o.host.Network().Notify(&network.NotifyBundle{ConnectedF: func(network.Network, network.Conn) { opened[i].Add(1) }})
	}
	time.Sleep(10 * time.Second)
	for i, o := range os {
		// A neighbour's connection trimmed by the other end's manager is
		// reopened once; a churn of trim and redial opens one or more a
		// second.
		if k := opened[i].Load(); k > 3 {
			t.Errorf("node %d opened %d connections in 10 s once trimmed to its budget", i, k)
		}
		if k := len(o.Members()); k != n {
			t.Errorf("node %d sees %d of %d members once trimmed to its budget", i, k, n)
		}
	}
}
