package membership

import (
	"fmt"
	"time"
)

// Partial views (issue 17's second size regime). A node whose full view
// would cost more than it can afford keeps a region: the members whose id
// hash starts with the same RegionBits bits as its own. Under the XOR
// metric a region is a closed ball: the members nearest any key inside it
// are inside it too (if it holds that many), so Closest stays exact for
// every key of the region, the keys this node holds replicas of among
// them; keys elsewhere are found by kad-dht's routing (overlay).
//
// A region costs O(changes within it): the rings, the flood and probing
// run over the members of the view, so inside the region; a peer tells
// the region it shares in its probes (field 3), and a node announces to a
// peer, compares digests with it and answers its syncs only within the
// regions both hold. A full view is the region of 0 bits, which the wire
// leaves out, so full views speak exactly the protocol they spoke before.
// A region is a union of anti-entropy buckets (at most 6 bits), so the
// digests that anti-entropy keeps per bucket serve any region.

// maxRegionBits: a region is at least one anti-entropy bucket.
const maxRegionBits = 6

// region is the part of the id-hash space whose first bits equal prefix;
// bits 0 is all of it.
type region struct {
	bits   uint8
	prefix uint64
}

// regionOf is the region of bits containing id hash h.
func regionOf(h uint64, bits int) region {
	if bits <= 0 {
		return region{}
	}
	return region{uint8(bits), h >> (64 - bits)}
}

func (g region) has(h uint64) bool { return g.bits == 0 || h>>(64-g.bits) == g.prefix }

// covers reports whether g holds all of o.
func (g region) covers(o region) bool {
	return g.bits <= o.bits && (g.bits == 0 || o.prefix>>(o.bits-g.bits) == g.prefix)
}

// meet is the smaller of two nested regions; ok is false for disjoint
// ones (regions either nest or do not meet).
func meet(a, b region) (g region, ok bool) {
	switch {
	case a.covers(b):
		return b, true
	case b.covers(a):
		return a, true
	}
	return region{}, false
}

// mask is the set of anti-entropy buckets g is made of.
func (g region) mask() uint64 {
	if g.bits == 0 {
		return ^uint64(0)
	}
	n := uint(1) << (maxRegionBits - g.bits)
	return (uint64(1)<<n - 1) << (g.prefix << (maxRegionBits - g.bits))
}

// wire is g as field 3 of a probe, sync or join: prefix and bits in one
// varint, 0 for the whole space.
func (g region) wire() uint64 { return g.prefix<<3 | uint64(g.bits) }

func regionFromWire(x uint64) (region, error) {
	bits, prefix := x&7, x>>3
	if bits > maxRegionBits || prefix >= 1<<bits {
		return region{}, bad("region %d", x)
	}
	return region{uint8(bits), prefix}, nil
}

// shared is the region this node and p both hold: p's as it last told,
// this node's own while p has not. ok is false when they do not meet.
func (m *Membership) shared(p string) (region, bool) {
	if ps := m.peers[p]; ps != nil && ps.told {
		return meet(m.region, ps.region)
	}
	if r := m.v.get(hashOf(KeyID(p))); r != nil && r.e.ID == p && r.e.Region > 0 {
		return meet(m.region, regionOf(r.h, r.e.Region)) // as its entry says
	}
	return m.region, true
}

// learnRegion records the region a peer's message came with (a probe, a
// sync or a join): its own, or the part of it this node shares.
func (m *Membership) learnRegion(now time.Time, p string, g region) {
	ps := m.peer(now, p)
	ps.region, ps.told = g, true
}

// digestOf is the view's stable digest over g, which the view must cover.
func (v *view) digestOf(g region) uint64 {
	var d uint64
	mask := g.mask()
	for i, x := range v.digests {
		if mask&(1<<i) != 0 {
			d ^= x
		}
	}
	return d
}

// Region returns the view's region as its bits and the prefix of them.
func (m *Membership) Region() (bits int, prefix uint64) { return int(m.region.bits), m.region.prefix }

// Covers reports whether the view holds the region of kid's id hash, so
// Closest is exact for it.
func (m *Membership) Covers(kid [32]byte) bool { return m.region.has(hashOf(kid)) }

// Within returns the part of s inside the region of bits around id's
// hash: what a partial view starts from (a simulator builds one per
// region, shared by the nodes in it).
func (s *Snapshot) Within(id string, bits int) *Snapshot {
	if bits < 0 || bits > maxRegionBits {
		return s
	}
	g := regionOf(hashOf(KeyID(id)), bits)
	if s.region.covers(g) && g.covers(s.region) {
		return s
	}
	out := &Snapshot{recs: map[uint64]*rec{}, region: g}
	for h, r := range s.recs {
		if g.has(h) {
			out.recs[h] = r
			out.digests[bucketOf(h)] ^= r.digested
		}
	}
	out.n = len(out.recs)
	return out
}

// probeTo is a ping or ack to p with this node's digest over the region
// both hold (none if they share nothing).
func (m *Membership) probeTo(typ byte, seq uint64, p string) []byte {
	g, ok := m.shared(p)
	if !ok {
		return appendTakesNews(encodeProbe(typ, seq, 0))
	}
	return appendTakesNews(appendRegion(encodeProbe(typ, seq, m.v.digestOf(g)), g))
}

// Knows reports whether id is in the view (in any state), or is this node.
func (m *Membership) Knows(id string) bool { return m.known(id) }

// Merge asks p, a member of this node's region (the whole overlay for a
// full view) that the view does not hold (found by the overlay's
// routing, or a bootstrap peer: Heal), for its view of the region, as a join
// asks, and tells it of this node: two parts that joined apart (each
// through members that did not know the other), or that a partition kept
// apart until each purged the other, merge. The answer is a third
// party's word: its members are on probation.
func (m *Membership) Merge(now time.Time, p string) {
	if m.region.has(hashOf(KeyID(p))) && !m.known(p) {
		m.join(now, p, joinUntrusted)
	}
}

// SetRegion changes the region this view keeps (bits 0: the full view).
// A serving node announces the change (a new incarnation: the other views
// move it on or off their rings). A narrower region forgets the members
// outside it at once; a wider one is filled by asking from, a member whose
// view holds it, as a join asks.
func (m *Membership) SetRegion(now time.Time, bits int, from string) error {
	if bits < 0 || bits > maxRegionBits {
		return fmt.Errorf("membership: region of %d bits (0 to %d)", bits, maxRegionBits)
	}
	g := regionOf(m.selfH, bits)
	if g == m.region {
		return nil
	}
	m.now = now
	wider := g.covers(m.region)
	m.region = g
	m.cfg.RegionBits = bits
	var drop []uint64
	clear(m.offRing)
	m.v.each(func(r *rec) bool {
		switch {
		case !g.has(r.h):
			drop = append(drop, r.h)
		case !m.ringable(r):
			m.offRing[r.h] = struct{}{}
		}
		return true
	})
	for _, h := range drop {
		m.v.undigest(m.v.mut(h))
		m.v.del(h)
		delete(m.suspects, h)
		m.leaveProb(h)
		delete(m.pending, h)
		delete(m.recheck, h)
	}
	for j := 0; j < m.cfg.Rings; j++ {
		m.rescan(j)
	}
	m.version++
	if m.cfg.Serve {
		m.raise(now)
		if err := m.announce(now); err != nil {
			return err
		}
	}
	if from == "" {
		from = m.joinFrom
	}
	if wider && from != "" {
		m.join(now, from, joinUntrusted)
	}
	return nil
}
