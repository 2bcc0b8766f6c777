package membership

import (
	"slices"
	"time"
)

// News rides on other messages. A flush sends each flood target the news
// of the last FlushEvery in a msgHave of its own, and each message costs
// about 84 bytes of headers on the wire (overlay/sim's WireOverhead), more
// than the two or three announcements it carries. But a node talks to its
// flood targets between flushes anyway: they fetch what it announced (its
// msgUpdates answers their msgWant) and it probes them (they are its ring
// successors). Each such message takes the news gathered since the target
// was last told (fieldNews), and the next flush sends the target only
// what came after, nothing when nothing did. The news also reaches the
// target sooner than it would have waited for the flush.
//
// Only messages that are not deferrable carry news (a transport may drop a
// deferrable one after a failed dial), and only to peers whose probes said
// they read it (fieldTakesNews): an older node ignores the field, and would
// have to wait for its other announcers or anti-entropy.

// newsFor is the news in fresh for peer p: each member's last change,
// unless p told this node of it, within the region this node shares with p.
func (m *Membership) newsFor(p string, fresh []freshItem) []item {
	g, ok := m.shared(p)
	if !ok || len(fresh) == 0 {
		return nil
	}
	last := make(map[uint64]int, len(fresh))
	for i, f := range fresh {
		last[f.it.h] = i
	}
	var items []item
	for i, f := range fresh {
		if last[f.it.h] == i && f.from != p && g.has(f.it.h) {
			items = append(items, f.it)
		}
	}
	return items
}

// ride appends to msg, bound for p, the news p has not been told since the
// last flush, if p is a flood target that reads it. msg is not changed (it
// may be sent to others too).
func (m *Membership) ride(p string, msg []byte) []byte {
	if len(msg) == 0 || Deferrable(msg) || len(m.fresh) <= m.told[p] || len(m.fresh)-m.told[p] > maxRide {
		return msg // a long backlog (a merge) goes in haves, at the flush
	}
	if _, ok := m.floodSet[p]; !ok {
		return msg
	}
	if ps := m.peers[p]; ps == nil || !ps.news {
		return msg
	}
	items := m.newsFor(p, m.fresh[m.told[p]:])
	m.told[p] = len(m.fresh)
	if len(items) == 0 {
		return msg
	}
	m.stats.NewsRidden += uint64(len(items))
	return appendItemsAs(slices.Clip(msg), fieldNews, items)
}

// maxRide bounds the news one message carries.
const maxRide = 256

// takesNews records whether p's probe said it reads news on other
// messages (every probe says it: a peer whose last did not, an older
// version, gets its news in haves).
func (m *Membership) takesNews(now time.Time, p string, msg *message) {
	if ps := m.peers[p]; ps != nil {
		ps.news = msg.takesNews
	} else if msg.takesNews && m.syncsWith(p) {
		m.peer(now, p).news = true
	}
}

// seed pushes a change this node is the first to hold (its own entry or
// accusation, or a joiner's entry that the joiner sent it) at once and
// whole to its ring neighbours, which cannot hold it yet: the flood
// starts from them and this node, without waiting for a flush and a fetch.
// A flood's time to reach nearly every view is its start plus the log of
// the overlay's size over its growth rate, so starting from a handful of
// members a flush early saves most of a second at 10 000 members (make
// sim). In a large view (seedHops) the origin marks its seed with the
// hops it is to go on (fieldSeed; first true), and a neighbour that takes
// a change from it passes it on once to its own ring neighbours, with a
// hop fewer (relayFrom, relayHops): the flood starts from the members up
// to three ring hops from the origin (four for an entry: seedHopsOf),
// each a peer its sender talks to
// already (no dial), and those that hear it twice drop the copy unchecked
// (wants). A relaying neighbour is a third party, and floods the change
// as any. Each node seeds at most seedBurst of its own changes a Period
// and relays as many (apart, so relays cannot delay its own), so joins
// through one bootstrap member, or a member re-signing its entry, cost it
// at most eight messages per seed and 64 a Period, and a neighbour
// marking its messages seeds makes a node relay at most 64 a Period,
// each a change the node took as new (signed, and newer than its
// view's); a mark from anyone else is ignored (takeUpdates).
// A leave is sent to the neighbours by Leave itself.
func (m *Membership) seed(now time.Time, r *rec, first bool) {
	if !m.cfg.Serve || r.e.Left {
		return
	}
	accs := r.accs()
	at, hops := &m.seedAt, m.seedHopsOf(accs == nil)
	if !first {
		at, hops = &m.relayAt, m.relayHops
	}
	if floor := now.Add(-m.cfg.Period); at.Before(floor) {
		*at = floor
	}
	if !at.Before(now) {
		return // flooded as any change
	}
	*at = at.Add(m.cfg.Period / seedBurst)
	// An accusation goes without the entry it accuses: a neighbour
	// holding another incarnation could not take it anyway, and fetches
	// what the flood announces.
	msg := encodeUpdates(msgUpdates, [][]byte{r.e.Raw}, nil)
	if accs != nil {
		msg = encodeUpdates(msgUpdates, nil, accs)
	}
	msg = appendSeed(msg, hops-1)
	for _, p := range m.Neighbours() {
		if p == r.e.ID || !first && p == m.relayFrom {
			continue
		}
		if g, ok := m.shared(p); ok && g.has(r.h) {
			m.send(p, msg)
		}
	}
}

// maxSeedHops bounds Config.SeedHops.
const maxSeedHops = 4

// deepSeeds: a view of this many records or more seeds three hops deep
// (seedHops; entries four, seedHopsOf), and floods along two rings
// (floodRings).
const deepSeeds = 8192

// seedHops is Config.SeedHops, or by the view's size: each hop reaches
// about seven times the members the last did (ring neighbours, less the
// sender), and copies to members that hold a change already are bytes
// spent for nothing, so the seeds go as deep as keeps their reach (about
// 8^h) within a sixteenth of the view: in 300 members one hop already
// reaches a few percent, in 10 000 three reach about 300 (make sim: with
// four, duplicates cost a node 190 bytes a second more).
func (m *Membership) seedHops() int {
	if m.cfg.SeedHops > 0 {
		return m.cfg.SeedHops
	}
	h := 1
	for h < 3 && 16<<(3*(h+1)) <= m.v.n {
		h++
	}
	return h
}

// seedHopsOf is how many hops a seed goes: seedHops, and for an entry (a
// join, a new address, a refutation) one more in a view of deepSeeds
// records or more, unless Config.SeedHops is set. A join is live in a
// view only Probation after it came there (the sybil defence), and
// Probation cannot be shorter than an accusation takes to spread, so a
// join's time to reach 99% of views is its spread plus Probation: at
// 10 000 members 2.7 s (p50) to 4.4 s (p99) of spread plus 6 s. The
// accusations' spread is not held up that way (failures reached 99% of
// views in 5.7 s at p99). The fourth hop breaks seedHops' rule: an
// entry's seeds reach about a quarter of a view of 10 000 (2700 members,
// 3100 pushes, in a model of four random rings), but the members they
// reach need not fetch it, so the bytes rose 1.4% (doc.go). Entries and
// accusations share the relay budget, so a burst of joins leaves
// accusations to the flood sooner than before.
func (m *Membership) seedHopsOf(entry bool) int {
	h := m.seedHops()
	if entry && m.cfg.SeedHops == 0 && m.v.n >= deepSeeds {
		h++
	}
	return h
}

// seedBurst bounds the changes seeded in a Period.
const seedBurst = 8
