package overlay

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multistream"
)

// coldFrom counts the members of os that o has no connection to.
func coldFrom(o *Overlay, os []*Overlay) int {
	n := 0
	for _, b := range os {
		if b != o && o.host.Network().Connectedness(b.ID()) != network.Connected {
			n++
		}
	}
	return n
}

// TestWarmConnections: every connection of two nodes is closed; the one
// whose view fits its WarmConns is connected to every member again within
// seconds, with the connections protected from the connection manager (so
// no one-hop read or write of its waits on a dial), while the one whose
// view is larger than its WarmConns (as all the others here) is left with
// what the membership's probes reopen. When the overlay grows past its
// WarmConns, the warming node lifts its protections.
func TestWarmConnections(t *testing.T) {
	const n = 16
	os := startWith(t, n, "ov-warm", func(i int, c *Config) {
		c.WarmConns = n / 2 // fewer than the view: never warms
		if i == 1 {
			c.WarmConns = n - 1 // exactly the view
		}
	})
	waitMembers(t, os, n)
	warm, cold := os[1], os[2]
	for _, o := range []*Overlay{warm, cold} {
		for _, c := range o.host.Network().Conns() {
			c.Close()
		}
	}
	deadline := time.Now().Add(warmSettle*100*time.Millisecond + 30*time.Second)
	for coldFrom(warm, os) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the warming node has no connection to %d of %d members after %v", coldFrom(warm, os), n-1, time.Since(deadline)+warmSettle*100*time.Millisecond+30*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if w := warm.members.warmed.Load(); w == 0 {
		t.Fatal("every connection came back, none by warming: this test shows nothing")
	}
	if coldFrom(cold, os) == 0 {
		t.Fatal("the node that does not warm is connected to every member too: this test shows nothing")
	}
	protected := func(o *Overlay) (k int) {
		for _, b := range os {
			if o.host.ConnManager().IsProtected(b.ID(), warmTag) {
				k++
			}
		}
		return k
	}
	if k := protected(warm); k != n-1 {
		t.Errorf("the warming node protects %d of %d members", k, n-1)
	}
	for i, o := range os {
		if w, k := o.members.warmed.Load(), protected(o); i != 1 && (w != 0 || k != 0) {
			t.Errorf("node %d (WarmConns %d, view %d) warmed %d connections and protects %d", i, n/2, n, w, k)
		}
	}
	t.Logf("warming node: %d connections warmed; the other: %d of %d members not connected", warm.members.warmed.Load(), coldFrom(cold, os), n-1)

	os = append(os, startWith(t, 1, "ov-warm", func(_ int, c *Config) { c.Bootstrap = os[0].Addrs() })...)
	waitMembers(t, os, n+1)
	for deadline := time.Now().Add(20 * time.Second); protected(warm) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a view of %d past WarmConns %d: %d members still protected", n+1, n-1, protected(warm))
		}
	}
	if warming, _ := warm.Warm(); warming {
		t.Fatal("Warm says warming with a view past WarmConns")
	}
}

// TestDedupe: a second connection between two members (as when they dial
// each other at once) is closed once it carries no stream younger than
// dedupeAfter, by one end only: the pair stays connected.
func TestDedupe(t *testing.T) {
	os := startN(t, 2, "ov-dedupe")
	waitMembers(t, os, 2)
	a, b := os[0], os[1]
	// Dedupe looks at warm-protected peers only: wait until both ends
	// protect each other (the view settles first, warmSettle periods of
	// 100 ms), or the deadline below would also have to cover that.
	for deadline := time.Now().Add(warmSettle*100*time.Millisecond + 30*time.Second); !a.host.ConnManager().IsProtected(b.ID(), warmTag) ||
		!b.host.ConnManager().IsProtected(a.ID(), warmTag); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the two do not protect each other as warm")
		}
	}
	// Two connections: the two ends dial each other at once (a few tries).
	for try := 0; len(a.host.Network().ConnsToPeer(b.ID())) < 2; try++ {
		if try == 50 {
			t.Fatal("no second connection after 50 simultaneous dials")
		}
		// Both ends closed and seeing it (or one would reuse the
		// connection the other is closing), no dial backoff left by a
		// failed try (or every later one fails at once), then both dial
		// at once.
		_ = a.host.Network().ClosePeer(b.ID())
		_ = b.host.Network().ClosePeer(a.ID())
		for i := 0; i < 100 && (len(a.host.Network().ConnsToPeer(b.ID())) > 0 || len(b.host.Network().ConnsToPeer(a.ID())) > 0); i++ {
			time.Sleep(5 * time.Millisecond)
		}
		a.clearDialBackoff(b.ID())
		b.clearDialBackoff(a.ID())
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, d := range [][2]*Overlay{{a, b}, {b, a}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_ = d[0].host.Connect(context.Background(), peer.AddrInfo{ID: d[1].ID(), Addrs: d[1].host.Addrs()})
			}()
		}
		close(start)
		wg.Wait()
		time.Sleep(50 * time.Millisecond)
	}
	// Each connection carries a pooled stream, as when each end's
	// membership sender (or LSP pool) opened its stream on a different
	// one: the duplicate is closed all the same once that stream is old.
	const held = "/lsnode-test/held/1"
	b.host.SetStreamHandler(held, func(s network.Stream) { _, _ = io.Copy(io.Discard, s) })
	for _, c := range a.host.Network().ConnsToPeer(b.ID()) {
		s, err := c.NewStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetProtocol(held); err != nil {
			t.Fatal(err)
		}
		if err := multistream.SelectProtoOrFail[protocol.ID](held, s); err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
	}
	deadline := time.Now().Add(2*dedupeAfter + 10*time.Second)
	for len(a.host.Network().ConnsToPeer(b.ID())) > 1 {
		if time.Now().After(deadline) {
			for _, o := range []*Overlay{a, b} {
				for _, c := range o.host.Network().ConnsToPeer(o.peerOther(a, b)) {
					var ps []string
					for _, s := range c.GetStreams() {
						ps = append(ps, fmt.Sprintf("%s/%v/%v", s.Protocol(), s.Stat().Direction, time.Since(s.Stat().Opened).Round(time.Millisecond)))
					}
					t.Logf("%s (self<other %v): conn %s %v age %v streams %v", o.ID(), o.ID() < o.peerOther(a, b), c.ID(), c.Stat().Direction, time.Since(c.Stat().Opened).Round(time.Millisecond), ps)
				}
			}
			t.Fatalf("still %d connections between the two", len(a.host.Network().ConnsToPeer(b.ID())))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the other end's next dedupe has run
	if a.host.Network().Connectedness(b.ID()) != network.Connected || len(b.host.Network().ConnsToPeer(a.ID())) != 1 {
		t.Fatalf("after dedupe: a sees %d connections, b %d", len(a.host.Network().ConnsToPeer(b.ID())), len(b.host.Network().ConnsToPeer(a.ID())))
	}
}

// TestWarmBackoff: a member whose warming dials give no lasting connection
// (it drops them, to have its announced addresses dialled by every node) is
// dialled less and less often: warmDefer periods after the first dial, then
// twice that, up to 32 ×.
func TestWarmBackoff(t *testing.T) {
	const period = time.Second
	t0 := time.Unix(1e9, 0)
	for _, c := range []struct {
		n     int
		after time.Duration
		due   bool
	}{
		{1, warmDefer*period - time.Millisecond, false},
		{1, warmDefer * period, true},
		{2, warmDefer * period, false},
		{2, 2 * warmDefer * period, true},
		{4, 4*warmDefer*period - time.Millisecond, false},
		{4, 8 * warmDefer * period, true},
		{50, 32*warmDefer*period - time.Millisecond, false},
		{50, 32 * warmDefer * period, true},
	} {
		if got := (warmTry{at: t0, n: c.n}).due(t0.Add(c.after), period); got != c.due {
			t.Errorf("after %d dials, %v later: due %v, want %v", c.n, c.after, got, c.due)
		}
	}
}

func (o *Overlay) peerOther(a, b *Overlay) peer.ID {
	if o == a {
		return b.ID()
	}
	return a.ID()
}
