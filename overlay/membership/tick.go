package membership

import (
	"bytes"
	"container/heap"
	"math/bits"
	"time"
)

// Tick runs the node's timers: probes, suspicion and probation ends,
// digest and purge schedules, and flushes news to the neighbours. Call it
// often (a fifth of Period or so); it costs little when nothing is due.
func (m *Membership) Tick(now time.Time) {
	m.now = now
	m.expire(now)
	m.probeStep(now)
	m.probationStep(now)
	m.flush(now)
}

func (m *Membership) expire(now time.Time) {
	for {
		t, ok := m.probQ.due(now)
		if !ok {
			break
		}
		if t.kind == probCheck || t.kind == probFinal {
			r := m.v.get(t.h)
			switch {
			case r == nil || !m.unproven(r):
			case t.kind == probCheck && r.until.Equal(t.at.Add(m.cfg.Probation/4)):
				m.onProb[t.h] = probUnprobed // probed again, now (the earliest end)
			case t.kind == probFinal && r.until.Equal(t.at.Add(m.cfg.Probation/16)):
				m.extend(now, r)
			}
			continue
		}
		if t.kind != 1 {
			switch r := m.v.get(t.h); {
			case r == nil:
				m.leaveProb(t.h)
			case now.Before(r.until): // restarted or extended since
			default:
				// Not extended a sixteenth before (probFinal): it ends here.
				// Extending now would take back a member this node's
				// queries have held live since its end (until the Tick).
				m.leaveProb(t.h)
				if r.candidate() && t.h != m.selfH {
					if !r.confirmed {
						m.v.mut(t.h).confirmed = true
					}
					m.ringAdd(r)
				}
			}
		}
		m.version++
	}
	for h := range m.suspects {
		r := m.v.get(h)
		if r == nil || r.acc == nil {
			delete(m.suspects, h)
			continue
		}
		if !now.Before(r.deadline) {
			m.die(now, h, r)
		}
	}
	m.settle(now)
	m.expireSmall(now)
	m.recheckDead(now)
}

// settle brings the stable digest to the last whole Period before now: the
// versions stable by then go in (each replacing the last stable one's
// part) and tombstones due by then are purged. Settled on those
// boundaries, at each tick and before a probe's digest is compared or
// answered, two views that hold the same versions send and compare the
// same digest whatever their ticks' phases (settled at each tick, views a
// tick apart differed for the moments each change took to become stable
// in both: at a few changes a second, one neighbour's digest in three).
func (m *Membership) settle(now time.Time) {
	cut := now.Truncate(m.cfg.Period)
	for {
		t, ok := m.stableQ.due(cut)
		if !ok {
			break
		}
		// A version stable now replaces the last stable one's part of
		// the digest (kept while this one spread: two views hearing of a
		// change a second apart would otherwise differ that second, and
		// with a few changes a second always differ somewhere).
		if r := m.v.get(t.h); r != nil && r.e.Inc == t.inc && r.pub() == t.kind && r.digested != r.contribution() && !m.retired(cut, r) {
			m.v.digestIn(m.v.mut(t.h)) // not once retired (StableAfter past nine tenths of Tombstone)
		}
	}
	for {
		t, ok := m.purgeQ.due(cut)
		if !ok {
			break
		}
		if r := m.v.get(t.h); r != nil && r.e.Inc == t.inc && r.pub() == t.kind && t.h != m.selfH {
			if end := unixTime(r.eventTime()).Add(m.cfg.Tombstone); cut.Before(end) {
				// Retired (retireAt): out of the digest now, forgotten at
				// the end of its Tombstone.
				m.v.undigest(m.v.mut(t.h))
				heap.Push(&m.purgeQ, timer{at: end, h: t.h, inc: t.inc, kind: t.kind})
				continue
			}
			wasCand := r.candidate() // a loud lone suspect is live until it dies
			m.v.undigest(m.v.mut(t.h))
			m.v.del(t.h)
			delete(m.suspects, t.h)
			m.leaveProb(t.h)
			if wasCand {
				m.ringDel(t.h)
				m.version++
			}
		}
	}
}

// expireSmall drops stale relays and followers, retries lost fetches and
// takes deferred entries.
func (m *Membership) expireSmall(now time.Time) {
	m.retryEarly(now)
	for h, d := range m.deferred {
		r := m.v.get(h)
		switch {
		case r == nil || r.e.ID != d.e.ID || !newer(d.e.Inc, kindAlive, r.e.Inc, r.kind()):
			delete(m.deferred, h)
		case r.acc != nil || r.dead || !now.Before(r.changed.Add(m.cfg.SuspectTimeout)):
			delete(m.deferred, h)
			m.take(now, d.e, d.from, false)
		}
	}
	for s, rl := range m.relays {
		if now.Sub(rl.at) > m.cfg.Period {
			delete(m.relays, s)
		}
	}
	for p, at := range m.listeners {
		if now.Sub(at) > 3*m.cfg.Period {
			delete(m.listeners, p)
		}
	}
	for h, w := range m.pending {
		if now.Before(w.until) {
			continue
		}
		if len(w.alts) == 0 || !m.wants(w.it) {
			delete(m.pending, h)
			continue
		}
		// Lost on the way, or the peer is gone: ask another announcer.
		p := w.alts[0]
		w.alts, w.until = w.alts[1:], now.Add(m.timeout())
		it := m.asked(w.it)
		it.held = it.held && !w.full
		m.send(p, encodeWant([]item{it}))
	}
}

// goIndirect asks two neighbours to ping p's target (its ack through them
// counts, probe.acks).
func (m *Membership) goIndirect(p *probe) {
	p.indirect = true
	for _, q := range m.Neighbours() {
		if q != p.target && len(p.helpers) < 2 {
			m.send(q, encodePingReq(p.seq, p.target))
			p.helpers = append(p.helpers, q)
		}
	}
}

// probeStep pings the next ring successor each Period, asks two other
// neighbours to ping it when it does not answer, and accuses it when no
// ack came at all.
func (m *Membership) probeStep(now time.Time) {
	if p := m.probe; p != nil {
		if !p.indirect && !now.Before(p.sent.Add(m.probeTimeout(p))) {
			m.goIndirect(p)
		}
		if !now.Before(p.sent.Add(2 * m.probeTimeout(p))) {
			m.probe, m.failed = nil, p
			m.unwell()
			if m.cfg.Serve {
				m.accuse(now, p.target)
			}
		}
	}
	if m.probe != nil || now.Before(m.nextProbe) && m.urgent == "" {
		return
	}
	targets := m.successors()
	if !m.cfg.Serve && len(targets) > 1 {
		targets = targets[:1] // a client follows one member
	}
	urgent := m.urgent
	m.urgent = ""
	var t string
	period := m.cfg.Period * time.Duration(1+m.health)
	switch {
	case urgent != "" && contains(targets, urgent):
		t = urgent // another prober accused it: confirm or not, now
		m.urgentAt = now.Add(period)
	case now.Before(m.nextProbe) || len(targets) == 0:
		return
	default:
		m.probeIdx++
		t = targets[m.probeIdx%len(targets)]
		m.nextProbe = now.Add(period)
	}
	m.seq++
	ps, warm := m.peers[t]
	m.probe = &probe{target: t, seq: m.seq, sent: now, cold: !warm}
	if f := m.failed; f != nil && f.target == t {
		m.failed = nil // this probe tells
	}
	if warm {
		m.probe.rto = ps.rto()
	}
	m.send(t, m.probeTo(msgPing, m.seq, t))
}

// unproven: r is on probation in one of this node's gaps (so it is one of
// r's probers) and has not answered its probe in this probation yet. Its
// probation does not end here then, whatever the time: it is extended,
// and r probed again. Other views take it when its probation ends
// unaccused; a member that cannot be reached is accused by its probers
// (a pair, spread at once) within that time, since each probes it ahead
// of the members whose probations end later (probationStep).
func (m *Membership) unproven(r *rec) bool {
	if st, ok := m.onProb[r.h]; !ok || st == probAnswered || !m.cfg.Serve || !r.candidate() || r.h == m.selfH {
		return false // not on probation here (a timer of one ended), or answered
	}
	_, in := m.gapDistance(r)
	return in
}

// extend puts r on probation again here, and has it probed again: it is
// unproven a sixteenth of a probation before its end.
func (m *Membership) extend(now time.Time, r *rec) {
	r = m.v.mut(r.h)
	r.until = now.Add(m.cfg.Probation)
	m.probationTimers(r, 2)
	m.version++
}

// probationTimers schedules the end of r's probation (a timer of kind: 0
// for a new member, 2 when restarted or extended: they act alike) and a
// prober's two
// checks before it: a quarter of a probation before, unproven, it is
// probed again (it may have come into this node's gaps since it was
// passed over, or the probe been lost); a sixteenth before, still
// unproven, it is extended (its probers must not hold it live for as
// long as a Tick at the end). It has it probed (probationStep).
func (m *Membership) probationTimers(r *rec, kind uint8) {
	heap.Push(&m.probQ, timer{at: r.until, h: r.h, inc: r.e.Inc, kind: kind})
	heap.Push(&m.probQ, timer{at: r.until.Add(-m.cfg.Probation / 4), h: r.h, kind: probCheck})
	heap.Push(&m.probQ, timer{at: r.until.Add(-m.cfg.Probation / 16), h: r.h, kind: probFinal})
	m.onProb[r.h] = probUnprobed
}

// chargeProb counts member h, put on probation by what a peer of group g
// told, against MaxUnconfirmed and a quarter of it per group, for as long
// as it stays on probation (restarted or extended, leaveProb): false, and
// nothing changed, when over. One on probation already stays charged as it
// was. A group charged only until a member's first probation ended could
// keep its members on probation by re-signing them and add as many more
// each probation, and fill the view (one /24 kept every other member
// out, TestAttackJoinDenialOneGroup).
func (m *Membership) chargeProb(h uint64, g string) bool {
	if _, ok := m.probGroup[h]; ok {
		return true
	}
	limit := m.cfg.MaxUnconfirmed
	if len(m.probGroup) >= limit || m.unconf[g] >= max(1, limit/4) {
		m.stats.OverUnconfirmed++
		return false
	}
	m.probGroup[h] = g
	m.unconf[g]++
	return true
}

// leaveProb: h is on probation here no more.
func (m *Membership) leaveProb(h uint64) {
	delete(m.onProb, h)
	g, ok := m.probGroup[h]
	if !ok {
		return
	}
	delete(m.probGroup, h)
	m.unconf[g]--
	if m.unconf[g] <= 0 {
		delete(m.unconf, g)
	}
}

// probAnswered marks id, if on probation, answered in this probation.
func (m *Membership) probAnswered(id string) {
	h := hashOf(KeyID(id))
	if _, ok := m.onProb[h]; ok {
		m.onProb[h] = probAnswered
	}
}

// The kinds of a probation's checks (probationTimers).
const (
	probCheck = 3
	probFinal = 4
)

// maxProbProbes bounds the probes of members on probation started in any
// Probation/8.
const maxProbProbes = 16

// maxDeferred bounds the entries kept to take later (take).
const maxDeferred = 1024

// probationStep probes the members on probation in this node's gaps, once
// each probation (again when it is extended or restarted, or another
// prober accuses them, unless they answered), the one whose probation
// ends first first (not those accused: unreachable identities the
// attacker has accused, and refutes, would go ahead of the one they
// shield), beside the ring probes, one started each Period/16 and at most
// maxProbProbes in any Probation/8. A probe fails within Probation/8
// whatever the health score (later only for a target whose own acks were
// slow: it then no longer holds a place), so a pair of probers accuses an
// unreachable identity before the other views end its probation.
// Identities ground to sit right after this node cannot shield a later
// one from its probers by re-signing (each goes behind it); told before it
// and left alone, it takes about 6 × maxProbProbes of them in a prober's
// gaps. A failed probe accuses its target; it does not count against this
// node's health (an identity that never answers says nothing of this
// node's own speed). Toward the addresses identities claim it costs at
// most 8 probes a second, sustained (each a ping and two ping-reqs).
func (m *Membership) probationStep(now time.Time) {
	keep := m.probProbes[:0]
	for _, p := range m.probProbes {
		if !p.indirect && !now.Before(p.sent.Add(m.probationTimeout(p))) {
			m.goIndirect(p)
		}
		switch {
		case now.Before(p.sent.Add(2 * m.probationTimeout(p))):
			keep = append(keep, p)
		case m.cfg.Serve:
			m.accuse(now, p.target)
			if len(m.probLate) == maxProbProbes {
				m.probLate = m.probLate[1:]
			}
			m.probLate = append(m.probLate, p)
		}
	}
	clear(m.probProbes[len(keep):])
	m.probProbes = keep
	young := 0 // a probe holds a place for Probation/8 at most, whatever its target's rto
	for _, p := range m.probProbes {
		if now.Sub(p.sent) < m.cfg.Probation/8 {
			young++
		}
	}
	if !m.cfg.Serve || young >= maxProbProbes || now.Before(m.nextProbProbe) {
		return
	}
	var next *rec
	for h, st := range m.onProb {
		if st != probUnprobed {
			continue
		}
		r := m.v.get(h)
		if r == nil || !r.candidate() || h == m.selfH {
			m.onProb[h] = probProbed // nothing to learn (unproven looks again at its end)
			continue
		}
		if _, in := m.gapDistance(r); !in {
			m.onProb[h] = probProbed
			continue
		}
		if next == nil || r.until.Before(next.until) || r.until.Equal(next.until) && h < next.h {
			next = r
		}
	}
	if next == nil {
		return
	}
	m.onProb[next.h] = probProbed
	m.nextProbProbe = now.Add(m.cfg.Period / 16)
	m.seq++
	p := &probe{target: next.e.ID, seq: m.seq, sent: now, cold: true}
	if ps, ok := m.peers[p.target]; ok {
		p.cold, p.rto = false, ps.rto()
	}
	m.probProbes = append(m.probProbes, p)
	m.send(p.target, m.probeTo(msgPing, p.seq, p.target))
}

// probationTimeout is a probation probe's timeout (to go indirect, and
// again to fail): a ring probe's, at most Probation/16, but at least the
// target's rto (bounded as a ring probe's), which only its own acks
// raise: a member on a slow path is not accused on every probe.
func (m *Membership) probationTimeout(p *probe) time.Duration {
	return max(min(m.probeTimeout(p), m.cfg.Probation/16), min(p.rto, m.maxTimeout()))
}

// flushEvery is Config.FlushEvery, or by the view's size: a Period, and
// 5/4 of it in a view of deepSeeds records or more. There each change
// reaches every view, a few a second with churn, so nearly every flush has
// news to send and a longer one packs more of it per have (and per want
// and updates it draws): at 10 000 members with churn (make sim, 180 s
// window, one run each) 2034 -> 1958 bytes a second per node, 8.3 -> 7.3
// messages, for a change's spread: joins p99 8.14 -> 8.88 s, failures
// 6.69 -> 7.98 s (3/2 of a Period: 1922 bytes, 9.27 s and 8.91 s). In a
// smaller view a flush carries a change or two, and waiting longer
// saves little but slows every change.
func (m *Membership) flushEvery() time.Duration {
	switch {
	case m.cfg.FlushEvery > 0:
		return m.cfg.FlushEvery
	case m.v.n >= deepSeeds:
		return m.cfg.Period * 5 / 4
	}
	return m.cfg.Period
}

// flush announces what this node learnt since the last flush to its ring
// successors and followers, except to the peer it came from. The
// successors on a few random rings form a random directed graph of out
// degree FloodRings, which floods to everyone in O(log N) hops; each
// member hears of a change from about FloodRings predecessors and fetches
// it once.
func (m *Membership) flush(now time.Time) {
	if len(m.fresh) == 0 || now.Before(m.nextFlush) {
		return
	}
	m.nextFlush = now.Add(m.flushEvery())
	targets := m.floodTargets()
	for p := range m.listeners {
		if !contains(targets, p) { // a member on probation may follow this node still
			targets = append(targets, p)
		}
	}
	fresh := m.fresh
	m.fresh = nil // what is sent now rides on nothing more
	for _, p := range targets {
		items := m.newsFor(p, fresh[min(m.told[p], len(fresh)):])
		for len(items) > 0 {
			n := min(len(items), 4096)
			m.send(p, encodeItems(msgHave, items[:n]))
			items = items[n:]
		}
	}
	clear(m.told)
	clear(m.floodSet)
	for _, p := range targets {
		m.floodSet[p] = struct{}{}
	}
}

// Receive handles one message from peer from.
func (m *Membership) Receive(now time.Time, from string, b []byte) error {
	m.now = now
	m.stats.MsgsRecv++
	m.stats.BytesRecv += uint64(len(b))
	msg, err := decodeMessage(b)
	if err != nil {
		m.stats.BadMessages++
		return err
	}
	if msg.typ > msgPingReq && m.banned(now, from) {
		m.stats.Ignored++
		return nil
	}
	m.heard(from)
	defer m.tellAccused(now, from) // after the message: it may be the refutation
	if msg.typ == msgPing || msg.typ == msgAck {
		m.settle(now) // the digest it carries and the one it gets
		defer m.takesNews(now, from, msg)
	}
	switch msg.typ {
	case msgPing:
		if msg.digest != 0 && m.syncsWith(from) {
			m.learnRegion(now, from, msg.region)
		}
		m.send(from, m.probeTo(msgAck, msg.seq, from))
		if r := m.v.get(hashOf(KeyID(from))); m.cfg.Serve && (r == nil || r.e.ID != from) {
			if _, ok := m.listeners[from]; ok || len(m.listeners) < 64 {
				m.listeners[from] = now // a client following this node
			}
		}
		m.compare(now, from, msg.digest, msg.region)
	case msgAck:
		m.onAck(now, from, msg)
	case msgPingReq:
		if len(m.relays) < 64 && msg.target != m.cfg.Self {
			m.seq++
			m.relays[m.seq] = relay{requester: from, target: msg.target, seq: msg.seq, at: now}
			m.send(msg.target, appendTakesNews(encodeProbe(msgPing, m.seq, 0)))
		}
	case msgHave:
		m.onHave(now, from, msg.items)
	case msgWant:
		m.onWant(now, from, msg.items, msg.compactOK)
	case msgUpdates, msgSnapshot:
		// A join's answer is trusted (no probation) only from a peer
		// asked, while its join is pending; a widened region's (SetRegion)
		// never: it comes from a member that only says its view holds it.
		ask, asked := m.joins[from]
		answer := msg.typ == msgSnapshot && asked && now.Sub(ask.at) <= m.cfg.SyncEvery/2
		if answer && m.region.bits > 0 {
			m.joinedAt = now
		}
		trusted := ask.trust == joinTrusted || ask.trust == joinLatest && from == m.joinFrom
		m.takeUpdates(now, from, msg, answer && trusted)
	case msgJoin:
		m.onJoin(now, from, msg)
	case msgSync:
		m.onSync(now, from, msg)
	case msgSummary:
		m.onSummary(now, from, msg)
	case msgSubSync:
		m.onSubSync(now, from, msg)
	case msgAccuse:
		m.onAccuse(now, from, msg)
	}
	if len(msg.news) > 0 && !m.banned(now, from) {
		m.onHave(now, from, msg.news)
	}
	return nil
}

// takeUpdates takes a msgUpdates or msgSnapshot (onUpdates). What it
// takes from a ring neighbour's seed (fieldSeed), this node relays
// (seed): the hops left, never more than its own seeds go. Honest seeds
// only go between ring neighbours: anyone else's mark is ignored, so a
// stranger cannot start a tree of pushes, or spend the relays' budget.
func (m *Membership) takeUpdates(now time.Time, from string, msg *message, trusted bool) {
	if hops := min(msg.seed, uint64(m.seedHopsOf(len(msg.accs) == 0 && len(msg.compact) == 0)-1)); hops > 0 && msg.typ == msgUpdates && contains(m.Neighbours(), from) {
		m.relayFrom, m.relayHops = from, int(hops)
		defer func() { m.relayFrom, m.relayHops = "", 0 }()
	}
	m.onUpdates(now, from, msg, trusted)
}

// tellAccused sends a member this view holds accused or dead, and that
// is talking to this node (so it is up), its accusation to refute, at most
// once per SuspectTimeout. Its probers send it the accusation when they
// accept it, but that one message can be lost (a stream not opened under
// load), and digests leave accused members out, so without this a live
// member could stay dead here until its tombstone is purged.
func (m *Membership) tellAccused(now time.Time, from string) {
	if !m.cfg.Serve {
		return
	}
	r := m.v.get(hashOf(KeyID(from)))
	if r == nil || r.e.ID != from || r.pub() == kindAlive || r.e.Left {
		return
	}
	if !due(&m.peer(now, from).toldAcc, now, m.cfg.SuspectTimeout) {
		return
	}
	m.send(from, encodeUpdates(msgUpdates, [][]byte{r.e.Raw}, r.accs()))
}

func (m *Membership) onAck(now time.Time, from string, msg *message) {
	if rl, ok := m.relays[msg.seq]; ok && from == rl.target {
		delete(m.relays, msg.seq)
		m.send(rl.requester, appendTakesNews(encodeProbe(msgAck, rl.seq, 0)))
		return
	}
	for i, p := range m.probProbes {
		if p.seq == msg.seq && p.acks(from) {
			m.probProbes = append(m.probProbes[:i], m.probProbes[i+1:]...)
			m.sampleRTT(now, p, from)
			m.answered(p.target, false)
			m.probAnswered(p.target)
			break
		}
	}
	for i, p := range m.probLate {
		if p.seq == msg.seq && p.acks(from) {
			// Late (a slow path): its round trip goes into the target's
			// rto, and within the longest timeout it is an answer, this
			// node's accusation withdrawn if it has not spread (as a
			// ring probe's, onAck below).
			m.probLate = append(m.probLate[:i], m.probLate[i+1:]...)
			m.sampleRTT(now, p, from)
			if now.Sub(p.sent) <= 3*m.maxTimeout() { // it failed at 2 × its timeout, at most maxTimeout
				m.answered(p.target, true)
				m.probAnswered(p.target)
			}
			break
		}
	}
	if p := m.probe; p != nil && p.seq == msg.seq && p.acks(from) {
		m.probe = nil
		m.sampleRTT(now, p, from)
		m.health = max(m.health-1, 0)
		m.answered(p.target, false)
	}
	if p := m.failed; p != nil && p.seq == msg.seq && p.acks(from) {
		// A late ack (a slow path, or a busy machine, this one or the
		// target's): its round trip goes into the target's rto, so the
		// next probe waits long enough for it. Within the longest
		// timeout the target could get, it is as good as live: this
		// node's own accusation of it is withdrawn if it has not spread
		// (it was sent to the target's other probers, and stands there).
		// Later than that it is failing and the accusation stands: a
		// target that answers each probe just after it failed would
		// otherwise never be accused, and would hold this node's probes.
		m.failed = nil
		m.stats.LateAcks++
		m.sampleRTT(now, p, from)
		if now.Sub(p.sent) <= 2*m.maxTimeout() {
			m.answered(p.target, true)
		}
	}
	if msg.digest != 0 && m.syncsWith(from) {
		m.learnRegion(now, from, msg.region)
	}
	m.compare(now, from, msg.digest, msg.region)
}

// compare starts anti-entropy with a peer whose stable digest over region
// g has differed from ours on two exchanges in a row, at most once per
// SyncEvery. A digest over more than this view holds says nothing.
func (m *Membership) compare(now time.Time, from string, d uint64, g region) {
	if d == 0 || !m.syncsWith(from) || !m.region.covers(g) {
		return
	}
	ps := m.peer(now, from)
	if d == m.v.digestOf(g) {
		ps.mismatch = 0
		return
	}
	ps.mismatch++
	if ps.mismatch >= 2 && now.Sub(ps.lastSync) >= m.cfg.SyncEvery {
		ps.lastSync, ps.asked, ps.mismatch = now, now, 0
		m.stats.Syncs++
		m.send(from, encodeSync(&m.v.digests, g))
	}
}

// syncsWith: anti-entropy runs only with members of the view and the
// clients this node serves; anyone else could make it list its view.
func (m *Membership) syncsWith(p string) bool {
	if r := m.v.get(hashOf(KeyID(p))); r != nil && r.e.ID == p && !r.dead {
		return true
	}
	_, ok := m.listeners[p]
	return ok
}

func (m *Membership) peer(now time.Time, p string) *peerState {
	ps := m.peers[p]
	if ps == nil {
		if len(m.peers) > 256 {
			for q, s := range m.peers {
				if now.Sub(s.seen) > 10*m.cfg.SyncEvery {
					delete(m.peers, q)
				}
			}
		}
		ps = &peerState{}
		m.peers[p] = ps
	}
	ps.seen = now
	return ps
}

// wants reports whether it names something newer than the view holds.
func (m *Membership) wants(it item) bool {
	if !m.region.has(it.h) {
		return false
	}
	r := m.v.get(it.h)
	if r == nil {
		return it.kind == kindAlive
	}
	if it.kind == kindConfirmed && it.inc == r.e.Inc && r.pub() == kindSuspect && m.now.Sub(unixTime(r.acc.Time)) > m.cfg.LoneSuspect {
		// Held accused by one, whose accusation is too old to be
		// confirmed (confirms): the other's pair would be refused. A
		// joiner takes a pair older than LoneSuspect as one lone
		// accusation, and fetched it again at each exchange with a
		// view holding it confirmed: in the sim, half the items that
		// anti-entropy found differing after a 400 s warm-up.
		return false
	}
	return newer(it.inc, it.kind, r.e.Inc, r.pub())
}

// Bounds of what announcements make this node fetch: per message, and in
// flight.
const (
	maxWant    = 1024
	maxPending = 8192
)

func (m *Membership) onHave(now time.Time, from string, items []item) {
	var want []item
	for _, it := range items {
		if len(want) >= maxWant || len(m.pending) >= maxPending {
			break // the rest is announced again, or found by anti-entropy
		}
		if !m.wants(it) {
			continue
		}
		if w, ok := m.pending[it.h]; ok && !newer(it.inc, it.kind, w.it.inc, w.it.kind) {
			if len(w.alts) < 4 && !contains(w.alts, from) {
				w.alts = append(w.alts, from)
			}
			continue
		}
		m.pending[it.h] = &wanted{it: it, until: now.Add(m.timeout())}
		want = append(want, m.asked(it))
	}
	if len(want) > 0 {
		m.send(from, encodeWant(want))
	}
}

// asked is it as this node wants it: held when the view has the entry of
// that incarnation already (the news is an accusation: send just that).
func (m *Membership) asked(it item) item {
	r := m.v.get(it.h)
	it.held = r != nil && r.e.Inc == it.inc && it.kind != kindLeft
	return it
}

func (m *Membership) onWant(now time.Time, from string, items []item, compactOK bool) {
	b := batch{m: m, to: from, typ: msgUpdates, max: 512, compactOK: compactOK}
	sent := map[uint64]bool{}
	for _, it := range items[:min(len(items), maxWant)] {
		if r := m.v.get(it.h); r != nil && !sent[it.h] && !m.retired(now, r) {
			sent[it.h] = true
			if it.held && r.e.Inc == it.inc && r.accs() != nil {
				b.addAccs(r)
			} else {
				b.add(r)
			}
		}
	}
	b.flush()
}

// onUpdates takes the entries and accusations a peer sent. Members only
// pass on what they verified, so one bad signature shows the sender lies:
// the rest of the message is dropped and the sender banned (ban).
func (m *Membership) onUpdates(now time.Time, from string, msg *message, trusted bool) {
	m.answering = trusted
	defer func() { m.answering = false }()
	bad := m.stats.BadSignatures
	for _, raw := range msg.entries {
		e, err := DecodeEntry(raw)
		if err != nil {
			m.stats.BadMessages++
			continue
		}
		if m.offer(now, e, from, trusted); m.stats.BadSignatures != bad {
			m.ban(now, from)
			return
		}
	}
	accs := make([]*Accusation, 0, len(msg.accs))
	for _, raw := range msg.accs {
		a, err := DecodeAccusation(raw)
		if err != nil {
			m.stats.BadMessages++
			continue
		}
		accs = append(accs, a)
	}
	rebuilt := len(accs) // accs from here on were rebuilt from compact forms
	accs = m.expandCompact(from, msg.compact, accs)
	for i, a := range accs {
		// A confirmation travels right after the accusation it confirms
		// (rec.accs): the first of a member's pair carries the second.
		var with *Accusation
		if (i == 0 || accs[i-1].Subject != a.Subject) && i+1 < len(accs) && accs[i+1].Subject == a.Subject {
			with = accs[i+1]
		}
		if trusted && m.holdEarly(now, from, a, with) {
			continue
		}
		took := m.accept(now, a, with, from, true)
		h := hashOf(KeyID(a.Subject))
		if m.stats.BadSignatures != bad && i >= rebuilt {
			// Rebuilt from this view's ids: the sender's member at one of
			// those id hashes may be another identity (a collision ground
			// for the purpose), and the sender no liar. Asked in full.
			bad = m.stats.BadSignatures
			m.askFull(from, h)
			continue
		}
		if m.stats.BadSignatures != bad {
			m.ban(now, from)
			return
		}
		if w, ok := m.pending[h]; ok && (took || !m.wants(w.it)) {
			delete(m.pending, h) // an unchecked answer does not end the fetch
		}
	}
	if trusted && len(m.early) > 0 {
		m.retryEarly(now)
	}
}

// A join's answer comes in several messages (up to 1024 members each) that
// may arrive in any order, so an accusation can come before its accuser's
// entry. Taken then, it was not credible (its accuser not a member): the
// joiner held the accused member live with no tombstone, kept fetching its
// accusation from every neighbour's anti-entropy and refusing it, and once
// the other views purged the member, taught it to them as a new one: a dead
// member flooded back to the whole overlay. In the sim at 2000 members, six
// of them a minute after a 400 s warm-up. So a trusted answer's accusation
// (or pair) by an accuser this view does not hold yet waits (early) for the
// rest of the answer: at most maxEarly, for SuspectTimeout, and only of a
// member the view holds at the incarnation accused (its entry travels in
// the same message), copied out of the message that brought it.
type earlyAcc struct {
	a, with *Accusation
	by      [2]uint64 // the accusers' id hashes (0: none)
	from    string
	at      time.Time
}

const (
	maxEarly      = 1024
	maxEarlyBytes = 1024 // an accusation larger than this is not held
)

// holdEarly keeps a (with its confirmation, if any), from a trusted join
// answer, when an accuser is a stranger in this view's region, to take
// when the accusers' entries come (retryEarly). Only a trusted answer's:
// any peer's would let a stranger fill the list with made-up accusers
// (nothing here checks their signatures) and crowd a real answer out.
func (m *Membership) holdEarly(now time.Time, from string, a, with *Accusation) bool {
	stranger := func(x *Accusation) uint64 {
		if x == nil || m.known(x.Accuser) {
			return 0
		}
		return hashOf(KeyID(x.Accuser))
	}
	by := [2]uint64{stranger(a), stranger(with)}
	if by == [2]uint64{} || len(m.early) >= maxEarly || len(a.Raw) > maxEarlyBytes || with != nil && len(with.Raw) > maxEarlyBytes {
		return false
	}
	for _, h := range by {
		if h != 0 && !m.region.has(h) {
			return false // a stranger outside the region: credible judges it
		}
	}
	if r := m.v.get(hashOf(KeyID(a.Subject))); r == nil || r.e.ID != a.Subject || r.e.Inc != a.Inc {
		return false
	}
	e := earlyAcc{a: cloneAcc(a), with: cloneAcc(with), by: by, from: from, at: now}
	if e.a == nil || with != nil && e.with == nil {
		return false
	}
	m.early = append(m.early, e)
	return true
}

// cloneAcc is a copy of a that does not hold on to the message it came in.
func cloneAcc(a *Accusation) *Accusation {
	if a == nil {
		return nil
	}
	c, err := DecodeAccusation(bytes.Clone(a.Raw))
	if err != nil {
		return nil
	}
	return c
}

// retryEarly takes the early accusations whose accusers the view now
// holds, and drops those held SuspectTimeout: anti-entropy brings them.
// One with a bad signature shows its sender lies, as in onUpdates.
func (m *Membership) retryEarly(now time.Time) {
	held := func(h uint64, x *Accusation) bool {
		if h == 0 {
			return true
		}
		r := m.v.get(h)
		return r != nil && r.e.ID == x.Accuser
	}
	keep := m.early[:0]
	for _, e := range m.early {
		switch {
		case now.Sub(e.at) > m.cfg.SuspectTimeout:
		case held(e.by[0], e.a) && held(e.by[1], e.with):
			bad := m.stats.BadSignatures
			was := m.answering
			m.answering = true // from a trusted answer
			m.accept(now, e.a, e.with, e.from, true)
			m.answering = was
			if m.stats.BadSignatures != bad {
				m.ban(now, e.from)
			}
		default:
			keep = append(keep, e)
		}
	}
	clear(m.early[len(keep):])
	m.early = keep
}

// expandCompact appends to accs the compact accusations (compactAcc) of
// an answer to this node's fetch, rebuilt from the ids its view holds:
// only those of a member being fetched, of the incarnation held here (a
// stranger's compact form names nothing this node asked for). A member's
// accusations are taken together or not at all; when the view lacks an
// accuser, they are asked of the same peer again in full, once a fetch.
func (m *Membership) expandCompact(from string, cs []compactAccusation, accs []*Accusation) []*Accusation {
	skip := map[uint64]bool{}
	for _, c := range cs {
		w, asked := m.pending[c.subject]
		s := m.v.get(c.subject)
		switch {
		case !asked || s == nil || s.e.Inc != c.inc:
			skip[c.subject] = true
		case m.v.get(c.accuser) == nil:
			skip[c.subject] = true
			m.askFull(from, w.it.h)
		}
	}
	for _, c := range cs {
		if skip[c.subject] {
			continue
		}
		a, err := c.expand(m.v.get(c.subject).e.ID, m.v.get(c.accuser).e.ID)
		if err != nil {
			m.stats.BadMessages++
			continue
		}
		accs = append(accs, a)
	}
	return accs
}

// askFull asks from again, in full (entry and accusations), for the member
// of id hash h being fetched: once a fetch.
func (m *Membership) askFull(from string, h uint64) {
	if w, ok := m.pending[h]; ok && !w.full {
		w.full = true
		m.send(from, encodeWant([]item{w.it}))
	}
}

// ban ignores everything but probes from p for BanFor.
func (m *Membership) ban(now time.Time, p string) {
	m.stats.Bans++
	m.peer(now, p).banned = now.Add(m.cfg.BanFor)
}

// banned reports whether p's gossip is ignored now.
func (m *Membership) banned(now time.Time, p string) bool {
	ps := m.peers[p]
	return ps != nil && now.Before(ps.banned)
}

// offer takes an entry a peer sent if it is new, allowed and signed.
func (m *Membership) offer(now time.Time, e *Entry, from string, trusted bool) {
	h := hashOf(KeyID(e.ID))
	delete(m.pending, h)
	if e.ID == m.cfg.Self {
		if m.cfg.Serve && e.Inc > m.inc && m.verify(e.ID, m.entryPrefix(), e.body, e.sig) {
			m.raise(now) // an older life of ours claims to be newer
			_ = m.announce(now)
		}
		return
	}
	if m.cfg.Allowed != nil && !m.cfg.Allowed(e.ID) {
		return
	}
	kind := uint8(kindAlive)
	if e.Left {
		kind = kindLeft
	}
	if !m.wants(item{h: h, inc: e.Inc, kind: kind}) {
		return
	}
	if !m.verify(e.ID, m.entryPrefix(), e.body, e.sig) {
		return
	}
	m.take(now, e, from, trusted)
}

// onJoin takes a joining member's entry (from itself: no probation) and
// answers with the whole view but the members on probation in it.
func (m *Membership) onJoin(now time.Time, from string, msg *message) {
	if !m.cfg.Serve {
		return
	}
	for _, raw := range msg.entries[:min(len(msg.entries), 1)] {
		if e, err := DecodeEntry(raw); err == nil && e.ID == from {
			m.origin = from              // this node is the first to hold it (seed)
			m.offer(now, e, from, false) // the joiner's own entry, always
			m.origin = ""
		}
	}
	if !msg.region.has(hashOf(KeyID(from))) {
		return // a view holds its own region
	}
	ps := m.peer(now, from)
	if !ps.lastJoin.IsZero() && now.Sub(ps.lastJoin) < m.cfg.SyncEvery/2 {
		// The whole view at most once per peer per half SyncEvery; within
		// it, only a region strictly wider than the one answered (at most
		// six widenings).
		if !msg.region.covers(ps.joined) || msg.region == ps.joined {
			return
		}
	} else {
		ps.lastJoin = now
	}
	ps.joined = msg.region
	m.learnRegion(now, from, msg.region)
	g, ok := m.shared(from)
	b := batch{m: m, to: from, typ: msgSnapshot, max: 1024}
	sent := false
	m.v.each(func(r *rec) bool {
		// Not a member on probation here: the joiner takes the answer as
		// its own view (no probation), so one would be live there at once.
		// It hears of it from the flood, or anti-entropy, like any view.
		if ok && g.has(r.h) && !now.Before(r.until) && !m.retired(now, r) {
			b.add(r)
			sent = true
		}
		return true
	})
	if !sent {
		// An answer all the same (this view holds none of the joiner's
		// region): the joiner looks for its region's members elsewhere.
		m.send(from, encodeUpdates(msgSnapshot, nil, nil))
		return
	}
	b.flush()
}

// onSync answers a peer's bucket digests with the stable versions this
// node holds in the buckets that differ.
func (m *Membership) onSync(now time.Time, from string, msg *message) {
	if len(msg.buckets) != buckets || !m.syncsWith(from) {
		return
	}
	ps := m.peer(now, from)
	if now.Sub(ps.lastReq) < m.cfg.SyncEvery/2 {
		return // one answer per peer per half SyncEvery
	}
	ps.lastReq = now
	g, ok := meet(m.region, msg.region)
	if !ok {
		return
	}
	var mask uint64
	for i, d := range msg.buckets {
		if d != m.v.digests[i] && g.mask()&(1<<i) != 0 {
			mask |= 1 << i
		}
	}
	if mask == 0 {
		return
	}
	in := inBuckets(mask)
	if items := m.stableIn(in, directSummary+1); len(items) <= directSummary {
		m.send(from, encodeSummary(mask, items))
		return
	}
	// Too many to list: narrow the difference down to leaves first.
	ps.listed, ps.listedMask = now, mask
	m.send(from, encodeSubSync(mask, m.v.leafDigests(mask)))
}

// directSummary: buckets that differ holding at most this many stable
// items are listed at once; more, and their leaf digests go first (a
// bucket holds N/64 members: at 10 000, 16 leaf digests cost 144 bytes
// where its items cost 2.8 KB).
const directSummary = 128

// onSubSync answers the leaf digests of the buckets a peer found
// different, after this node asked it (onSync), with the stable items it
// holds in the leaves that differ.
func (m *Membership) onSubSync(now time.Time, from string, msg *message) {
	ps := m.peers[from]
	n := bits.OnesCount64(msg.mask)
	if ps == nil || !m.solicited(now, &ps.asked) || n == 0 || len(msg.buckets) != n*subBuckets {
		return // not asked for, or malformed
	}
	ours := m.v.leafDigests(msg.mask)
	var ls []uint16
	var set leafSet
	k := 0
	for b := 0; b < buckets; b++ {
		if msg.mask&(1<<b) == 0 {
			continue
		}
		for j := 0; j < subBuckets; j++ {
			if ours[k] != msg.buckets[k] && m.region.mask()&(1<<b) != 0 {
				ls = append(ls, uint16(b*subBuckets+j))
				set[b*subBuckets+j] = true
			}
			k++
		}
	}
	if len(ls) == 0 {
		return
	}
	m.send(from, encodeLeafSummary(ls, m.stableIn(set.has, maxItems)))
}

// leafSet is a set of leaves; has says whether an id hash is in one.
type leafSet [leaves]bool

func (s *leafSet) has(h uint64) bool { return s[leafOf(h)] }

// solicited takes the one answer to a request sent at *at (within half
// SyncEvery).
func (m *Membership) solicited(now time.Time, at *time.Time) bool {
	ok := !at.IsZero() && now.Sub(*at) <= m.cfg.SyncEvery/2
	*at = time.Time{}
	return ok
}

func inBuckets(mask uint64) func(uint64) bool {
	return func(h uint64) bool { return mask&(1<<bucketOf(h)) != 0 }
}

// stableIn lists up to limit stable items whose id hash in accepts.
func (m *Membership) stableIn(in func(uint64) bool, limit int) []item {
	var items []item
	m.v.each(func(r *rec) bool {
		if r.digested != 0 && in(r.h) {
			items = append(items, r.item())
		}
		return len(items) < limit
	})
	return items
}

// onSummary fetches what the peer holds newer and announces what this node
// holds newer, in the buckets (or leaves) that differed.
func (m *Membership) onSummary(now time.Time, from string, msg *message) {
	ps := m.peers[from]
	if ps == nil || msg.leaves == nil && !m.solicited(now, &ps.asked) || msg.leaves != nil && !m.solicited(now, &ps.listed) {
		return // not an answer: a summary costs a scan of the view
	}
	in := inBuckets(msg.mask)
	if msg.leaves != nil {
		var set leafSet
		for _, l := range msg.leaves {
			set[l] = ps.listedMask&(1<<(l/subBuckets)) != 0 // only buckets that differed
		}
		in = set.has
	}
	theirs := map[uint64]item{}
	for _, it := range msg.items {
		if in(it.h) {
			theirs[it.h] = it
		}
	}
	var have []item
	for _, it := range m.stableIn(in, maxItems) {
		t, ok := theirs[it.h]
		if !ok || newer(it.inc, it.kind, t.inc, t.kind) {
			have = append(have, it)
		}
	}
	want := make([]item, 0, len(theirs))
	for _, it := range theirs {
		want = append(want, it)
	}
	m.onHave(now, from, want)
	if len(have) > 0 {
		m.send(from, encodeItems(msgHave, have))
	}
}

// Local health (Lifeguard): a node whose own probes go unanswered, or
// that has to refute accusations, is more likely slow itself than
// surrounded by failures. Each such event raises its health score (up to
// maxHealth), each answered probe lowers it; timeouts and the probe period
// stretch by 1+score, so an overloaded node stops accusing healthy peers.
const maxHealth = 8

func (m *Membership) unwell() { m.health = min(m.health+1, maxHealth) }

// timeout is PingTimeout stretched by the local health score.
func (m *Membership) timeout() time.Duration {
	return m.cfg.PingTimeout * time.Duration(1+m.health)
}

// probeTimeout is p's timeout: a first probe of a peer this node has not
// exchanged probes with includes setting up a connection, so it gets
// coldProbe times longer.
//
// A target that answered before gets at least its retransmission timeout
// (rto): a member on a slow path or a busy machine, whose acks come after
// PingTimeout, is probed with a timeout its round trips fit, not accused
// every few probes (each accusation costs every view a signature check,
// and its refutation another: on an overloaded machine that cost fed the
// overload). It is bounded by what the health score could stretch the
// timeout to, so a member cannot buy itself a longer one by answering late.
func (m *Membership) probeTimeout(p *probe) time.Duration {
	if p.cold {
		return coldProbe * m.timeout()
	}
	return max(m.timeout(), min(p.rto, m.maxTimeout()))
}

// maxTimeout is the longest a probe waits before going indirect: what the
// health score can stretch PingTimeout to, and the bound of a target's rto.
func (m *Membership) maxTimeout() time.Duration {
	return (1 + maxHealth) * m.cfg.PingTimeout
}

// sampleRTT takes p's round trip into its target's rto when the ack came
// from the target itself (not relayed) and p was warm (a cold probe's
// includes setting up a connection), capped at maxTimeout.
func (m *Membership) sampleRTT(now time.Time, p *probe, from string) {
	if from == p.target && !p.cold {
		m.peer(now, from).sample(min(now.Sub(p.sent), m.maxTimeout()))
	}
}

// sample takes the round trip d of a direct probe of the peer (RFC 6298's
// smoothing, its K = 4).
func (ps *peerState) sample(d time.Duration) {
	if ps.srtt == 0 {
		ps.srtt, ps.rttvar = d, d/2
		return
	}
	ps.rttvar = (3*ps.rttvar + (ps.srtt - d).Abs()) / 4
	ps.srtt = (7*ps.srtt + d) / 8
}

// rto is the peer's retransmission timeout: zero before a first sample.
func (ps *peerState) rto() time.Duration {
	return ps.srtt + 4*ps.rttvar
}

const coldProbe = 4

// heard confirms member from: a message over its own authenticated
// connection shows this node can reach it, whatever third parties said of
// it, so later incarnations relayed by others no longer restart its
// probation (a member accused now and then under load would otherwise
// never stand one unaccused here).
func (m *Membership) heard(from string) {
	h := hashOf(KeyID(from))
	if r := m.v.get(h); r != nil && r.e.ID == from && !r.confirmed {
		m.v.mut(h).confirmed = true
	}
}

// batch sends records (entry and accusation) to a peer in messages of at
// most max entries.
type batch struct {
	m                      *Membership
	to                     string
	typ                    byte
	max                    int
	entries, accs, compact [][]byte
	compactOK              bool // the asker takes compact accusations
}

func (b *batch) add(r *rec) {
	b.entries = append(b.entries, r.e.Raw)
	b.accs = append(b.accs, r.accs()...)
	if len(b.entries) >= b.max {
		b.flush()
	}
}

// addAccs adds r's accusations alone (the asker holds the entry), in
// compact form (compactAcc) when both can be: a pair stays together.
func (b *batch) addAccs(r *rec) {
	as := r.accusations()
	var cs [][]byte
	for _, a := range as {
		if c := compactAcc(a); c != nil {
			cs = append(cs, c)
		}
	}
	if b.compactOK && len(cs) == len(as) {
		b.compact = append(b.compact, cs...)
	} else {
		b.accs = append(b.accs, r.accs()...)
	}
	if len(b.accs)+len(b.compact) >= 2*b.max {
		b.flush()
	}
}

func (b *batch) flush() {
	if len(b.entries) > 0 || len(b.accs) > 0 || len(b.compact) > 0 {
		b.m.send(b.to, appendCompact(encodeUpdates(b.typ, b.entries, b.accs), b.compact))
		b.entries, b.accs, b.compact = nil, nil, nil
	}
}
