package membership

import (
	"container/heap"
	"time"
)

// take applies a verified (or self-made) entry when it is newer than the
// view's; from is the peer it came from, trusted that the view it came
// with needs no probation (this node's own, or its join's answer).
func (m *Membership) take(now time.Time, e *Entry, from string, trusted bool) bool {
	return m.takeEntry(now, e, from, trusted, false)
}

// takeEntry is take; answering, e answers an accusation of itself (it is
// the incarnation accused), so it is not held to one a SuspectTimeout.
func (m *Membership) takeEntry(now time.Time, e *Entry, from string, trusted, answering bool) bool {
	kid := KeyID(e.ID)
	h := hashOf(kid)
	if !m.region.has(h) {
		return false
	}
	r := m.v.get(h)
	kind := uint8(kindAlive)
	if e.Left {
		kind = kindLeft
	}
	if r != nil && (r.e.ID != e.ID || !newer(e.Inc, kind, r.e.Inc, r.kind())) {
		return false
	}
	if r == nil && e.Left {
		return false
	}
	if r == nil {
		return m.takeNew(now, e, h, kid, from, trusted)
	}
	wasCand, wasLive := r.candidate(), r.live(now)
	accused := r.acc != nil || r.dead
	if !accused && !answering && !e.Left && !trusted && now.Sub(r.changed) < m.cfg.SuspectTimeout {
		m.keep(h, e, from)
		return false
	}
	if !trusted && from != e.ID && !r.confirmed && !e.Left && !m.chargeProb(h, m.groupOf(from)) {
		m.keep(h, e, from) // its probation would restart (below): over its group's bound, for now
		return false
	}
	moved := r.e.Region != e.Region // on the rings or off them
	r = m.v.mut(h)
	r.changed = now // its stable digest keeps the old version's part until this one is stable
	if r.acc != nil {
		delete(m.suspects, h)
	}
	if ps := m.peers[e.ID]; ps != nil {
		ps.toldAcc = time.Time{} // a new accusation is told again at once
	}
	r.e, r.acc, r.acc2, r.dead, r.loud = e, nil, nil, false, false
	if trusted || from == e.ID {
		r.confirmed = true
	} else if !r.confirmed && !e.Left {
		// A new incarnation of a member that never stood its probation
		// (a refutation, or a re-signed entry): anyone with the member's
		// key can make one, so an identity that cannot be reached (a
		// sybil whose owner refutes every accusation, or re-signs faster
		// than accusations of its older incarnations arrive) must have
		// one incarnation stand unaccused for Probation.
		r.until = now.Add(m.cfg.Probation)
		m.probationTimers(r, 2)
	}
	m.changed(now, r, wasCand, from)
	if moved && wasCand && h != m.selfH {
		m.ringDel(h)
		if r.candidate() && !now.Before(r.until) {
			m.ringAdd(r)
		}
	}
	if wasLive != r.live(now) {
		m.version++
	}
	return true
}

// keep holds e, which came within SuspectTimeout of the member's last
// incarnation taken, to take later (expireSmall, or accept when an
// accusation of it comes). At most one new incarnation per SuspectTimeout
// unless it answers an accusation: a member's key holder re-announcing
// without pause would otherwise outrun every accusation. The newest is
// kept, not dropped: an identity's key holder could otherwise give its
// probers one incarnation and the other views a newer one, which the
// probers' flood then reaches too early to take, so the other views never
// hear it accused. A member on probation here is kept even past
// maxDeferred (chargeProb bounds them to MaxUnconfirmed): others' entries
// cannot crowd it out.
func (m *Membership) keep(h uint64, e *Entry, from string) {
	_, onProb := m.onProb[h]
	if d, ok := m.deferred[h]; ok && newer(e.Inc, kindAlive, d.e.Inc, kindAlive) || !ok && (onProb || len(m.deferred) < maxDeferred) {
		m.deferred[h] = deferredEntry{e: e, from: from}
	}
}

// groupOf is the group (/24) of peer p, "" without Config.Group.
func (m *Membership) groupOf(p string) string {
	if m.cfg.Group == nil {
		return ""
	}
	return m.cfg.Group(p)
}

// takeNew adds a member the view did not hold: on probation when a third
// party told of it, within MaxUnconfirmed.
func (m *Membership) takeNew(now time.Time, e *Entry, h uint64, kid [32]byte, from string, trusted bool) bool {
	r := &rec{h: h, kid: kid, e: e, changed: now, confirmed: trusted || from == e.ID}
	if !trusted && from != e.ID {
		if !m.chargeProb(h, m.groupOf(from)) {
			return false
		}
		r.until = now.Add(m.cfg.Probation)
		m.probationTimers(r, 0)
	}
	m.v.add(r)
	m.changed(now, r, false, from)
	return true
}

// A tombstone (a member departed, accused or dead) is forgotten at
// purgeAt, its version's time plus Tombstone, in every view that holds that
// version. Views may hold different versions of one dead member, though:
// two of its probers' lone accusations a second apart, each spread to half
// the overlay and neither confirming the other so late. Each half purged at
// its own time, and in the second between, a view that still held it
// answered anti-entropy (or a join) with it to one that had just purged it,
// which took the entry as a new member and, its accusation no longer
// credible (its accuser gone or off the subject's rings by then), held it
// live: the dead member was flooded to the whole overlay again, probed,
// accused and flooded dead, and after another Tombstone could come back
// the same way. (In the sim at 2000 members, after a 400 s warm-up, three
// such members were flooded to every view each minute: updates and sync
// bytes grew by half.) So for its last retireShare a tombstone is retired:
// still held (a copy that comes back is not new here), but out of the
// digest and never sent, so no view teaches it to another that has
// forgotten it, as long as the versions' times are closer than that.
const retireShare = 10

// retireAt is when r's tombstone is retired: Tombstone less a tenth after
// its version was made.
func (m *Membership) retireAt(r *rec) time.Time {
	return unixTime(r.eventTime()).Add(m.cfg.Tombstone - m.cfg.Tombstone/retireShare)
}

// retired: r is a tombstone in its last tenth (retireAt), not to be sent.
func (m *Membership) retired(now time.Time, r *rec) bool {
	return r.pub() != kindAlive && !now.Before(m.retireAt(r))
}

// changed schedules what follows a new version of r and spreads it.
func (m *Membership) changed(now time.Time, r *rec, wasCand bool, from string) {
	if r.e.Region != int(m.region.bits) {
		m.offRing[r.h] = struct{}{}
	}
	// Stable StableAfter after it was made, or after it came if its time
	// is ahead of this node's clock: a version dated a year ahead would
	// otherwise leave the last stable one's part in this view's digest
	// for a year, and views that took the versions in another order
	// another part (TestDigestFutureVersion).
	stable := unixTime(r.eventTime())
	if stable.After(now) {
		stable = now
	}
	stable = stable.Add(m.cfg.StableAfter)
	heap.Push(&m.stableQ, timer{at: stable, h: r.h, inc: r.e.Inc, kind: r.pub()})
	if r.pub() != kindAlive {
		heap.Push(&m.purgeQ, timer{at: m.retireAt(r), h: r.h, inc: r.e.Inc, kind: r.pub()})
	}
	if r.h != m.selfH {
		switch cand := r.candidate() && !now.Before(r.until); {
		case cand && !wasCand:
			m.ringAdd(r)
		case !cand && wasCand:
			m.ringDel(r.h)
		}
	}
	if r.candidate() || wasCand {
		// Also a candidate not live yet (a probation begun): the live
		// summary keeps the instant its probation ends (summary).
		m.version++
	}
	m.fresh = append(m.fresh, freshItem{it: r.item(), from: from})
	switch {
	case from == m.cfg.Self || from != "" && from == m.origin:
		m.seed(now, r, true)
	case from != "" && from == m.relayFrom:
		m.seed(now, r, false)
	}
}

// accept applies accusation a of a member's current incarnation; with,
// if not nil, is another accuser's accusation of the same incarnation
// that came in the same message (a confirmed pair, both checked first).
//
// The first is a lone accusation: the member stays live and probed. A
// quiet one (loud false: made here, or sent by its accuser to the
// subject's probers) is not spread; its accuser spreads it only if
// neither a refutation nor a confirmation came within LoneSuspect, and a
// spread one counts only then (aged), leaving the subject SuspectTimeout
// to refute. A second accusation by another member confirms it: spread
// at once, off the rings and out of Closest, dead after SuspectTimeout.
// One member's word (an overloaded prober's, or a liar's) thus moves no
// replica set and costs the overlay no broadcast.
func (m *Membership) accept(now time.Time, a, with *Accusation, from string, loud bool) bool {
	if a.Subject == a.Accuser {
		return false
	}
	if from != m.cfg.Self && (a.Accuser == m.cfg.Self || with != nil && with.Accuser == m.cfg.Self) {
		// This node's own accusations it makes itself (accuse), and
		// credible does not check its signature on them: one in its name
		// from anyone else (a forgery, or its own coming back) is not
		// taken. A stranger could otherwise kill any member in the view
		// of each of its probers, which then spread the forgery and were
		// banned by every other view as liars.
		return false
	}
	if a.Subject == m.cfg.Self {
		return loud && m.refute(now, a, with, from) // a quiet one: if it is ever spread
	}
	h := hashOf(KeyID(a.Subject))
	r := m.v.get(h)
	if d, ok := m.deferred[h]; ok && r != nil && d.e.ID == a.Subject && d.e.Inc == a.Inc && a.Inc > r.e.Inc && m.credible(a, r) {
		// It accuses the incarnation kept for later (take): taken now,
		// or the accusation would be lost, and the incarnation's
		// probation end unaccused here when it is taken. Only a credible
		// one (its signature checked): anyone could otherwise lift the
		// one-a-SuspectTimeout bound on new incarnations.
		delete(m.deferred, h)
		m.takeEntry(now, d.e, d.from, false, true)
		r = m.v.get(h)
	}
	if r == nil || r.e.ID != a.Subject || r.e.Left || r.acc2 != nil || a.Inc != r.e.Inc {
		return false
	}
	same := r.acc != nil && r.acc.Accuser == a.Accuser
	if same && (r.loud || !loud) {
		return false
	}
	// A pair, or a confirmation, needs an accuser this view knows: a
	// partial view takes strangers' accusations (credible), but two of
	// them are still one word.
	pair := with != nil && (m.confirms(now, a, with) || m.answerPair(now, a, with)) && (m.known(a.Accuser) || m.known(with.Accuser))
	if loud && (same || r.acc == nil) && !pair && !m.aged(now, a, r.e) {
		return false
	}
	if r.acc != nil && !same && (!m.confirms(now, r.acc, a) && !m.answerPair(now, r.acc, a) || !m.known(a.Accuser) && !m.known(r.acc.Accuser)) {
		return false // a stale accusation does not confirm, nor is confirmed
	}
	if !m.credible(a, r) || pair && !m.credible(with, r) {
		return false
	}
	wasCand, wasLive := r.candidate(), r.live(now)
	probed := m.probes(h)
	r = m.v.mut(h)
	switch {
	case same: // the accusation held here quietly was spread meanwhile
		// Keep the spread copy (aged): the subject refutes what it is sent.
		r.acc, r.loud, r.deadline = a, true, minTime(r.deadline, now.Add(m.cfg.SuspectTimeout))
	case r.acc == nil:
		r.acc, r.loud, r.deadline = a, loud, now.Add(m.cfg.LoneSuspect)
		if loud {
			r.deadline = now.Add(m.cfg.SuspectTimeout)
		}
	default:
		r.acc2, r.deadline = a, minTime(r.deadline, now.Add(m.cfg.SuspectTimeout))
	}
	if pair && r.acc2 == nil && r.acc.Accuser != with.Accuser {
		r.acc2 = with
	}
	m.suspects[h] = struct{}{}
	if r.pub() != kindAlive {
		m.changed(now, r, wasCand, from)
		if probed && m.cfg.Serve {
			// Its probers tell it, so it can refute: a confirmed suspect
			// is off the rings and would not hear of it from the flood.
			m.send(a.Subject, encodeUpdates(msgUpdates, [][]byte{r.e.Raw}, r.accs()))
		}
	}
	if wasLive != r.live(now) {
		m.version++
	}
	return true
}

// known: id is this node or in its view (in any state).
func (m *Membership) known(id string) bool {
	if id == m.cfg.Self {
		return true
	}
	r := m.v.get(hashOf(KeyID(id)))
	return r != nil && r.e.ID == id
}

// credible: a's accuser is in the view (in any state: it may have died
// since), plausibly probes r's member on the rings of its kind, and
// signed a. A partial view cannot know the members outside its region: it
// takes an accuser from there as a full view's, by its place alone (the
// member's full ring predecessors are rarely in its region), but such a
// stranger's word never confirms another's (accept) and its subject
// refutes it like any other (refute).
func (m *Membership) credible(a *Accusation, r *rec) bool {
	if a.Accuser == m.cfg.Self {
		return true
	}
	akid := KeyID(a.Accuser)
	bits := 0
	switch acc := m.v.get(hashOf(akid)); {
	case acc != nil && acc.e.ID == a.Accuser:
		bits = acc.e.Region
	case m.region.has(hashOf(akid)):
		return false // not a member
	}
	if !m.plausibleAt(akid, r.kid, bits) {
		return false
	}
	return m.verify(a.Accuser, m.accPrefix(), a.body, a.sig)
}

// aged: a spread lone accusation counts only once it, and the
// incarnation it accuses, are LoneSuspect old (less SuspectTimeout for
// clocks that differ): its accuser spreads it only then, after neither a
// refutation nor a confirmation came. A liar may backdate its own
// accusation, but not the incarnation: it can make a member refute at
// most once per LoneSuspect − SuspectTimeout. An incarnation from the
// future counts as made now.
func (m *Membership) aged(now time.Time, a *Accusation, e *Entry) bool {
	inc := min(e.Inc, uint64(max(now.UnixNano(), 0)))
	return !now.Before(unixTime(max(a.Time, inc)).Add(m.cfg.LoneSuspect - m.cfg.SuspectTimeout))
}

// confirms: b, by another accuser, confirms a: the same incarnation, the
// two made within LoneSuspect of each other (the confirmation follows the
// quiet accusation) and of now. An old honest accusation cannot be
// replayed as half of a pair; one that arrives late (anti-entropy) counts
// as an aged lone accusation, which its subject can still refute.
func (m *Membership) confirms(now time.Time, a, b *Accusation) bool {
	return m.paired(a, b) && m.near(unixTime(a.Time), now) && m.near(unixTime(b.Time), now)
}

// answerPair: taking a trusted join answer, b pairs with a however old
// (the answering view holds them confirmed: taken as one lone accusation,
// they gave the joiner another version of the member than every other
// view, retired at another time), but neither dated past LoneSuspect
// ahead (confirms' bound: a pair dated a year ahead would never retire,
// and the joiner would pass it on in its own answers).
func (m *Membership) answerPair(now time.Time, a, b *Accusation) bool {
	ahead := now.Add(m.cfg.LoneSuspect)
	return m.answering && m.paired(a, b) && !unixTime(a.Time).After(ahead) && !unixTime(b.Time).After(ahead)
}

// paired: b, by another accuser, accuses a's incarnation within
// LoneSuspect of a.
func (m *Membership) paired(a, b *Accusation) bool {
	return b.Subject == a.Subject && b.Inc == a.Inc && b.Accuser != a.Accuser && m.near(unixTime(a.Time), unixTime(b.Time))
}

func (m *Membership) near(x, y time.Time) bool {
	w := m.cfg.LoneSuspect
	return x.Sub(y) <= w && y.Sub(x) <= w
}

// die ends h's suspicion past its deadline. A quiet lone accusation that
// was neither refuted nor confirmed is spread now by its accuser (the
// subject has a single prober, or the others are gone too): the overlay
// hears it as loud, if the accuser is still a plausible prober of the
// member (dropped otherwise: other views would not take it, and the
// member would not refute it). Another's quiet accusation is dropped:
// its accuser spreads it if it still stands.
func (m *Membership) die(now time.Time, h uint64, r *rec) {
	wasCand := r.candidate()
	r = m.v.mut(h)
	delete(m.suspects, h)
	switch {
	case r.pub() == kindAlive && (r.acc.Accuser != m.cfg.Self || !m.plausible(m.selfKid, r.kid)):
		// Another's quiet accusation, or this node's own that the view
		// has since grown past believing (made while it was joining).
		r.acc = nil
	case r.pub() == kindAlive:
		r.loud, r.dead = true, true
		m.changed(now, r, wasCand, m.cfg.Self) // this node's accusation, spread alone
	default:
		r.dead = true
		if wasCand {
			m.ringDel(h)
			m.version++
		}
	}
	if r.dead && (r.acc.Accuser == m.cfg.Self || r.acc2 != nil && r.acc2.Accuser == m.cfg.Self) && len(m.recheck) < maxRecheck {
		m.recheck[h] = now.Add(m.cfg.SuspectTimeout)
	}
}

// maxRecheck bounds the members this node re-probes after accusing them.
const maxRecheck = 256

// recheckDead pings, once per SuspectTimeout until they are purged or
// back, the members dead on this node's accusation. Its evidence is the
// one that counts against them: if the spread of its accusation was lost
// (this node overloaded), the member never heard, and it may never send
// this node a message otherwise; an answer gets it its accusation
// (tellAccused), which it refutes.
func (m *Membership) recheckDead(now time.Time) {
	for h, at := range m.recheck {
		r := m.v.get(h)
		switch {
		case r == nil || !r.dead || r.e.Left:
			delete(m.recheck, h)
		case !now.Before(at):
			m.recheck[h] = now.Add(m.cfg.SuspectTimeout)
			m.send(r.e.ID, m.probeTo(msgPing, 0, r.e.ID))
		}
	}
}

// answered drops a quiet accusation of id, which just answered this
// node's probe (directly or through a neighbour): no one else heard of
// it. A message from id alone does not: a member that can send but not
// receive must still be found out. With mine, only this node's own
// accusation is dropped (a late ack: another's stands).
func (m *Membership) answered(id string, mine bool) {
	h := hashOf(KeyID(id))
	if r := m.v.get(h); r != nil && r.e.ID == id && r.acc != nil && r.pub() == kindAlive && (!mine || r.acc.Accuser == m.cfg.Self) {
		m.v.mut(h).acc = nil
		delete(m.suspects, h)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// probes reports whether this node probes member h (a ring successor, or
// off the rings in one of its gaps: on probation, or one whose view
// differs in kind).
func (m *Membership) probes(h uint64) bool {
	if _, ok := m.onProb[h]; ok {
		return true
	}
	for j := 0; j < m.cfg.Rings; j++ {
		if m.succ[j] == h {
			return true
		}
	}
	if r := m.v.get(h); r != nil && !m.ringable(r) {
		return contains(m.bridges(nil), r.e.ID)
	}
	return false
}

// plausible: the subject is near enough after the accuser on one of the
// rings to be among the members the accuser probes (within 32 expected
// gaps, so views of slightly different sizes agree): a member cannot
// accuse whomever it likes. The accuser must be in the view, in any state
// (it may have died since). A partial view's members fill only its
// region of ring 0 (the id hash's first bits), so there the gap is
// measured within the region, which wraps around.
func (m *Membership) plausible(accuser, subject [32]byte) bool {
	return m.plausibleAt(accuser, subject, int(m.region.bits))
}

// plausibleAt is plausible for an accuser whose view is a region of bits
// (0: full): its rings hold the overlay's members of its region (which
// must hold the subject), about the number of members past probation in
// the view (density) scaled to the whole overlay and back down.
func (m *Membership) plausibleAt(accuser, subject [32]byte, bits int) bool {
	if !regionOf(hashOf(accuser), bits).has(hashOf(subject)) {
		return false
	}
	n := uint64(max(m.density(), 1)) << m.region.bits >> bits
	if n <= 32 {
		return true
	}
	limit := (^uint64(0) / n) * 32
	for j := 0; j < m.cfg.Rings; j++ {
		d := ringPos(&subject, j) - ringPos(&accuser, j)
		if j == 0 {
			d <<= bits
		}
		if d < limit {
			return true
		}
	}
	return false
}

// density is the number of members on the rings' terms (candidates past
// their probation), counted at most once per StableAfter unless the view,
// or the members on probation in it, grew or shrank by an eighth of the
// view since (a heal's members past probation all at once). Not the view's size: a third party
// can add MaxUnconfirmed members on probation, and departed ones (their
// tombstones last Tombstone), and in a small overlay either made every
// honest prober's accusation implausible (TestAttackSplitIncarnationsDeferredFull,
// TestAttackTombstonesInflate); nor the view's size less those on
// probation: members purged while on probation were still counted out, and
// any two members' accusations plausible (TestAttackGhostProbation).
func (m *Membership) density() int {
	n, p := m.v.n, len(m.onProb)
	if m.dens.at.IsZero() || m.now.Sub(m.dens.at) >= m.cfg.StableAfter || m.now.Before(m.dens.at) ||
		n > m.dens.viewN+m.dens.viewN/8 || n < m.dens.viewN-m.dens.viewN/8 ||
		p > m.dens.onProb+m.dens.viewN/8 || p < m.dens.onProb-m.dens.viewN/8 {
		k := 0
		m.v.each(func(r *rec) bool {
			if r.candidate() && !m.now.Before(r.until) {
				k++
			}
			return true
		})
		m.dens.n, m.dens.viewN, m.dens.onProb, m.dens.at = k, n, p, m.now
	}
	return m.dens.n
}

// refute answers an accusation of this node's current incarnation with a
// new one. One of an older incarnation gets this node's current entry
// back to from: it was refuted already, and from has not heard.
func (m *Membership) refute(now time.Time, a, with *Accusation, from string) bool {
	if !m.cfg.Serve {
		return false
	}
	if a.Inc < m.inc {
		m.tellCurrent(now, from)
		return false
	}
	self := m.v.get(m.selfH)
	if self == nil || !m.credible(a, self) && !m.stranger(a, self) {
		return false
	}
	pair := with != nil && m.confirms(now, a, with) && m.credible(with, self) && (m.known(a.Accuser) || m.known(with.Accuser))
	if !pair && !m.aged(now, a, self.e) {
		return false // a lone accusation counts only when aged
	}
	m.stats.Refutations++
	m.unwell()
	m.raise(now)
	return m.announce(now) == nil
}

// stranger: a is by an accuser this view does not know, placed where a
// full view's member probing this node would be, and signed, while the
// overlay has partial views (which take such accusations): this node
// refutes it when aged, as partial views of its region may hold it
// suspect meanwhile. Without partial views it is not refuted, as before.
func (m *Membership) stranger(a *Accusation, self *rec) bool {
	if m.known(a.Accuser) || m.region.bits == 0 && len(m.offRing) == 0 {
		return false
	}
	return m.plausibleAt(KeyID(a.Accuser), self.kid, 0) && m.verify(a.Accuser, m.accPrefix(), a.body, a.sig)
}

// tellCurrent sends this node's current entry to member from, which
// passed on an accusation of an older incarnation: at most once per
// SuspectTimeout per member (one message may carry many accusations, none
// of them verified yet), and only to members in the view.
func (m *Membership) tellCurrent(now time.Time, from string) {
	r := m.v.get(m.selfH)
	f := m.v.get(hashOf(KeyID(from)))
	if r == nil || r.e.ID != m.cfg.Self || f == nil || f.e.ID != from || from == m.cfg.Self {
		return
	}
	if !due(&m.peer(now, from).toldCur, now, m.cfg.SuspectTimeout) {
		return
	}
	m.send(from, encodeUpdates(msgUpdates, [][]byte{r.e.Raw}, nil))
}

// accuse records that this node's probes of target failed. A first
// accusation goes quietly to the subject's other probers (to probe it at
// once, and confirm or not); a confirmation of another's is spread by
// accept.
func (m *Membership) accuse(now time.Time, target string) {
	r := m.v.get(hashOf(KeyID(target)))
	if r == nil || !r.candidate() || r.acc != nil && r.acc.Accuser == m.cfg.Self {
		return
	}
	if !m.plausible(m.selfKid, r.kid) {
		return // no other view would believe it, nor its subject refute it
	}
	raw, err := m.sign(m.accPrefix(), accusationBody(target, r.e.Inc, m.cfg.Self, uint64(now.UnixNano())))
	if err != nil {
		return
	}
	a, err := DecodeAccusation(raw)
	if err != nil {
		return
	}
	m.stats.Accusations++
	lone := r.acc == nil
	if !m.accept(now, a, nil, m.cfg.Self, false) || !lone {
		return
	}
	msg := encodeUpdates(msgAccuse, nil, [][]byte{raw})
	for _, p := range m.probersOf(r) {
		m.send(p, msg)
	}
}

// probersOf returns s's predecessors on the rings other than this node:
// the members that probe it.
func (m *Membership) probersOf(s *rec) []string {
	var best [4]*rec
	m.v.each(func(r *rec) bool {
		if r.h == s.h || r.h != m.selfH && (!r.candidate() || m.now.Before(r.until) || !m.ringable(r)) {
			return true
		}
		for j := 0; j < m.cfg.Rings; j++ {
			if b := best[j]; b == nil || ringPos(&s.kid, j)-ringPos(&r.kid, j) < ringPos(&s.kid, j)-ringPos(&b.kid, j) {
				best[j] = r
			}
		}
		return true
	})
	var out []string
	for _, r := range best[:m.cfg.Rings] {
		if r != nil && r.h != m.selfH && !contains(out, r.e.ID) {
			out = append(out, r.e.ID)
		}
	}
	return out
}

// onAccuse takes lone accusations an accuser sent this node directly, of
// a member it probes: it holds the accusation quietly and probes the
// member next (a failure confirms, an answer drops it).
func (m *Membership) onAccuse(now time.Time, from string, msg *message) {
	bad := m.stats.BadSignatures
	for _, raw := range msg.accs[:min(len(msg.accs), 4)] {
		a, err := DecodeAccusation(raw)
		if err != nil {
			m.stats.BadMessages++
			continue
		}
		ok := m.accept(now, a, nil, from, false)
		if m.stats.BadSignatures != bad {
			m.ban(now, from)
			return
		}
		h := hashOf(KeyID(a.Subject))
		if st, onProb := m.onProb[h]; ok && onProb {
			if st != probAnswered { // an answer in this probation stands
				m.onProb[h] = probUnprobed // probed again (probationStep)
			}
		} else if ok && m.probes(h) && !now.Before(m.urgentAt) {
			m.urgent = a.Subject
		}
	}
}

// rings

func (m *Membership) after(j int, r *rec) uint64  { return ringPos(&r.kid, j) - ringPos(&m.selfKid, j) }
func (m *Membership) before(j int, r *rec) uint64 { return ringPos(&m.selfKid, j) - ringPos(&r.kid, j) }

// ringable: r takes a place on this node's rings, which hold the members
// whose views are of the same kind (full, or regions of as many bits):
// the ones that run the same rings, so a member's ring predecessors are
// the members that probe it. A full view leaves members with partial
// views off them (they probe and flood only within their regions), a
// partial view the full members of its region; both probe those from
// their gaps (successors).
func (m *Membership) ringable(r *rec) bool { return r.e.Region == int(m.region.bits) }

// ringAdd considers r (a member out of probation) for the rings.
func (m *Membership) ringAdd(r *rec) {
	if !m.ringable(r) {
		return
	}
	for j := 0; j < m.cfg.Rings; j++ {
		if s := m.v.get(m.succ[j]); s == nil || m.after(j, r) < m.after(j, s) {
			m.succ[j] = r.h
		}
		if p := m.v.get(m.pred[j]); p == nil || m.before(j, r) < m.before(j, p) {
			m.pred[j] = r.h
		}
	}
}

func (m *Membership) ringDel(h uint64) {
	for j := 0; j < m.cfg.Rings; j++ {
		if m.succ[j] == h || m.pred[j] == h {
			m.rescan(j)
		}
	}
}

// rescan finds ring j's successor and predecessor from the whole view.
func (m *Membership) rescan(j int) {
	m.succ[j], m.pred[j] = 0, 0
	var s, p *rec
	m.v.each(func(r *rec) bool {
		if r.h == m.selfH || !r.candidate() || m.now.Before(r.until) || !m.ringable(r) {
			return true
		}
		if s == nil || m.after(j, r) < m.after(j, s) {
			s = r
		}
		if p == nil || m.before(j, r) < m.before(j, p) {
			p = r
		}
		return true
	})
	if s != nil {
		m.succ[j], m.pred[j] = s.h, p.h
	}
}

// Neighbours returns the members this node probes or is probed by: its
// successor and predecessor on each ring, without repeats.
func (m *Membership) Neighbours() []string {
	var out []string
	seen := map[uint64]bool{}
	for _, hs := range [][4]uint64{m.succ, m.pred} {
		for j := 0; j < m.cfg.Rings; j++ {
			if h := hs[j]; h != 0 && !seen[h] {
				seen[h] = true
				if r := m.v.get(h); r != nil {
					out = append(out, r.e.ID)
				}
			}
		}
	}
	return out
}

// successors are the members this node probes round robin, one a
// Period: its ring successors, and on each ring the first member after it
// whose view differs in kind (ringable), if that comes before its
// successor. Those bridge the flood between full and partial views and
// probe a member that is alone of its kind; the others of a kind are
// probed by their own rings, whose accusations every view takes
// (credible). The members on probation in its gaps are probed apart, once
// each probation (probationStep): identities that stay on probation (they
// keep re-signing) or never answer would otherwise take turns from the
// ring successors, whose failures then go unseen for as many periods.
func (m *Membership) successors() []string { return m.targets(m.cfg.Rings, 0) }

// floodTargets are the successors on the first FloodRings rings a flush
// sends news to, with at most
// maxProbFan of the members on probation, the nearest by ring distance.
// The gap holds the whole view before there are rings (a Merge), and a
// third party can fill it with up to MaxUnconfirmed/4 identities of its
// own, ground to sit after this node with a victim's address: every
// flush would be one message per identity. Their probes are bounded
// otherwise (probationStep): by the nearest, identities that keep
// re-signing (and so stay on probation) would hold every place and shield
// the ones behind them from ever being probed.
func (m *Membership) floodTargets() []string { return m.targets(m.floodRings(), maxProbFan) }

// floodRings is Config.FloodRings, or by the view's size (its default).
func (m *Membership) floodRings() int {
	switch {
	case m.cfg.FloodRings > 0:
		return m.cfg.FloodRings
	case m.v.n >= deepSeeds:
		return min(2, m.cfg.Rings)
	}
	return min(3, m.cfg.Rings)
}

// maxProbFan bounds the members on probation a flush sends to.
const maxProbFan = 8

// targets returns the successors on the first rings rings and the bridges,
// with the limit members on probation in this node's gaps nearest to it.
func (m *Membership) targets(rings, limit int) []string {
	var out []string
	for j := 0; j < rings; j++ {
		if r := m.v.get(m.succ[j]); r != nil && !contains(out, r.e.ID) {
			out = append(out, r.e.ID)
		}
	}
	var near [maxProbFan]struct {
		r *rec
		d uint64
	}
	k := 0
	for h := range m.onProb {
		if limit <= 0 {
			break
		}
		r := m.v.get(h)
		if r == nil || !r.candidate() || h == m.selfH {
			continue
		}
		d, in := m.gapDistance(r)
		if !in || contains(out, r.e.ID) {
			continue
		}
		if k == limit && d >= near[k-1].d {
			continue
		}
		if k < limit {
			k++
		}
		i := k - 1
		for ; i > 0 && near[i-1].d > d; i-- {
			near[i] = near[i-1]
		}
		near[i].r, near[i].d = r, d
	}
	for _, c := range near[:k] {
		out = append(out, c.r.e.ID)
	}
	return m.bridges(out)
}

// gapDistance reports whether r comes between this node and its
// successor on some ring, and its least distance from this node on
// those rings.
func (m *Membership) gapDistance(r *rec) (uint64, bool) {
	var best uint64
	in := false
	for j := 0; j < m.cfg.Rings; j++ {
		a := m.after(j, r)
		if s := m.v.get(m.succ[j]); s != nil && a >= m.after(j, s) {
			continue
		}
		if !in || a < best {
			best, in = a, true
		}
	}
	return best, in
}

// bridges adds to out, per ring, the first member of another kind in
// this node's gap, dropping from offRing the members gone or now
// ringable.
func (m *Membership) bridges(out []string) []string {
	var first [4]*rec
	for h := range m.offRing {
		r := m.v.get(h)
		if r == nil || m.ringable(r) {
			delete(m.offRing, h)
			continue
		}
		if !r.candidate() || h == m.selfH || m.now.Before(r.until) {
			continue
		}
		for j := 0; j < m.cfg.Rings; j++ {
			s := m.v.get(m.succ[j])
			if (s == nil || m.after(j, r) < m.after(j, s)) && (first[j] == nil || m.after(j, r) < m.after(j, first[j])) {
				first[j] = r
			}
		}
	}
	for _, r := range first[:m.cfg.Rings] {
		if r != nil && !contains(out, r.e.ID) {
			out = append(out, r.e.ID)
		}
	}
	return out
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}
