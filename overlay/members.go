package overlay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
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
	updated  time.Time // when hb last advanced
	suspect  time.Time // excluded from the live set until then
	live     bool      // last computed liveness
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
	services []string     // this node's announced services
	live     []liveMember // snapshot, replaced on change
	subs     map[*chan struct{}]struct{}
	rng      *rand.Rand
	closed   bool
	dials    chan peer.ID // newly seen members to connect to
}

func newMembers(o *Overlay) *members {
	m := &members{
		o:     o,
		self:  o.host.ID(),
		byID:  map[peer.ID]*member{},
		hb:    heartbeat{inc: uint64(time.Now().UnixNano())},
		subs:  map[*chan struct{}]struct{}{},
		rng:   rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		dials: make(chan peer.ID, 1024),
	}
	m.live = []liveMember{{id: m.self, kid: kb.ConvertPeerID(m.self)}}
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
		if len(net.Peers()) >= low || net.Connectedness(p) == network.Connected {
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
			if m.o.host.Connect(dctx, peer.AddrInfo{ID: p}) == nil && m.o.admit != nil {
				_ = m.o.admit.admit(dctx, p) // a non-member leaves the view now, not on first use
			}
		}()
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
	return m.merge(b)
}

func (m *members) handle(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(m.o.cfg.FailAfter))
	b, err := ReadFrame(bufio.NewReader(s), maxGossipFrame)
	if err != nil {
		s.Reset()
		return
	}
	if err := m.merge(b); err != nil {
		m.o.cfg.Logger.Debug("bad gossip", "peer", s.Conn().RemotePeer(), "err", err)
		s.Reset()
		return
	}
	_ = WriteFrame(s, m.encode())
}

// Wire format (protobuf encoding): repeated field 1 = member
// {1: peer id bytes, 2: incarnation, 3: counter, 4: repeated multiaddr bytes, 5: left,
// 6: repeated service (RFC 6940's TURN-SERVICE idea: "turn:host:port?transport=udp")}.
func (m *members) encode() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []byte
	selfAddrs := m.o.host.Addrs()
	out = appendMember(out, m.self, m.hb, selfAddrs, false, m.services)
	for _, mb := range m.byID {
		out = appendMember(out, mb.id, mb.hb, mb.addrs, mb.left, mb.services)
	}
	return out
}

func appendMember(out []byte, id peer.ID, hb heartbeat, addrs []ma.Multiaddr, left bool, services []string) []byte {
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
	out = protowire.AppendTag(out, 1, protowire.BytesType)
	return protowire.AppendBytes(out, b)
}

type gossipEntry struct {
	id       peer.ID
	hb       heartbeat
	addrs    []ma.Multiaddr
	left     bool
	services []string
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
	var e gossipEntry
	for len(b) > 0 {
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

func (m *members) merge(b []byte) error {
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
	for _, e := range entries {
		if e.id == m.self || (m.o.admit != nil && m.o.admit.refusedNow(e.id)) {
			continue
		}
		mb := m.byID[e.id]
		if mb == nil {
			if e.left {
				continue
			}
			mb = &member{id: e.id, kid: kb.ConvertPeerID(e.id)}
			m.byID[e.id] = mb
			select {
			case m.dials <- e.id:
			default: // queue full: the member is reached on first use instead
			}
		} else if !e.hb.newer(mb.hb) {
			continue
		}
		mb.hb, mb.left, mb.updated = e.hb, e.left, now
		mb.services = e.services
		if len(e.addrs) > 0 {
			mb.addrs = e.addrs
			ps.AddAddrs(e.id, e.addrs, time.Hour)
		}
		if e.left {
			mb.suspect = time.Time{}
		}
	}
	m.refreshLocked(now)
	return nil
}

// refreshLocked recomputes liveness, purges long-dead members and notifies
// subscribers when the live set changed.
func (m *members) refreshLocked(now time.Time) {
	fail := m.failAfterLocked()
	changed := false
	for id, mb := range m.byID {
		live := !mb.left && now.Sub(mb.updated) < fail && now.After(mb.suspect)
		if live != mb.live {
			mb.live, changed = live, true
		}
		if !live && now.Sub(mb.updated) > 10*fail {
			delete(m.byID, id)
		}
	}
	if !changed {
		return
	}
	live := []liveMember{{id: m.self, kid: kb.ConvertPeerID(m.self)}}
	for _, mb := range m.byID {
		if mb.live {
			live = append(live, liveMember{id: mb.id, kid: mb.kid})
		}
	}
	m.live = live
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

func (m *members) closest(key kb.ID, n int) []peer.ID {
	m.mu.Lock()
	live := m.live
	m.mu.Unlock()
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
	msg := appendMember(nil, m.self, m.hb, nil, true, nil)
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
