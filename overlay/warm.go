package overlay

import (
	"context"
	"slices"
	"strings"
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

// warmSettle, in gossip periods (2 min by default): warming dials only
// once no member new to this node has become live for this long. An
// overlay still starting, or growing past WarmConns, would have the
// connections made for nothing, and its start-up has the cores busy.
const warmSettle = 120

// warmLift, in gossip periods (30 s by default): the protections are
// lifted once the view has been past WarmConns for this long, not at once:
// a view that crosses the bound and back would have the connections
// trimmed and made again.
const warmLift = 30

// warmDefer, in gossip periods: of two members, the one with the smaller ID
// warms the connection between them, so the two do not dial each other at
// once and keep two connections; the other dials too once the pair has
// been cold for this long (the first does not warm: its view is larger
// than its WarmConns, or it is down). It is also the least time between two
// warming dials to one member; each dial that does not give a connection
// that lasts warmLasting doubles it (up to 32 ×), so a member that drops
// every connection (to have its announced addresses, someone else's, dialled
// by every node) is dialled by warming less and less often.
const warmDefer = 30

const warmLasting = time.Minute

// warmTimeout bounds one warming dial: a member that does not answer is
// left to the membership's probes.
const warmTimeout = 2 * time.Second

const warmTag = "warm"

// warmState is the warm goroutine's own.
type warmState struct {
	protected map[peer.ID]bool      // members protected as warm
	seen      map[peer.ID]bool      // members seen live while the view fits
	coldSince map[peer.ID]time.Time // members not connected, since when
	tries     map[peer.ID]warmTry   // warming dials, per member
	grew      time.Time             // when a member new to seen became live
	over      time.Time             // since when the view is past WarmConns (zero: it is not)
}

type warmTry struct {
	at time.Time // the last dial
	n  int       // dials since a connection lasted warmLasting
}

// due: warmDefer periods after the last dial, doubled for each dial before
// it that gave no lasting connection, up to 32 ×.
func (t warmTry) due(now time.Time, period time.Duration) bool {
	return now.Sub(t.at) >= warmDefer*period<<min(max(t.n-1, 0), 5)
}

// warm runs until ctx ends: each second, while the view fits WarmConns, it
// protects the members' connections, closes idle duplicates of them and
// dials up to warmPerSecond of the missing ones.
func (m *members) warm(ctx context.Context) {
	if m.o.cfg.WarmConns < 0 || m.o.cfg.Client || m.o.cfg.View == ViewPartial {
		// A client is no member's warm peer: its connections would be
		// trimmed and made again. A partial view is for an overlay too
		// large to warm: its region would be a fraction of the replicas
		// its reads ask.
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	now := time.Now()
	ws := &warmState{grew: now, seen: map[peer.ID]bool{}, tries: map[peer.ID]warmTry{}}
	for {
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
		m.dedupe(ws.protected)
		for _, p := range m.cold(ws, now) {
			m.addrsFor(p)
			ws.tries[p] = warmTry{at: now, n: ws.tries[p].n + 1}
			delete(ws.coldSince, p) // the other end's defer starts again
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
	period := m.o.cfg.GossipInterval
	// The count first (the membership keeps it): past the bound, a view
	// is not walked each second, which would cost every node O(N).
	if m.lift(ws, m.others() <= m.o.cfg.WarmConns, now) {
		return nil
	}
	var live []peer.ID
	for _, p := range m.list() {
		if p != m.self {
			live = append(live, p)
		}
	}
	fits := len(live) <= m.o.cfg.WarmConns
	if len(ws.seen) > 4*max(m.o.cfg.WarmConns, 1) {
		clear(ws.seen) // members come and go: this forgets those gone
	}
	for _, p := range live {
		if !ws.seen[p] {
			ws.seen[p], ws.grew = true, now
		}
	}
	settled := now.Sub(ws.grew) >= warmSettle*period
	if fits && settled {
		ws.protected = reprotect(m.o.host.ConnManager(), warmTag, ws.protected, live)
	}
	since := map[peer.ID]time.Time{}
	var cold []peer.ID
	for p := range ws.tries {
		if m.o.host.Network().Connectedness(p) != network.Connected && !slices.Contains(live, p) {
			delete(ws.tries, p)
		}
	}
	for _, p := range live {
		if m.o.host.Network().Connectedness(p) == network.Connected {
			if t, ok := ws.tries[p]; ok && now.Sub(t.at) >= warmLasting {
				delete(ws.tries, p) // it lasted
			}
			continue
		}
		cold = append(cold, p)
		since[p] = now
		if t, ok := ws.coldSince[p]; ok {
			since[p] = t
		}
	}
	ws.coldSince = since
	m.warming.Store(fits)
	m.coldN.Store(int64(len(cold)))
	if !fits || !settled {
		return nil
	}
	m.mu.Lock()
	m.rng.Shuffle(len(cold), func(i, j int) { cold[i], cold[j] = cold[j], cold[i] })
	m.mu.Unlock()
	var out []peer.ID
	for _, p := range cold {
		t, tried := ws.tries[p]
		if len(out) < warmPerSecond && (!tried || t.due(now, period)) && (m.self < p || now.Sub(since[p]) >= warmDefer*period) {
			out = append(out, p)
		}
	}
	return out
}

// lift notes since when the view is past WarmConns (fits: it is not) and,
// once it has been for warmLift periods, lifts the warm protections and
// reports true: nothing is to be warmed.
func (m *members) lift(ws *warmState, fits bool, now time.Time) bool {
	switch {
	case fits:
		ws.over = time.Time{}
	case ws.over.IsZero():
		ws.over = now
	}
	if fits || now.Sub(ws.over) < warmLift*m.o.cfg.GossipInterval {
		return false
	}
	clear(ws.seen) // all of it costs nothing once lifted
	clear(ws.tries)
	ws.coldSince = nil
	ws.protected = reprotect(m.o.host.ConnManager(), warmTag, ws.protected, nil)
	m.warming.Store(false)
	m.coldN.Store(0)
	return true
}

// dedupeAfter: a second connection to a peer is closed once it has been
// open this long (a stream may be opening on a fresh one).
const dedupeAfter = 10 * time.Second

// dedupe closes the idle duplicates among this node's connections to the
// members it protects as warm, which the connection manager never trims.
// Two members that dial each other at once (a warming dial meeting a probe,
// two kad-dht queries) each keep two connections: of the two ends, only
// the one with the smaller ID closes the second, so the two do not close
// different connections and leave the pair cold. Past two, either end
// closes the idle extras: no peer holds more by protection. The connection
// kept is the one libp2p opens new streams on (isBetterConn: unlimited,
// direct, most streams, newest), so none is opening on one closed; the
// one closed carries no stream younger than dedupeAfter (idleDup).
func (m *members) dedupe(protected map[peer.ID]bool) {
	if len(protected) == 0 {
		return // a view past WarmConns: nothing is protected as warm
	}
	byPeer := map[peer.ID][]network.Conn{}
	for _, c := range m.o.host.Network().Conns() {
		if p := c.RemotePeer(); protected[p] {
			byPeer[p] = append(byPeer[p], c)
		}
	}
	now := time.Now()
	for p, cs := range byPeer {
		if len(cs) < 2 || (len(cs) == 2 && p < m.self) {
			continue
		}
		keep := cs[0]
		for _, c := range cs[1:] {
			if betterConn(c, keep) {
				keep = c
			}
		}
		for _, c := range cs {
			if c != keep && idleDup(c, now) {
				_ = c.Close()
			}
		}
	}
}

// idleDup: c has been open dedupeAfter and carries no stream opened since.
// A stream that old is a pooled one (a membership sender, an LSP or
// kad-dht stream kept for the next request), not a request being made:
// its owner opens a fresh one, on the connection kept, when a write or a
// reused request fails on it (lsp and kad-dht retry a stale pooled stream
// once, the membership's anti-entropy repairs a lost frame). Waiting for
// none at all would keep a pair's two connections for good once each end
// pooled a stream on a different one.
func idleDup(c network.Conn, now time.Time) bool {
	if now.Sub(c.Stat().Opened) < dedupeAfter {
		return false
	}
	for _, s := range c.GetStreams() {
		if now.Sub(s.Stat().Opened) < dedupeAfter {
			return false
		}
	}
	return true
}

// betterConn: the order libp2p's swarm picks a connection for a new stream
// in (unlimited, then direct, then most streams, then the later one).
func betterConn(a, b network.Conn) bool {
	if al, bl := a.Stat().Limited, b.Stat().Limited; al != bl {
		return !al
	}
	if ad, bd := directConn(a), directConn(b); ad != bd {
		return ad
	}
	if an, bn := len(a.GetStreams()), len(b.GetStreams()); an != bn {
		return an > bn
	}
	return true
}

func directConn(c network.Conn) bool {
	return !strings.Contains(c.RemoteMultiaddr().String(), "/p2p-circuit")
}

// Warm reports whether this node keeps a connection to every member (its
// view fits Config.WarmConns), and how many live members it had no
// connection to at its last look (once a second).
func (o *Overlay) Warm() (warming bool, cold int) {
	return o.members.warming.Load(), int(o.members.coldN.Load())
}
