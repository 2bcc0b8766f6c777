package overlay

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPartitionHeals: two parts of one overlay that formed apart become
// one. B's members list A's first member as a bootstrap peer too, but it
// was not up when they joined, so B is an overlay of its own, as the two
// sides of a partition are once each has purged the other. Every
// healRounds (3 s here: run ticks at least 10 ms apart) a member checks on
// a bootstrap peer its view holds dead or not at all (membership.Heal): one
// it does not hold is asked for its view, as a join asks, the two exchange
// views, and every view holds all six. Checked: with Heal sending
// nothing, and with the digest poke that was there before, this fails
// after 60 s with every view at 3.
func TestPartitionHeals(t *testing.T) {
	keyA0, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	idA0, err := peer.IDFromPrivateKey(keyA0)
	if err != nil {
		t.Fatal(err)
	}
	// A's first member's port, below the ephemeral range (32768 up): B's
	// members listen on port 0, and one took a port freed here once (CI:
	// 'peer id mismatch' dialling a0, its bootstrap failed).
	port := 0
	for range 100 {
		p := 20000 + mrand.IntN(12000)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			port = p
			break
		}
	}
	if port == 0 {
		t.Fatal("no free port in 20000-31999")
	}
	a0 := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, idA0)
	const gossip = 20 * time.Millisecond
	b := startWith(t, 3, "ov-heal", func(i int, c *Config) {
		c.GossipInterval = gossip
		if i > 0 {
			c.Bootstrap = append(c.Bootstrap, a0) // down: they join through B's first
		}
	})
	waitMembers(t, b, 3)
	a := startWith(t, 3, "ov-heal", func(i int, c *Config) {
		c.GossipInterval = gossip
		if i == 0 {
			c.Identity, c.ListenAddrs = keyA0, []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}
		}
	})
	waitMembers(t, a, 3)
	if a[0].ID() != idA0 {
		t.Fatalf("A's first member is %s, want %s", a[0].ID(), idA0)
	}
	waitMembersWithin(t, append(append([]*Overlay{}, a...), b...), 6, 60*time.Second)
}
