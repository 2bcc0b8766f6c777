package overlay

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/lsnode/lsnode/overlay/membership"
)

// maxGossipFrame bounds one membership message (a join's answer comes in
// parts of 1024 entries).
const maxGossipFrame = 4 << 20

// minPingTimeout: a probe's ack may take this long even on loopback (a
// loaded machine, a race-instrumented test binary), whatever the gossip
// period: a tighter timeout only makes false accusations.
const minPingTimeout = 200 * time.Millisecond

// membersProtocol: 3.0.0 added confirmed suspicion (item kind 4,
// msgAccuse), 4.0.0 leaf digests in anti-entropy (msgSubSync); an older
// node would drop those messages, so the versions do not speak.
func (o *Overlay) membersProtocol() protocol.ID { return o.Protocol("members", "4.0.0") }

// members runs the membership protocol (package membership: SWIM-style
// probes on a few rings, changes flooded as announcements, digest
// anti-entropy) over libp2p: one long-lived stream per neighbour each way,
// a frame per message.
type members struct {
	o    *Overlay
	self peer.ID

	mu        sync.Mutex
	m         *membership.Membership
	services  []string // this node's announced services
	base      []string // services the overlay itself announces (relay)
	subs      map[*chan struct{}]struct{}
	version   uint64
	closed    bool
	rng       *rand.Rand
	protected map[peer.ID]bool // ring neighbours, protected from trimming
	// A partial view: its region's live members (counted each second),
	// whether its bits follow the overlay's size (auto) and when they last
	// changed. The bits themselves are the membership's (Region).
	regionLive int
	auto       bool
	resized    time.Time
	joinedAt   time.Time // when resize first saw the view joined
	wasJoined  atomic.Bool

	sendMu sync.Mutex
	queues map[peer.ID]chan []byte
	wg     sync.WaitGroup

	// What warm did and saw: connections it opened; whether the view fits
	// WarmConns and how many live members had no connection, at its last
	// look.
	warmed atomic.Uint64
	// dials counts the membership streams that had to dial (no connection
	// to the peer), by the type of the message that opened them.
	dials [16]atomic.Uint64
	// senders counts the per-peer senders started, by the type of the
	// message that started each: whom a node talks to, not how often.
	sendersBy [16]atomic.Uint64
	// held counts the messages a sender dropped without dialling, in the
	// hold after it failed to open a stream to their peer (Deferrable).
	held    atomic.Uint64
	warming atomic.Bool
	coldN   atomic.Int64

	failMu    sync.Mutex
	openFails uint64 // membership streams this node failed to open
	lastFail  string // the last of them: peer and error
	failsTo   map[peer.ID]peerFails
}

func newMembers(o *Overlay) (*members, error) {
	m := &members{o: o, self: o.host.ID(), subs: map[*chan struct{}]struct{}{},
		queues: map[peer.ID]chan []byte{}, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	if o.cfg.RelayService {
		m.base = []string{relayService}
		m.services = m.base
	}
	bits := 0
	if o.cfg.View == ViewPartial {
		// Automatic: join with the smallest region (cheap), then widen it
		// to the overlay's size (resize).
		bits, m.auto = o.cfg.RegionBits, o.cfg.RegionBits == 0
		if m.auto {
			bits = maxRegionBits
		}
	}
	cfg := membership.Config{
		Name: o.cfg.Name, Self: string(m.self), Serve: o.serving(),
		Addrs: m.addrBytes(), Services: m.services,
		Sign: o.cfg.Identity.Sign,
		Verify: func(id string, msg, sig []byte) bool {
			pk, err := peer.ID(id).ExtractPublicKey()
			if err != nil {
				return false
			}
			ok, err := pk.Verify(msg, sig)
			return err == nil && ok
		},
		Period:         o.cfg.GossipInterval,
		PingTimeout:    max(o.cfg.GossipInterval/2, minPingTimeout),
		SuspectTimeout: max(o.cfg.FailAfter-2*o.cfg.GossipInterval, o.cfg.GossipInterval),
		LocalSuspect:   o.cfg.FailAfter,
		MaxUnconfirmed: o.cfg.MaxUnconfirmed,
		MaxPerGroup:    o.cfg.MaxPerSubnet,
		AddrGroup: func(e *membership.Entry) string {
			for _, a := range decodeAddrs(e.Addrs) {
				if ip, err := manet.ToIP(a); err == nil {
					return subnetOf(ip)
				}
			}
			return ""
		},
		Group:      func(from string) string { return m.peerSubnet(peer.ID(from)) },
		RegionBits: bits,
		Allowed: func(id string) bool {
			if _, err := peer.IDFromBytes([]byte(id)); err != nil {
				return false
			}
			return o.admit == nil || !o.admit.refusedNow(peer.ID(id))
		},
	}
	mm, err := membership.New(cfg, transport{m}, time.Now(), nil)
	if err != nil {
		return nil, fmt.Errorf("overlay: membership: %w", err)
	}
	m.m = mm
	return m, nil
}

// addrBytes are this node's listen addresses as it announces them.
func (m *members) addrBytes() [][]byte {
	var out [][]byte
	for _, a := range m.o.host.Addrs() {
		out = append(out, a.Bytes())
	}
	return out
}

// transport hands messages to per-peer senders; it never blocks (a full
// queue drops the message: the protocol retries what matters).
type transport struct{ m *members }

func (t transport) Send(to string, msg []byte) { t.m.enqueue(peer.ID(to), msg) }

func (m *members) enqueue(p peer.ID, msg []byte) {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	if m.o.ctx.Err() != nil {
		return
	}
	q := m.queues[p]
	if q == nil {
		q = make(chan []byte, 256)
		m.queues[p] = q
		if len(msg) > 0 {
			m.sendersBy[msg[0]&15].Add(1)
		}
		m.wg.Add(1)
		go m.sender(p, q)
	}
	select {
	case q <- msg:
	default:
	}
}

// sender writes queued messages to p on one stream, opened on the first and
// closed after a minute without any.
func (m *members) sender(p peer.ID, q chan []byte) {
	defer m.wg.Done()
	var s network.Stream
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	idle := time.NewTimer(time.Minute)
	defer idle.Stop()
	var h hold
	for {
		var msg []byte
		select {
		case <-m.o.ctx.Done():
			return
		case msg = <-q:
		case <-idle.C:
			m.sendMu.Lock()
			if len(q) == 0 {
				delete(m.queues, p)
				m.sendMu.Unlock()
				return
			}
			m.sendMu.Unlock()
			continue
		}
		idle.Reset(time.Minute)
		// Held back only when opening would dial: on a connection p
		// keeps to this node (a NAT'd member's) a stream costs nothing.
		if s == nil && membership.Deferrable(msg) && h.on(time.Now()) && m.o.host.Network().Connectedness(p) != network.Connected {
			m.held.Add(1)
			continue
		}
		var reached bool
		s, reached = m.write(p, s, msg)
		h.after(time.Now(), reached, m.o.cfg.GossipInterval)
	}
}

// hold is a sender's back-off after it failed to open a stream: while on,
// it drops what the protocol repairs anyway (Deferrable) instead of
// dialling again for each message. A Have flushed to a member that does
// not answer yet (a join wave, a member gone but not yet declared) would
// otherwise cost a dial, often a handshake, every flush. It starts at one
// gossip period and doubles to 32; a stream opened (a probe gets through)
// ends it.
type hold struct {
	until time.Time
	wait  time.Duration
}

func (h *hold) on(now time.Time) bool { return now.Before(h.until) }

func (h *hold) after(now time.Time, ok bool, period time.Duration) {
	if ok {
		*h = hold{}
		return
	}
	h.wait = min(max(2*h.wait, period), 32*period)
	h.until = now.Add(h.wait)
}

// write sends msg on s (opened first if nil), once more on a fresh stream
// when a kept stream went stale (the peer restarted, the connection was
// trimmed); it returns the stream to keep, nil when none is open, and
// whether p was reached (the message went out, or a fresh stream opened
// even if the write on it then failed; a kept stream gone stale proves
// nothing).
func (m *members) write(p peer.ID, s network.Stream, msg []byte) (network.Stream, bool) {
	reached := false
	for attempt := 0; attempt < 2; attempt++ {
		fresh := s == nil
		if fresh {
			if m.o.host.Network().Connectedness(p) != network.Connected {
				m.dials[msg[0]&15].Add(1)
			}
			var err error
			if s, err = m.open(p); err != nil {
				m.o.cfg.Logger.Debug("membership stream", "peer", p, "err", err)
				m.failed(p, err)
				return nil, reached
			}
			m.opened(p)
			reached = true
		}
		_ = s.SetWriteDeadline(time.Now().Add(max(m.o.cfg.GossipInterval, time.Second)))
		if err := WriteFrame(s, msg); err == nil {
			return s, true
		}
		s.Reset()
		s = nil
		if fresh {
			return nil, true
		}
	}
	return nil, reached
}

// open opens a membership stream to p, dialling the addresses its entry
// announces if not connected. It waits twice a gossip period (at least
// 2 s), stretched by the local health score like the protocol's own
// timeouts (Lifeguard): on a node so loaded that its probes go unanswered,
// a dial (handshake and identify) takes longer too, and a stream given up
// on drops the probe it carried, so the node would keep accusing members
// it cannot reach in time rather than members that are down.
func (m *members) open(p peer.ID) (network.Stream, error) {
	m.addrsFor(p)
	m.mu.Lock()
	health := m.m.Health()
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(m.o.ctx, max(2*m.o.cfg.GossipInterval, 2*time.Second)*time.Duration(1+health))
	defer cancel()
	return m.o.routed.NewStream(ctx, p, m.o.membersProtocol())
}

// addrsFor gives the peerstore the addresses p's entry announces when
// this node is not connected to p: the peerstore holds addresses only of
// the peers this node dials, not of every member.
func (m *members) addrsFor(p peer.ID) {
	if m.o.host.Network().Connectedness(p) == network.Connected {
		return
	}
	m.mu.Lock()
	e := m.m.Entry(string(p))
	m.mu.Unlock()
	if e != nil {
		m.o.host.Peerstore().AddAddrs(p, decodeAddrs(e.Addrs), 10*time.Minute)
	}
}

func decodeAddrs(bs [][]byte) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, b := range bs {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// handle reads a peer's membership stream, a frame per message.
func (m *members) handle(s network.Stream) {
	defer s.Close()
	from := s.Conn().RemotePeer()
	r := bufio.NewReader(s)
	for {
		_ = s.SetReadDeadline(time.Now().Add(2 * time.Minute))
		b, err := ReadFrame(r, maxGossipFrame)
		if err != nil {
			return
		}
		if err := m.do(func(mm *membership.Membership, now time.Time) error {
			return mm.Receive(now, string(from), b)
		}); err != nil {
			m.o.cfg.Logger.Debug("bad membership message", "peer", from, "err", err)
			s.Reset()
			return
		}
	}
}

// do runs f on the membership under the lock and tells subscribers when
// the live set may have changed.
func (m *members) do(f func(*membership.Membership, time.Time) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	err := f(m.m, time.Now())
	if v := m.m.Version(); v != m.version {
		m.version = v
		m.notifyLocked()
	}
	return err
}

// run ticks the membership, keeps this node's entry current (addresses,
// services, whether it serves), rejoins through a bootstrap peer while
// alone and now and then compares digests with one.
func (m *members) run(ctx context.Context) {
	t := time.NewTicker(max(m.o.cfg.GossipInterval/5, 10*time.Millisecond))
	defer t.Stop()
	round := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		round++
		_ = m.do(func(mm *membership.Membership, now time.Time) error {
			mm.Tick(now)
			if round%5 != 0 {
				return nil
			}
			m.protect(mm.Neighbours())
			bits, _ := mm.Region()
			if bits > 0 || m.auto {
				m.regionLive = mm.LiveCount(now)
				m.resize(mm, now)
			}
			if bits > 0 && round%50 == 25 {
				m.merge(mm, now)
			}
			if err := mm.SetServe(now, m.o.serving()); err != nil {
				return err
			}
			if err := mm.SetSelf(now, m.addrBytes(), m.services); err != nil {
				return err
			}
			boots := m.o.cfg.bootstrap
			if len(boots) == 0 {
				return nil
			}
			ai := boots[m.rng.IntN(len(boots))]
			if ai.ID == m.self {
				return nil
			}
			switch {
			case !mm.Joined() && bits > 0 && round%10 == 5:
				// A partial view: through a member near this node (its
				// region), as kad-dht's routing table knows them.
				if ps := m.o.dht.RoutingTable().NearestPeers(kb.ConvertPeerID(m.self), 3); len(ps) > 0 {
					mm.JoinNear(now, string(ps[m.rng.IntN(len(ps))]))
				}
			case !mm.Joined():
				m.o.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
				m.o.clearDialBackoff(ai.ID)
				mm.Join(now, string(ai.ID))
			case round%healRounds == 0:
				// A partition's other side, if any (membership.Heal). Its
				// sender dials once this lock is released (addrsFor), so
				// the addresses and a backoff cleared of the partition's
				// failed checks are in place for it.
				if mm.Heal(now, string(ai.ID)) {
					m.o.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
					m.o.clearDialBackoff(ai.ID)
				}
			}
			return nil
		})
	}
}

// protect keeps the connection manager from closing connections to the
// ring neighbours (probed every few periods, streams kept open).
func (m *members) protect(ns []string) {
	m.protected = reprotect(m.o.host.ConnManager(), "members", m.protected, toPeers(ns))
}

// reprotect protects ps under tag and lifts the protection of the peers of
// old (the set protected under tag so far) not among them; it returns the
// new set.
func reprotect(cm connmgr.ConnManager, tag string, old map[peer.ID]bool, ps []peer.ID) map[peer.ID]bool {
	now := make(map[peer.ID]bool, len(ps))
	for _, p := range ps {
		now[p] = true
		if !old[p] {
			cm.Protect(p, tag)
		}
	}
	for p := range old {
		if !now[p] {
			cm.Unprotect(p, tag)
		}
	}
	return now
}

// join asks p for its view and waits for the answer. It opens a stream
// first, so a federation's refusal comes back as the error. near: p was
// found, not configured (membership.JoinNear).
func (m *members) join(ctx context.Context, p peer.ID, near bool) error {
	s, err := m.o.routed.NewStream(ctx, p, m.o.membersProtocol())
	if err != nil {
		return err
	}
	s.Close()
	if err := m.do(func(mm *membership.Membership, now time.Time) error {
		if near {
			mm.JoinNear(now, string(p))
		} else {
			mm.Join(now, string(p))
		}
		return nil
	}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, max(5*time.Second, 5*m.o.cfg.GossipInterval))
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		m.mu.Lock()
		ok := m.m.Joined()
		m.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("overlay: no membership view from %s: %w", p, ctx.Err())
		case <-t.C:
		}
	}
}

// clearDialBackoff drops the swarm's dial backoff for p.
func (o *Overlay) clearDialBackoff(p peer.ID) {
	if b, ok := o.host.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
		b.Backoff().Clear(p)
	}
}

// peerSubnet names the subnet of the address p is connected from.
func (m *members) peerSubnet(p peer.ID) string {
	for _, c := range m.o.host.Network().ConnsToPeer(p) {
		if ip, err := manet.ToIP(c.RemoteMultiaddr()); err == nil {
			return subnetOf(ip)
		}
	}
	return ""
}

// subnetOf names an address's IPv4 /24 or IPv6 /48.
func subnetOf(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.Mask(net.CIDRMask(24, 32)).String()
	}
	return ip.Mask(net.CIDRMask(48, 128)).String()
}

func (m *members) notifyLocked() {
	for ch := range m.subs {
		select {
		case *ch <- struct{}{}:
		default:
		}
	}
}

func (m *members) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs[&ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, &ch)
		m.mu.Unlock()
	}
}

func (m *members) suspect(p peer.ID) {
	_ = m.do(func(mm *membership.Membership, now time.Time) error { mm.Suspect(now, string(p)); return nil })
}

// forget drops p from the view (a peer the federation refused).
func (m *members) forget(p peer.ID) {
	_ = m.do(func(mm *membership.Membership, _ time.Time) error { mm.Forget(string(p)); return nil })
}

// joined reports whether the view has ever held an answer to a join (or
// another member): sticky, so a node whose peers all went keeps serving
// from what it holds rather than refusing until one comes back.
func (m *members) joined() bool {
	if m.wasJoined.Load() {
		return true
	}
	m.mu.Lock()
	ok := m.m.Joined()
	m.mu.Unlock()
	if ok {
		m.wasJoined.Store(true)
	}
	return ok
}

func (m *members) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.LiveCount(time.Now())
}

// others is count() without this node (which a node that does not serve
// is not among).
func (m *members) others() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	n := m.m.LiveCount(now)
	if m.m.Alive(now, string(m.self)) {
		n--
	}
	return n
}

func (m *members) list() []peer.ID {
	m.mu.Lock()
	ids := m.m.Live(time.Now())
	m.mu.Unlock()
	return toPeers(ids)
}

func toPeers(ids []string) []peer.ID {
	out := make([]peer.ID, len(ids))
	for i, id := range ids {
		out[i] = peer.ID(id)
	}
	return out
}

func kid(key kb.ID) [32]byte {
	var k [32]byte
	copy(k[:], key)
	return k
}

// healRounds: run's rounds (a fifth of a gossip period each) between two
// checks on a bootstrap peer (membership.Heal): 60 gossip periods, a
// minute by default.
const healRounds = 5 * 60

// merge, every 10 s, asks a member of this node's region that kad-dht's
// routing table holds near it and the view does not (a part of the region
// that joined apart) for its view (membership.Merge). Called locked.
func (m *members) merge(mm *membership.Membership, now time.Time) {
	for _, p := range m.o.dht.RoutingTable().NearestPeers(kb.ConvertPeerID(m.self), 8) {
		if mm.Covers(kid(kb.ConvertPeerID(p))) && !mm.Knows(string(p)) {
			mm.Merge(now, string(p))
			return
		}
	}
}

// covers: the view places key itself (Overlay.Covers). Called locked.
func (m *members) coversLocked(key kb.ID) bool {
	bits, _ := m.m.Region()
	return bits == 0 || m.m.Covers(kid(key)) && m.regionLive >= minRegionLive
}

func (m *members) covers(key kb.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.coversLocked(key)
}

// placed returns up to n live members nearest key, and whether the view
// places key itself (when not, nothing: the overlay's routes do).
func (m *members) placed(key kb.ID, n int) ([]peer.ID, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.coversLocked(key) {
		return nil, false
	}
	return toPeers(m.m.Closest(time.Now(), kid(key), n)), true
}

// aliveIn reports whether p is live in the view, and whether the view's
// region holds p at all (a full view's holds everyone).
func (m *members) aliveIn(p peer.ID) (alive, inRegion bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.m.Covers(kid(kb.ConvertPeerID(p))) {
		return false, false
	}
	return p == m.self || m.m.Alive(time.Now(), string(p)), true
}

// liveScaled is the number of live members scaled to the whole overlay
// (a partial view holds 1/2^bits of it), and the live count itself.
func (m *members) liveScaled() (scaled, live int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	bits, _ := m.m.Region()
	live = m.m.LiveCount(time.Now())
	return live << bits, live
}

// resize follows the overlay's size with an automatic region, at most
// once per 30 s: wider as soon as the region holds too few members,
// narrower only when it holds over four times too many. Called locked.
func (m *members) resize(mm *membership.Membership, now time.Time) {
	if !m.auto || !mm.Joined() {
		m.joinedAt = time.Time{}
		return
	}
	if m.joinedAt.IsZero() {
		m.joinedAt = now
	}
	if now.Sub(m.resized) < 30*time.Second {
		return
	}
	bits, _ := mm.Region()
	est := m.regionLive << bits
	if m.regionLive < minRegionLive {
		// A handful says little: estimate from kad-dht's routing table.
		var sample int
		est, sample = m.o.routingTableEstimate()
		if sample < estimateSample {
			// Too few peers to estimate from. Just joined: the join's
			// lookups are still filling the table (an estimate from one
			// or two close peers can be 200 for 10 members, and a
			// region it picks sticks for 30 s).
			if now.Sub(m.joinedAt) < max(20*m.o.cfg.GossipInterval, 2*time.Second) {
				return
			}
			// Settled: the lookups found fewer peers than the sample
			// asks, so this table is the overlay, unless the subnet
			// diversity limit keeps the table small (MaxPerSubnet: then
			// the distances are all there is to go by).
			if m.o.cfg.MaxPerSubnet == 0 {
				est = sample + 1
			}
		}
	}
	want := regionFor(est)
	if want == bits || want == bits+1 {
		return
	}
	// Widen through a member whose view holds the wider region (a full
	// one, or a partial one of as many bits or fewer), else a bootstrap
	// peer.
	var from string
	var seen int
	mm.Each(now, func(e *membership.Entry) bool {
		if e.ID != string(m.self) && e.Region <= want {
			if seen++; m.rng.IntN(seen) == 0 {
				from = e.ID
			}
		}
		return true
	})
	if boots := m.o.cfg.bootstrap; from == "" && len(boots) > 0 {
		from = string(boots[m.rng.IntN(len(boots))].ID)
	}
	m.resized = now
	if err := mm.SetRegion(now, want, from); err != nil {
		m.o.cfg.Logger.Warn("partial view: resize", "bits", want, "err", err)
		return
	}
	m.o.cfg.Logger.Info("partial view: region resized", "bits", want, "from", bits, "estimated members", est)
}

func (m *members) suspected(key kb.ID, n int) []peer.ID {
	m.mu.Lock()
	ids := m.m.Suspected(time.Now(), kid(key), n)
	m.mu.Unlock()
	return toPeers(ids)
}

// announced returns the live members' services by id (this node's
// included), which the caller must not modify.
func (m *members) announced() map[string][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.Announced(time.Now())
}

// each calls f with every live member's entry (this node's included).
func (m *members) each(f func(id peer.ID, e *membership.Entry) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m.Each(time.Now(), func(e *membership.Entry) bool { return f(peer.ID(e.ID), e) })
}

func (m *members) setServices(s []string) {
	m.mu.Lock()
	m.services = slices.Clone(s)
	m.mu.Unlock()
}

// stats returns the protocol's counters.
func (m *members) stats() membership.Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.Stats()
}

// leave announces departure to the neighbours and stops the senders once
// they have written it (or ctx ends).
func (m *members) leave(ctx context.Context) {
	_ = m.do(func(mm *membership.Membership, now time.Time) error { mm.Leave(now); return nil })
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		m.sendMu.Lock()
		busy := 0
		for _, q := range m.queues {
			busy += len(q)
		}
		m.sendMu.Unlock()
		if busy == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// senders: how many peers this node keeps a membership sender for (sent
// to within the last minute).
func (m *members) senders() int {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	return len(m.queues)
}

// peerFails: the membership streams to one peer this node failed to
// open in a row, and the last error.
type peerFails struct {
	n    uint64
	last string
}

// maxFailsTo bounds the peers whose failures are kept.
const maxFailsTo = 256

func (m *members) failed(p peer.ID, err error) {
	m.failMu.Lock()
	defer m.failMu.Unlock()
	m.openFails++
	m.lastFail = fmt.Sprintf("%s (%v): %v", p, m.o.host.Network().Connectedness(p), err)
	if m.failsTo == nil || len(m.failsTo) >= maxFailsTo {
		m.failsTo = map[peer.ID]peerFails{}
	}
	f := m.failsTo[p]
	m.failsTo[p] = peerFails{n: f.n + 1, last: m.lastFail}
}

func (m *members) opened(p peer.ID) {
	m.failMu.Lock()
	defer m.failMu.Unlock()
	delete(m.failsTo, p)
}

// sendFailures: how many membership streams this node failed to open,
// and the last failure.
func (m *members) sendFailures() (uint64, string) {
	m.failMu.Lock()
	defer m.failMu.Unlock()
	return m.openFails, m.lastFail
}

// sendFailuresTo: how many membership streams to p this node failed to
// open since it last opened one, and the last failure.
func (m *members) sendFailuresTo(p peer.ID) (uint64, string) {
	m.failMu.Lock()
	defer m.failMu.Unlock()
	f := m.failsTo[p]
	return f.n, f.last
}

func (m *members) suspicion(p peer.ID) ([]peer.ID, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids, at, spread := m.m.Suspicion(string(p))
	out := make([]peer.ID, len(ids))
	for i, id := range ids {
		out[i] = peer.ID(id)
	}
	return out, at, spread
}

func (m *members) state(p peer.ID) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.State(time.Now(), string(p))
}

// knows reports whether p is in the view (in any state), or is this node.
func (m *members) knows(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m.Knows(string(p))
}
