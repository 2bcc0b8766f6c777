package overlay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"google.golang.org/protobuf/encoding/protowire"
)

// maxGossipFrame bounds one membership message (≈ 50k members).
const maxGossipFrame = 8 << 20

func (o *Overlay) membersProtocol() protocol.ID { return o.Protocol("members", "1.0.0") }

// heartbeat orders a member's announcements: a restarted node gets a new
// incarnation, so its counter restarting at 0 still counts as newer.
type heartbeat struct{ inc, ctr uint64 }

func (h heartbeat) newer(o heartbeat) bool {
	return h.inc > o.inc || (h.inc == o.inc && h.ctr > o.ctr)
}

type member struct {
	id       peer.ID
	kid      kb.ID
	addrs    []ma.Multiaddr
	services []string // announced services (TURN URIs, ...)
	hb       heartbeat
	left     bool
	raw      []byte    // the member's signed entry, forwarded verbatim
	updated  time.Time // when hb last advanced
	suspect  time.Time // excluded from the live set until then
	live     bool      // last computed liveness
	// seen: this node has connected to the member at least once. Only
	// seen members hold replicas: an identity that gossip names but that
	// no one can reach (a Sybil's invention) never places data.
	seen    bool
	subnet  string    // of the address it was reached at (MaxPerSubnet)
	dialAt  time.Time // next attempt to reach an unseen member
	backoff time.Duration
	// Unconfirmed (not seen) members, learnt from a third party: the
	// subnet of the peer that told us (MaxUnconfirmed), and when.
	via   string
	added time.Time
}

type liveMember struct {
	id  peer.ID
	kid kb.ID
}

// members is a push-pull gossip membership view with heartbeat failure detection.
type members struct {
	o    *Overlay
	self peer.ID

	mu       sync.Mutex
	byID     map[peer.ID]*member
	hb       heartbeat
	services []string // this node's announced services
	base     []string // services the overlay itself announces (relay)
	selfRaw  []byte   // this node's signed entry for selfHB
	selfHB   heartbeat
	// sigPrefix separates member signatures by overlay name.
	sigPrefix  []byte
	badEntries int // entries dropped for a bad signature
	// overUnconfirmed counts unconfirmed entries not taken (MaxUnconfirmed).
	overUnconfirmed int
	live            []liveMember // snapshot, replaced on change
	subs            map[*chan struct{}]struct{}
	rng             *rand.Rand
	closed          bool
	dials           chan peer.ID // newly seen members to connect to
	// selfServing: this node is in its own view (see Overlay.serving).
	selfServing bool
}

func newMembers(o *Overlay) *members {
	m := &members{
		o:         o,
		self:      o.host.ID(),
		byID:      map[peer.ID]*member{},
		hb:        heartbeat{inc: uint64(time.Now().UnixNano())},
		subs:      map[*chan struct{}]struct{}{},
		rng:       rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		dials:     make(chan peer.ID, 1024),
		sigPrefix: []byte("lsnode/members/" + o.cfg.Name + "\x00"),
	}
	m.selfServing = o.serving()
	m.live = m.selfView()
	return m
}

func (m *members) run(ctx context.Context) {
	t := time.NewTicker(m.o.cfg.GossipInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		m.hb.ctr++
		m.refreshLocked(time.Now())
		target := m.pickLocked()
		m.mu.Unlock()
		if target == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, m.o.cfg.FailAfter/2)
		if err := m.exchange(cctx, target); err != nil && ctx.Err() == nil {
			m.o.cfg.Logger.Debug("gossip exchange failed", "peer", target, "err", err)
		}
		cancel()
	}
}

// warm connects to members as they are discovered, a few at a time, while
// the host holds fewer connections than the connection manager's low water
// mark: replicas are then reached without a dial on the request path.
func (m *members) warm(ctx context.Context) {
	const parallel = 4
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	low := m.o.cfg.MaxConns * 3 / 4
	net := m.o.host.Network()
	for {
		var p peer.ID
		select {
		case <-ctx.Done():
			return
		case p = <-m.dials:
		}
		if net.Connectedness(p) == network.Connected {
			m.markSeen(p)
			continue
		}
		// Above the low water mark only members never reached are dialled
		// (once, to see that they exist); the connection manager trims.
		if len(net.Peers()) >= low && m.isSeen(p) {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, m.o.cfg.FailAfter)
			defer cancel()
			if !m.isSeen(p) {
				// Never reached: our own backoff (queueDialLocked)
				// spaces the attempts, not the swarm's 5 s after a
				// refused dial (a member still starting up).
				m.o.clearDialBackoff(p)
			}
			if m.o.host.Connect(dctx, peer.AddrInfo{ID: p}) != nil {
				return
			}
			if m.o.admit != nil && m.o.admit.admit(dctx, p) != nil {
				return // a non-member leaves the view now, not on first use
			}
			m.markSeen(p)
		}()
	}
}

// clearDialBackoff drops the swarm's dial backoff for p.
func (o *Overlay) clearDialBackoff(p peer.ID) {
	if b, ok := o.host.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
		b.Backoff().Clear(p)
	}
}

// pickLocked chooses a random live member, or a bootstrap peer when the view
// holds nobody else (or, now and then, to heal a partition).
func (m *members) pickLocked() peer.ID {
	var cands []peer.ID
	for _, lm := range m.live {
		if lm.id != m.self {
			cands = append(cands, lm.id)
		}
	}
	boots := m.o.cfg.bootstrap
	if len(boots) > 0 && (len(cands) == 0 || m.rng.IntN(20) == 0) {
		ai := boots[m.rng.IntN(len(boots))]
		if ai.ID != m.self {
			m.o.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
			if len(cands) == 0 {
				// Alone: retry a bootstrap peer every round, not after
				// the swarm's 5 s backoff from a refused dial (nodes
				// started together, the bootstrap peer a moment later).
				m.o.clearDialBackoff(ai.ID)
			}
			return ai.ID
		}
	}
	if len(cands) == 0 {
		return ""
	}
	return cands[m.rng.IntN(len(cands))]
}

// exchange pushes our view to p and merges p's view.
func (m *members) exchange(ctx context.Context, p peer.ID) error {
	s, err := m.o.routed.NewStream(ctx, p, m.o.membersProtocol())
	if err != nil {
		return err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := WriteFrame(s, m.encode()); err != nil {
		s.Reset()
		return err
	}
	b, err := ReadFrame(bufio.NewReader(s), maxGossipFrame)
	if err != nil {
		s.Reset()
		return err
	}
	return m.merge(b, p)
}

func (m *members) handle(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(m.o.cfg.FailAfter))
	b, err := ReadFrame(bufio.NewReader(s), maxGossipFrame)
	if err != nil {
		s.Reset()
		return
	}
	if err := m.merge(b, s.Conn().RemotePeer()); err != nil {
		m.o.cfg.Logger.Debug("bad gossip", "peer", s.Conn().RemotePeer(), "err", err)
		s.Reset()
		return
	}
	_ = WriteFrame(s, m.encode())
}

// Wire format (protobuf encoding): repeated field 1 = member
// {1: peer id bytes, 2: incarnation, 3: counter, 4: repeated multiaddr bytes, 5: left,
// 6: repeated service (RFC 6940's TURN-SERVICE idea: "turn:host:port?transport=udp")}.
// selfView is the live view before anyone else is in it: this node, unless
// it is a client (never a replica).
func (m *members) selfView() []liveMember {
	if !m.o.serving() {
		return nil
	}
	return []liveMember{{id: m.self, kid: kb.ConvertPeerID(m.self)}}
}

func (m *members) encode() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []byte
	if m.o.serving() { // a client does not announce itself
		out = appendRaw(out, m.selfEntryLocked(false))
	}
	for _, mb := range m.byID {
		// Only members this node reached itself: a third party's
		// word is not passed on (one self-signed identity per key
		// costs an attacker nothing; it must not spread through us).
		if mb.seen {
			out = appendRaw(out, mb.raw)
		}
	}
	return out
}

// selfEntryLocked returns this node's signed entry for the current
// heartbeat, signing it once per heartbeat.
func (m *members) selfEntryLocked(left bool) []byte {
	if m.selfRaw != nil && m.selfHB == m.hb && !left {
		return m.selfRaw
	}
	raw := m.signEntry(memberBody(m.self, m.hb, m.o.host.Addrs(), left, m.services))
	if !left {
		m.selfRaw, m.selfHB = raw, m.hb
	}
	return raw
}

func appendRaw(out, raw []byte) []byte {
	out = protowire.AppendTag(out, 1, protowire.BytesType)
	return protowire.AppendBytes(out, raw)
}

// Member entries are signed by the member's own identity key (field 7, last,
// over the bytes before it and the overlay name), so no one can announce a
// heartbeat, a departure, addresses or services for another node: a forged
// "left" or a heartbeat pushed out of reach would otherwise evict honest
// members from every view.
func (m *members) signEntry(body []byte) []byte {
	sig, err := m.o.cfg.Identity.Sign(m.signed(body))
	if err != nil {
		panic(fmt.Sprintf("overlay: sign member entry: %v", err)) // an Ed25519 key does not fail
	}
	body = protowire.AppendTag(body, 7, protowire.BytesType)
	return protowire.AppendBytes(body, sig)
}

func (m *members) signed(body []byte) []byte {
	msg := make([]byte, 0, len(m.sigPrefix)+len(body))
	return append(append(msg, m.sigPrefix...), body...)
}

func (m *members) verifyEntry(e *gossipEntry) bool {
	pk, err := e.id.ExtractPublicKey()
	if err != nil || len(e.sig) == 0 {
		return false
	}
	ok, err := pk.Verify(m.signed(e.body), e.sig)
	return err == nil && ok
}

func memberBody(id peer.ID, hb heartbeat, addrs []ma.Multiaddr, left bool, services []string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte(id))
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, hb.inc)
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, hb.ctr)
	for _, a := range addrs {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, a.Bytes())
	}
	if left {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	for _, sv := range services {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte(sv))
	}
	return b
}

type gossipEntry struct {
	id       peer.ID
	hb       heartbeat
	addrs    []ma.Multiaddr
	left     bool
	services []string
	raw      []byte // the whole entry
	body     []byte // the signed part (fields 1-6)
	sig      []byte
}

// Bounds of announced services, per member.
const (
	maxServices     = 8
	maxServiceBytes = 256
)

var errBadGossip = errors.New("overlay: malformed membership message")

func decodeGossip(b []byte) ([]gossipEntry, error) {
	var out []gossipEntry
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, errBadGossip
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, errBadGossip
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, errBadGossip
		}
		b = b[n:]
		e, err := decodeGossipEntry(v)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func decodeGossipEntry(b []byte) (gossipEntry, error) {
	e := gossipEntry{raw: b, body: b}
	all := b
	for len(b) > 0 {
		if e.sig != nil {
			return e, fmt.Errorf("%w: fields after the signature", errBadGossip)
		}
		start := len(all) - len(b)
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return e, errBadGossip
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return e, errBadGossip
			}
			id, err := peer.IDFromBytes(v)
			if err != nil {
				return e, fmt.Errorf("%w: peer id: %v", errBadGossip, err)
			}
			e.id, b = id, b[n:]
		case (num == 2 || num == 3 || num == 5) && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return e, errBadGossip
			}
			switch num {
			case 2:
				e.hb.inc = v
			case 3:
				e.hb.ctr = v
			case 5:
				e.left = v != 0
			}
			b = b[n:]
		case num == 4 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return e, errBadGossip
			}
			if a, err := ma.NewMultiaddrBytes(v); err == nil && len(e.addrs) < 16 {
				e.addrs = append(e.addrs, a)
			}
			b = b[n:]
		case num == 6 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return e, errBadGossip
			}
			if len(v) <= maxServiceBytes && len(e.services) < maxServices && utf8.Valid(v) {
				e.services = append(e.services, string(v))
			}
			b = b[n:]
		case num == 7 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || len(v) == 0 {
				return e, errBadGossip
			}
			e.body, e.sig, b = all[:start], v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return e, errBadGossip
			}
			b = b[n:]
		}
	}
	if e.id == "" {
		return e, fmt.Errorf("%w: member without id", errBadGossip)
	}
	return e, nil
}

// merge folds a gossip message received from peer from into the view. An
// entry is taken only when it is newer than what the view holds and, unless
// from sent its own entry over its authenticated stream, when its signature
// verifies. Third-party heartbeats of a member refreshed recently are
// skipped unverified: liveness needs one per FailAfter, not one per round.
func (m *members) merge(b []byte, from peer.ID) error {
	entries, err := decodeGossip(b)
	if err != nil {
		return err
	}
	now := time.Now()
	ps := m.o.host.Peerstore()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	fresh := m.failAfterLocked() / 3
	var room unconfirmedRoom
	for i := range entries {
		e := &entries[i]
		if e.id == m.self || (m.o.admit != nil && m.o.admit.refusedNow(e.id)) {
			continue
		}
		mb := m.byID[e.id]
		if mb != nil && !e.hb.newer(mb.hb) {
			continue
		}
		if e.id != from {
			if mb != nil && !e.left && !mb.left && now.Sub(mb.updated) < fresh {
				continue
			}
			if !m.verifyEntry(e) {
				m.badEntries++
				continue
			}
		}
		if mb == nil {
			if e.left {
				continue
			}
			mb = &member{id: e.id, kid: kb.ConvertPeerID(e.id)}
			if e.id != from {
				if !m.roomLocked(&room, from) {
					m.overUnconfirmed++
					continue
				}
				mb.via, mb.added = room.via, now
			}
			m.byID[e.id] = mb
			m.queueDialLocked(mb, now)
		}
		mb.hb, mb.left, mb.updated = e.hb, e.left, now
		mb.raw = e.raw
		mb.services = e.services
		if len(e.addrs) > 0 {
			mb.addrs = e.addrs
			ps.AddAddrs(e.id, e.addrs, time.Hour)
		}
		if e.left {
			mb.suspect = time.Time{}
		}
	}
	if from != "" {
		m.markSeenLocked(from)
	}
	m.refreshLocked(now)
	return nil
}

// unconfirmedRoom counts the members a gossip message may add that no one
// has confirmed yet (announced by a third party), per source subnet; it is
// counted on the first new member of a message.
type unconfirmedRoom struct {
	counts map[string]int
	total  int
	via    string // the sender's subnet
}

// roomLocked reports whether one more unconfirmed member announced by from
// fits: MaxUnconfirmed in all, a quarter of it per source subnet. It takes
// the room when it does.
func (m *members) roomLocked(r *unconfirmedRoom, from peer.ID) bool {
	if r.counts == nil {
		r.counts, r.via = map[string]int{}, m.peerSubnet(from)
		for _, x := range m.byID {
			if !x.seen {
				r.counts[x.via]++
				r.total++
			}
		}
	}
	limit := m.o.cfg.MaxUnconfirmed
	if r.total >= limit || r.counts[r.via] >= max(1, limit/4) {
		return false
	}
	r.counts[r.via]++
	r.total++
	return true
}

// queueDialLocked asks warm to reach an unseen member, backing off while it
// cannot be reached.
func (m *members) queueDialLocked(mb *member, now time.Time) {
	if mb.seen || now.Before(mb.dialAt) {
		return
	}
	mb.backoff = min(max(2*mb.backoff, m.o.cfg.GossipInterval), 10*m.o.cfg.GossipInterval)
	mb.dialAt = now.Add(mb.backoff)
	select {
	case m.dials <- mb.id:
	default: // queue full: retried after the backoff
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

func (m *members) isSeen(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	mb := m.byID[p]
	return mb != nil && mb.seen
}

// markSeen records that p was reached directly.
func (m *members) markSeen(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.markSeenLocked(p) {
		m.refreshLocked(time.Now())
	}
}

func (m *members) markSeenLocked(p peer.ID) bool {
	if mb := m.byID[p]; mb != nil && !mb.seen {
		mb.seen = true
		m.subnetLocked(mb)
		return true
	}
	return false
}

// subnetLocked returns the subnet of the address mb was reached at,
// learning it from a current connection; until one is known, that of the
// first address it announced (a member never escapes the cap by having
// none).
func (m *members) subnetLocked(mb *member) string {
	if mb.subnet != "" {
		return mb.subnet
	}
	// The address it was reached at. A connection from an address it
	// does not announce (a dial that could not reuse its listen port
	// goes out from the host's default address) counts, but is not
	// cached: a later connection may come from what it announced. It
	// is still where the member really is, so announcing addresses in
	// another subnet escapes nothing.
	first := ""
	for _, c := range m.o.host.Network().ConnsToPeer(mb.id) {
		ip, err := manet.ToIP(c.RemoteMultiaddr())
		if err != nil {
			continue
		}
		if announces(mb, ip) {
			mb.subnet = subnetOf(ip)
			return mb.subnet
		}
		if first == "" {
			first = subnetOf(ip)
		}
	}
	if first != "" {
		return first
	}
	for _, a := range mb.addrs {
		if ip, err := manet.ToIP(a); err == nil {
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

// capSubnets applies MaxPerSubnet to the candidate live set: per subnet,
// the members with the lowest peer IDs (this node first in its own), so
// nodes that see the same members keep the same ones. A Sybil attacker
// must then hold addresses in many subnets, not many keys.
// announces reports whether ip is one of mb's announced addresses.
func announces(mb *member, ip net.IP) bool {
	for _, a := range mb.addrs {
		if aip, err := manet.ToIP(a); err == nil && aip.Equal(ip) {
			return true
		}
	}
	return false
}

func (m *members) capSubnets(live map[peer.ID]bool) {
	limit := m.o.cfg.MaxPerSubnet
	if limit <= 0 {
		return
	}
	bySubnet := map[string][]peer.ID{}
	for id := range live {
		if mb := m.byID[id]; mb != nil {
			sn := m.subnetLocked(mb)
			bySubnet[sn] = append(bySubnet[sn], id)
		}
	}
	for sn, ids := range bySubnet {
		keep := limit
		if sn != "" && sn == m.selfSubnet() {
			keep-- // this node takes one place in its own subnet
		}
		if len(ids) <= keep {
			continue
		}
		slices.Sort(ids)
		for _, id := range ids[max(keep, 0):] {
			delete(live, id)
		}
	}
}

func (m *members) selfSubnet() string {
	for _, a := range m.o.host.Addrs() {
		if ip, err := manet.ToIP(a); err == nil {
			return subnetOf(ip)
		}
	}
	return ""
}

// refreshLocked recomputes liveness, purges long-dead members and notifies
// subscribers when the live set changed.
// refresh recomputes the live view now.
func (m *members) refresh() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refreshLocked(time.Now())
}

func (m *members) refreshLocked(now time.Time) {
	fail := m.failAfterLocked()
	changed := false
	live := map[peer.ID]bool{}
	for id, mb := range m.byID {
		if mb.seen && !mb.left && now.Sub(mb.updated) < fail && now.After(mb.suspect) {
			live[id] = true
		}
		if !mb.seen && !mb.left {
			m.queueDialLocked(mb, now)
		}
	}
	m.capSubnets(live)
	for id, mb := range m.byID {
		if live[id] != mb.live {
			mb.live, changed = live[id], true
		}
		if !mb.live && now.Sub(mb.updated) > 10*fail || !mb.seen && !mb.added.IsZero() && now.Sub(mb.added) > 2*fail {
			delete(m.byID, id) // long dead, or never reached: room for others
		}
	}
	if serving := m.o.serving(); serving != m.selfServing {
		m.selfServing, changed = serving, true
	}
	if !changed {
		return
	}
	view := m.selfView()
	for _, mb := range m.byID {
		if mb.live {
			view = append(view, liveMember{id: mb.id, kid: mb.kid})
		}
	}
	m.live = view
	m.notifyLocked()
}

func (m *members) notifyLocked() {
	for ch := range m.subs {
		select {
		case *ch <- struct{}{}:
		default:
		}
	}
}

// failAfterLocked is the failure timeout: the configured one, but at least
// 3·log2(N) gossip rounds, since a heartbeat needs about log2(N) rounds to
// reach everyone and a timeout near that makes live members flap.
func (m *members) failAfterLocked() time.Duration {
	rounds := 3 * bits.Len(uint(len(m.byID)+1))
	return max(m.o.cfg.FailAfter, time.Duration(rounds)*m.o.cfg.GossipInterval)
}

func (m *members) suspect(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mb := m.byID[p]; mb != nil {
		mb.suspect = time.Now().Add(m.failAfterLocked())
		m.refreshLocked(time.Now())
	}
}

// forget drops p from the view (a peer the federation refused).
func (m *members) forget(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byID[p]; ok {
		delete(m.byID, p)
		m.live = slices.DeleteFunc(slices.Clone(m.live), func(lm liveMember) bool { return lm.id == p })
		m.notifyLocked()
	}
}

func (m *members) alive(p peer.ID) bool {
	if p == m.self {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mb := m.byID[p]
	return mb != nil && mb.live
}

func (m *members) list() []peer.ID {
	m.mu.Lock()
	live := m.live
	m.mu.Unlock()
	out := make([]peer.ID, len(live))
	for i, lm := range live {
		out[i] = lm.id
	}
	return out
}

// suspected returns the n members nearest key that this node suspects but
// whose heartbeats are still current: left out of closest only because a
// dial from here failed a moment ago (a node restarted since is among
// them).
func (m *members) suspected(key kb.ID, n int) []peer.ID {
	now := time.Now()
	m.mu.Lock()
	fail := m.failAfterLocked()
	var cands []liveMember
	for _, mb := range m.byID {
		if mb.seen && !mb.left && now.Sub(mb.updated) < fail && !now.After(mb.suspect) {
			cands = append(cands, liveMember{id: mb.id, kid: mb.kid})
		}
	}
	m.mu.Unlock()
	return nearest(cands, key, n)
}

func (m *members) closest(key kb.ID, n int) []peer.ID {
	m.mu.Lock()
	live := m.live
	m.mu.Unlock()
	return nearest(live, key, n)
}

// nearest returns the ids of the n members of live nearest key.
func nearest(live []liveMember, key kb.ID, n int) []peer.ID {
	type cand struct {
		id peer.ID
		d  [32]byte
	}
	best := make([]cand, 0, n+1)
	var d [32]byte
	for _, lm := range live {
		xorInto(&d, lm.kid, key)
		if len(best) == n && bytes.Compare(d[:], best[n-1].d[:]) >= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(best, d, func(c cand, t [32]byte) int { return bytes.Compare(c.d[:], t[:]) })
		best = slices.Insert(best, i, cand{lm.id, d})
		if len(best) > n {
			best = best[:n]
		}
	}
	out := make([]peer.ID, len(best))
	for i, c := range best {
		out[i] = c.id
	}
	return out
}

// xorInto sets d to the XOR distance of two kad IDs (SHA-256 sized; a
// shorter ID is zero-padded).
func xorInto(d *[32]byte, a, b []byte) {
	*d = [32]byte{}
	for i := range min(len(a), len(b), 32) {
		d[i] = a[i] ^ b[i]
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

// leave announces departure to a few live members.
func (m *members) leave(ctx context.Context) {
	if !m.o.serving() {
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		return
	}
	m.mu.Lock()
	m.hb.ctr++
	var targets []peer.ID
	for _, lm := range m.live {
		if lm.id != m.self {
			targets = append(targets, lm.id)
		}
	}
	m.rng.Shuffle(len(targets), func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })
	if len(targets) > 4 {
		targets = targets[:4]
	}
	msg := appendRaw(nil, m.selfEntryLocked(true))
	m.closed = true
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range targets {
		wg.Add(1)
		go func(p peer.ID) {
			defer wg.Done()
			s, err := m.o.routed.NewStream(ctx, p, m.o.membersProtocol())
			if err != nil {
				return
			}
			if dl, ok := ctx.Deadline(); ok {
				_ = s.SetDeadline(dl)
			}
			if WriteFrame(s, msg) != nil {
				s.Reset()
				return
			}
			_, _ = ReadFrame(bufio.NewReader(s), maxGossipFrame)
			s.Close()
		}(p)
	}
	wg.Wait()
}
