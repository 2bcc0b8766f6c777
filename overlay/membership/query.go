package membership

import (
	"bytes"
	"cmp"
	"container/heap"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"time"
)

// Joined reports whether an answer to Join has arrived.
func (m *Membership) Joined() bool {
	return m.v.n > 1 || m.joinFrom != "" && m.v.n > 0 && !m.cfg.Serve || !m.joinedAt.IsZero()
}

// Alive reports whether id is live in this view.
func (m *Membership) Alive(now time.Time, id string) bool {
	r := m.v.get(hashOf(KeyID(id)))
	return r != nil && r.e.ID == id && m.ok(r, now)
}

// ok: r is live and within its group's cap.
func (m *Membership) ok(r *rec, now time.Time) bool {
	if !r.live(now) {
		return false
	}
	if m.cfg.MaxPerGroup <= 0 || m.cfg.AddrGroup == nil {
		return true
	}
	if m.capped == nil || m.cappedAt != m.version {
		m.recap(now)
	}
	return !m.capped[r.h]
}

// recap recomputes which live members are over their group's cap.
func (m *Membership) recap(now time.Time) {
	m.capped, m.cappedAt = map[uint64]bool{}, m.version
	groups := map[string][]*rec{}
	m.v.each(func(r *rec) bool {
		if r.live(now) {
			g := m.cfg.AddrGroup(r.e)
			groups[g] = append(groups[g], r)
		}
		return true
	})
	for _, rs := range groups {
		if len(rs) <= m.cfg.MaxPerGroup {
			continue
		}
		slices.SortFunc(rs, func(a, b *rec) int {
			switch {
			case a.h == m.selfH:
				return -1
			case b.h == m.selfH:
				return 1
			}
			return strings.Compare(a.e.ID, b.e.ID)
		})
		for _, r := range rs[m.cfg.MaxPerGroup:] {
			m.capped[r.h] = true
		}
	}
}

// Entry returns id's latest entry, if the view holds one.
func (m *Membership) Entry(id string) *Entry {
	if r := m.v.get(hashOf(KeyID(id))); r != nil && r.e.ID == id {
		return r.e
	}
	return nil
}

// Each calls f with the entry of every live member (this node included
// when it serves) until f returns false.
func (m *Membership) Each(now time.Time, f func(e *Entry) bool) {
	m.v.each(func(r *rec) bool {
		if m.ok(r, now) {
			return f(r.e)
		}
		return true
	})
}

// summary returns the live members' count and announced services,
// gathered again only when the view has changed or the time has come when
// a member's liveness changes with time alone (a probation or a local
// suspicion ends: sumNext). Every lookup and registration sizes its quorum
// by the count, the proxy asks the services on every request, and a node's
// warm loop asks the count each second: a walk of the view each time cost
// 0.6 ms at 10 000 members, and an idle node's CPU grew with the view.
func (m *Membership) summary(now time.Time) liveSummary {
	if m.sumAt.IsZero() || m.sumVer != m.version || !now.Before(m.sumNext) || now.Before(m.sumAt) {
		sum := liveSummary{services: map[string][]string{}}
		next := now.Add(time.Hour)
		m.v.each(func(r *rec) bool {
			if !r.candidate() {
				return true
			}
			for _, t := range [2]time.Time{r.until, r.local} {
				if now.Before(t) && t.Before(next) {
					next = t
				}
			}
			if m.ok(r, now) {
				sum.n++
				if len(r.e.Services) > 0 {
					sum.services[r.e.ID] = r.e.Services
				}
			}
			return true
		})
		m.sum, m.sumVer, m.sumAt, m.sumNext = sum, m.version, now, next
	}
	return m.sum
}

// LiveCount is len(Live(now)) without the list.
func (m *Membership) LiveCount(now time.Time) int { return m.summary(now).n }

// Announced returns the live members' announced services by id, which
// the caller must not modify (see summary).
func (m *Membership) Announced(now time.Time) map[string][]string {
	return m.summary(now).services
}

// Live returns the ids of the live members.
func (m *Membership) Live(now time.Time) []string {
	var out []string
	m.Each(now, func(e *Entry) bool { out = append(out, e.ID); return true })
	return out
}

// Suspect keeps id out of Closest for LocalSuspect (a dial from here
// failed); it tells no one.
func (m *Membership) Suspect(now time.Time, id string) {
	h := hashOf(KeyID(id))
	if r := m.v.get(h); r != nil && r.e.ID == id && id != m.cfg.Self {
		r = m.v.mut(h)
		r.local = now.Add(m.cfg.LocalSuspect)
		heap.Push(&m.probQ, timer{at: r.local, h: h, kind: 1})
		m.version++
	}
}

// Forget drops id from the view (a peer the federation refused).
func (m *Membership) Forget(id string) {
	h := hashOf(KeyID(id))
	if r := m.v.get(h); r != nil && r.e.ID == id && id != m.cfg.Self {
		wasCand := r.candidate()
		m.v.undigest(m.v.mut(h))
		m.v.del(h)
		delete(m.suspects, h)
		m.leaveProb(h)
		if wasCand {
			m.ringDel(h)
		}
		m.version++
	}
}

// Closest returns up to n live members nearest kid under the XOR metric,
// nearest first; none if kid is outside a partial view's region (Covers).
func (m *Membership) Closest(now time.Time, kid [32]byte, n int) []string {
	return m.nearest(kid, n, func(r *rec) bool { return m.ok(r, now) })
}

// Suspected returns up to n members nearest kid that suspicion keeps out
// of Closest: this node's own (Suspect), or a confirmed accusation not yet
// refuted here (the member may be back already, its refutation still on the way).
// Members on probation are not among them.
func (m *Membership) Suspected(now time.Time, kid [32]byte, n int) []string {
	return m.nearest(kid, n, func(r *rec) bool {
		return !r.e.Left && r.h != m.selfH && !now.Before(r.until) && !m.ok(r, now) &&
			(r.acc != nil || now.Before(r.local))
	})
}

// nearest returns the ids of the n records nearest kid (XOR of Kademlia
// IDs) for which ok holds, nearest first. It widens a block of the index
// (the records that share the key's first L bits, L from the longest
// prefix any record shares down) until the block holds n records ok
// takes: every record in the block is nearer the key than any outside
// it, so the n nearest of the block are the answer. The cost is a few
// binary searches and the block's records, not the view's size (a scan of
// the view took 0.3 ms at 10 000 members, for every lookup and
// registration).
func (m *Membership) nearest(kid [32]byte, n int, ok func(*rec) bool) []string {
	if n <= 0 || !m.Covers(kid) {
		return nil // a partial view knows nothing of the key's neighbours
	}
	idx := m.v.index()
	k0 := kprefix(kid)
	pos, _ := slices.BinarySearchFunc(idx, k0, func(e idxEnt, k uint64) int { return cmp.Compare(e.k, k) })
	// The longest prefix a record shares with the key: blocks longer
	// than that are empty.
	l := 0
	if pos < len(idx) {
		l = bits.LeadingZeros64(idx[pos].k ^ k0)
	}
	if pos > 0 {
		l = max(l, bits.LeadingZeros64(idx[pos-1].k^k0))
	}
	lo, hi, found := pos, pos, 0
	count := func(from, to int) {
		for _, e := range idx[from:to] {
			if r := m.v.get(e.h); r != nil && ok(r) {
				found++
			}
		}
	}
	for ; ; l-- {
		first, last := k0, k0 // the block of prefix length l: [first, last]
		if l < 64 {
			mask := ^uint64(0) >> l
			first, last = k0&^mask, k0|mask
		}
		nlo := sort.Search(lo, func(i int) bool { return idx[i].k >= first })
		nhi := hi + sort.Search(len(idx)-hi, func(i int) bool { return idx[hi+i].k > last })
		count(nlo, lo)
		count(hi, nhi)
		lo, hi = nlo, nhi
		if found >= n || l == 0 {
			break
		}
	}
	type cand struct {
		id string
		d  [32]byte
	}
	best := make([]cand, 0, min(n, found)+1)
	for _, e := range idx[lo:hi] {
		r := m.v.get(e.h)
		if r == nil || !ok(r) {
			continue
		}
		var d [32]byte
		for i := range d {
			d[i] = r.kid[i] ^ kid[i]
		}
		if len(best) == n && bytes.Compare(d[:], best[n-1].d[:]) >= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(best, d, func(c cand, t [32]byte) int { return bytes.Compare(c.d[:], t[:]) })
		best = slices.Insert(best, i, cand{r.e.ID, d})
		if len(best) > n {
			best = best[:n]
		}
	}
	out := make([]string, len(best))
	for i, c := range best {
		out[i] = c.id
	}
	return out
}

// Freeze returns this node's view as a Snapshot others can start from.
// Every entry in it counts as settled (out of probation, in the digest).
func (m *Membership) Freeze() *Snapshot {
	s := &Snapshot{recs: map[uint64]*rec{}, region: m.region}
	m.v.each(func(r *rec) bool {
		c := *r
		c.until, c.local, c.digested = time.Time{}, time.Time{}, c.contribution()
		c.confirmed = true
		s.recs[c.h] = &c
		s.digests[bucketOf(c.h)] ^= c.digested
		return true
	})
	s.n = len(s.recs)
	return s
}

// Suspicion tells who accused id's current incarnation in this view (the
// first accuser, then a confirming one), when the first did, and whether
// that accusation was spread; no accusers if none stands.
func (m *Membership) Suspicion(id string) (accusers []string, at time.Time, spread bool) {
	r := m.v.get(hashOf(KeyID(id)))
	if r == nil || r.e.ID != id || r.acc == nil {
		return nil, time.Time{}, false
	}
	accusers = []string{r.acc.Accuser}
	if r.acc2 != nil {
		accusers = append(accusers, r.acc2.Accuser)
	}
	return accusers, unixTime(r.acc.Time), r.pub() != kindAlive
}

// State describes id in this view: "live", "probation", "suspect",
// "dead", "left", "suspected-here" (Suspect), "capped" (over
// MaxPerGroup) or "unknown".
func (m *Membership) State(now time.Time, id string) string {
	r := m.v.get(hashOf(KeyID(id)))
	switch {
	case r == nil || r.e.ID != id:
		return "unknown"
	case r.e.Left:
		return "left"
	case r.dead:
		return "dead"
	case r.acc2 != nil:
		return "suspect" // a lone accusation leaves it live
	case now.Before(r.until):
		return "probation"
	case now.Before(r.local):
		return "suspected-here"
	case !m.ok(r, now):
		return "capped"
	}
	return "live"
}
