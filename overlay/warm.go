package overlay

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Warm connections. A one-hop read or write asks the key's replicas
// directly, and a replica this node has no connection to costs a dial
// first: TCP, Noise and identify, 2.5–4 ms on loopback on this machine,
// which was the whole p99 of lookups on a 100-node overlay. While the view
// is small enough for a connection to every member (Config.WarmConns),
// this node opens the missing ones in the background, a few a second, so
// reads and writes never wait on a dial. A larger view is not warmed: a
// connection to a part of it would spare only that part of the dials, at
// the memory of every connection, and its reads pay a dial as kad-dht's do.

// warmPerSecond bounds the dials warming makes: a node joining an overlay
// of WarmConns members is fully connected within a minute, and a process
// of a hundred testnet nodes does not spend its cores on handshakes.
const warmPerSecond = 2

// warmDefer: of two members, the one with the smaller ID warms the
// connection between them, so the two do not dial each other at once and
// keep two connections; the other dials too once the pair has been cold for
// warmDefer gossip periods (30 s by default; the first does not warm: its
// view is larger than its WarmConns, or it is down).
const warmDefer = 30

// warmTimeout bounds one warming dial: a member that does not answer is
// left to the membership's probes.
const warmTimeout = 2 * time.Second

// warmAfter is how long a node waits before it first warms: the start-up
// of an overlay (or of a testnet's hundred nodes in one process) makes
// most connections by itself, and its handshakes need the cores first.
const warmAfter = 10 * time.Second

// warm runs until ctx ends, dialling up to warmPerSecond cold members a
// second, from warmAfter on.
func (m *members) warm(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(warmAfter):
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.dedupe()
		for _, p := range m.cold(warmPerSecond) {
			m.addrsFor(p)
			dctx, cancel := context.WithTimeout(ctx, warmTimeout)
			if m.o.routed.Connect(dctx, peer.AddrInfo{ID: p}) == nil {
				m.warmed.Add(1)
			}
			cancel()
		}
	}
}

// cold returns up to n live members, chosen at random, this node has no
// connection to and is to dial (warmDefer), while the live view has at most
// WarmConns members besides this node (none otherwise).
func (m *members) cold(n int) []peer.ID {
	live := m.list()
	if len(live) > m.o.cfg.WarmConns+1 {
		m.coldSince = nil
		return nil
	}
	now := time.Now()
	since := make(map[peer.ID]time.Time, len(m.coldSince))
	var out []peer.ID
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	for _, p := range live {
		if p == m.self || m.o.host.Network().Connectedness(p) == network.Connected {
			continue
		}
		t, ok := m.coldSince[p]
		if !ok {
			t = now
		}
		since[p] = t
		if len(out) < n && (m.self < p || now.Sub(t) >= warmDefer*m.o.cfg.GossipInterval) {
			out = append(out, p)
		}
	}
	m.coldSince = since
	return out
}

// dedupeAfter: a second connection to a peer is closed once it has been
// open this long without a stream (a stream may be opening on a fresh one).
const dedupeAfter = 10 * time.Second

// dedupe closes the idle duplicates among this node's connections: when
// two peers dial each other at once (a warming dial meeting a probe, two
// kad-dht queries) each keeps two connections, and a connection manager
// whose high water mark is above the overlay's size never trims them. Of
// the two ends, only the one with the smaller ID closes, so the two do not
// close different connections and leave the pair cold; the connection
// kept is the one with most streams.
func (m *members) dedupe() {
	byPeer := map[peer.ID][]network.Conn{}
	for _, c := range m.o.host.Network().Conns() {
		if p := c.RemotePeer(); m.self < p {
			byPeer[p] = append(byPeer[p], c)
		}
	}
	now := time.Now()
	for _, cs := range byPeer {
		if len(cs) < 2 {
			continue
		}
		keep := cs[0]
		for _, c := range cs[1:] {
			if len(c.GetStreams()) > len(keep.GetStreams()) {
				keep = c
			}
		}
		for _, c := range cs {
			if c != keep && len(c.GetStreams()) == 0 && now.Sub(c.Stat().Opened) >= dedupeAfter {
				_ = c.Close()
			}
		}
	}
}
