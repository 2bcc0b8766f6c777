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
// this node keeps one to each: it protects them from the connection
// manager and opens the missing ones in the background, a few a second,
// once the view has stopped growing. A larger view is not warmed (and its
// protections are lifted, so the connection manager trims back to
// TargetConns): a connection to a part of it would spare only that part of
// the dials, at the memory of every connection, and its reads dial the
// replicas they need as kad-dht's do.

// warmPerSecond bounds the dials warming makes: a node joining an overlay
// of WarmConns members is fully connected within a minute, and a process
// of a hundred testnet nodes does not spend its cores on handshakes.
const warmPerSecond = 2

// warmSettle: warming dials only once the view has not grown for this
// many gossip periods (30 s by default). An overlay still starting (or
// growing past WarmConns) would have the connections made for nothing.
const warmSettle = 30

// warmDefer: of two members, the one with the smaller ID warms the
// connection between them, so the two do not dial each other at once and
// keep two connections; the other dials too once the pair has been cold for
// warmDefer gossip periods (30 s by default; the first does not warm: its
// view is larger than its WarmConns, or it is down).
const warmDefer = 30

// warmTimeout bounds one warming dial: a member that does not answer is
// left to the membership's probes.
const warmTimeout = 2 * time.Second

const warmTag = "warm"

// warmState is the warm goroutine's own.
type warmState struct {
	protected map[peer.ID]bool      // members protected as warm
	coldSince map[peer.ID]time.Time // members not connected, since when
	size      int                   // the live view's size at the last tick
	grew      time.Time             // when it last grew
}

// warm runs until ctx ends: each second it closes idle duplicate
// connections and, while the view fits WarmConns, protects the members'
// connections and dials up to warmPerSecond of the missing ones.
func (m *members) warm(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	ws := &warmState{grew: time.Now()}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.dedupe()
		for _, p := range m.cold(ws, time.Now()) {
			m.addrsFor(p)
			dctx, cancel := context.WithTimeout(ctx, warmTimeout)
			if m.o.routed.Connect(dctx, peer.AddrInfo{ID: p}) == nil {
				m.warmed.Add(1)
			}
			cancel()
		}
	}
}

// cold updates the warm protections and returns up to warmPerSecond live
// members, chosen at random, this node has no connection to and is to dial
// (warmSettle, warmDefer).
func (m *members) cold(ws *warmState, now time.Time) []peer.ID {
	live := m.list()
	if len(live) > ws.size {
		ws.grew = now
	}
	ws.size = len(live)
	fits := len(live) <= m.o.cfg.WarmConns+1
	m.protectWarm(ws, live, fits)
	var cold []peer.ID
	since := map[peer.ID]time.Time{}
	for _, p := range live {
		if fits && p != m.self && m.o.host.Network().Connectedness(p) != network.Connected {
			cold = append(cold, p)
			since[p] = now
			if t, ok := ws.coldSince[p]; ok {
				since[p] = t
			}
		}
	}
	ws.coldSince = since
	m.coldN.Store(int64(len(cold)))
	m.warming.Store(fits)
	if now.Sub(ws.grew) < warmSettle*m.o.cfg.GossipInterval {
		return nil
	}
	m.mu.Lock()
	m.rng.Shuffle(len(cold), func(i, j int) { cold[i], cold[j] = cold[j], cold[i] })
	m.mu.Unlock()
	var out []peer.ID
	for _, p := range cold {
		if len(out) < warmPerSecond && (m.self < p || now.Sub(since[p]) >= warmDefer*m.o.cfg.GossipInterval) {
			out = append(out, p)
		}
	}
	return out
}

// protectWarm protects the connections to the live members while the view
// fits (fits), and lifts every warm protection otherwise.
func (m *members) protectWarm(ws *warmState, live []peer.ID, fits bool) {
	cm := m.o.host.ConnManager()
	now := map[peer.ID]bool{}
	if fits {
		for _, p := range live {
			if p == m.self {
				continue
			}
			now[p] = true
			if !ws.protected[p] {
				cm.Protect(p, warmTag)
			}
		}
	}
	for p := range ws.protected {
		if !now[p] {
			cm.Unprotect(p, warmTag)
		}
	}
	ws.protected = now
}

// dedupeAfter: a second connection to a peer is closed once it has been
// open this long without a stream (a stream may be opening on a fresh one).
const dedupeAfter = 10 * time.Second

// dedupe closes the idle duplicates among this node's connections: when
// two peers dial each other at once (a warming dial meeting a probe, two
// kad-dht queries) each keeps two connections, and the connection manager
// never trims a protected peer's. Of the two ends, only the one with the
// smaller ID closes, so the two do not close different connections and
// leave the pair cold; the connection kept is the one with most streams.
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

// Warm reports whether this node keeps a connection to every member (its
// view fits Config.WarmConns), and how many live members it had no
// connection to at its last look (once a second).
func (o *Overlay) Warm() (warming bool, cold int) {
	return o.members.warming.Load(), int(o.members.coldN.Load())
}
