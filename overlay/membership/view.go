package membership

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
	"time"
)

// rec is one member in one node's view. The entry and accusation it points
// to are shared and immutable; the rest is this node's own state.
type rec struct {
	h   uint64
	kid [32]byte
	e   *Entry      // latest entry (alive or left)
	acc *Accusation // an accusation of e.Inc, if any (suspect)
	// acc2: a second member's accusation of e.Inc (confirmed): only
	// then is the member off the rings and out of Closest.
	acc2 *Accusation
	// loud: acc is public (spread, or learnt from the spread). A quiet
	// one is known only to its accuser, the subject and the subject's
	// other probers; the rest of the overlay sees the member alive.
	loud bool
	// dead: suspected past its deadline without a refutation.
	dead     bool
	deadline time.Time // suspect → dead
	until    time.Time // probation end: not live before (unconfirmed)
	local    time.Time // this node's own suspicion (Suspect): not live before
	digested uint64    // contribution XORed into the stable digest, 0 if none
	// confirmed: came from the member itself (or a trusted view), sent
	// this node a message itself, or stood a probation unaccused. Only an
	// unconfirmed member's new incarnations from third parties restart
	// its probation.
	confirmed bool
	changed   time.Time // when this node last took a new entry of it
}

func (r *rec) kind() uint8 {
	switch {
	case r.e.Left:
		return kindLeft
	case r.acc2 != nil:
		return kindConfirmed
	case r.acc != nil:
		return kindSuspect
	}
	return kindAlive
}

// eventTime is when r's current version was made (signed wall clock).
func (r *rec) eventTime() uint64 {
	if r.acc2 != nil && !r.e.Left {
		return max(r.acc2.Time, r.acc.Time, r.e.Inc)
	}
	if r.acc != nil && !r.e.Left {
		return max(r.acc.Time, r.e.Inc)
	}
	return r.e.Inc
}

// pub is r's kind as the overlay sees it: a quiet accusation is not.
func (r *rec) pub() uint8 {
	if k := r.kind(); k != kindSuspect || r.loud {
		return k
	}
	return kindAlive
}

// accs are r's public accusations, raw, to send with its entry.
func (r *rec) accs() [][]byte {
	var out [][]byte
	for _, a := range r.accusations() {
		out = append(out, a.Raw)
	}
	return out
}

// accusations are the accusations accs encodes.
func (r *rec) accusations() []*Accusation {
	switch {
	case r.acc == nil || r.pub() == kindAlive: // alive, left, or held quietly
		return nil
	case r.acc2 != nil:
		return []*Accusation{r.acc, r.acc2}
	}
	return []*Accusation{r.acc}
}

func (r *rec) item() item { return item{h: r.h, inc: r.e.Inc, kind: r.pub()} }

// candidate: r takes part in probing and dissemination (on the rings).
// One accuser's word (kindSuspect) does not take a member off them: its
// other probers go on probing it, and confirm or not.
func (r *rec) candidate() bool {
	k := r.kind()
	return !r.dead && (k == kindAlive || k == kindSuspect)
}

func (r *rec) live(now time.Time) bool {
	return r.candidate() && !now.Before(r.until) && !now.Before(r.local)
}

// contribution is r's share of the digest: its id hash, incarnation and
// whether it is alive, mixed (nonzero).
func (r *rec) contribution() uint64 {
	alive := uint64(0)
	if r.pub() == kindAlive {
		alive = 1
	}
	x := r.h ^ (r.e.Inc * 0x9e3779b97f4a7c15) ^ (alive * 0xbf58476d1ce4e5b9) ^ uint64(r.e.Region)<<56
	x ^= x >> 31
	x *= 0x94d049bb133111eb
	x ^= x >> 29
	return x | 1
}

// buckets split the id-hash space for anti-entropy.
const buckets = 64

func bucketOf(h uint64) int { return int(h >> 58) }

// leaves split each bucket in subBuckets for the second round of
// anti-entropy (a leaf's digest is computed when asked for, not kept).
const (
	subBuckets = 16
	leaves     = buckets * subBuckets
)

func leafOf(h uint64) int { return int(h >> 54) }

// leafDigests returns the stable digests of the leaves of the buckets in
// mask, bucket by bucket.
func (v *view) leafDigests(mask uint64) []uint64 {
	var all [leaves]uint64
	v.each(func(r *rec) bool {
		if r.digested != 0 && mask&(1<<bucketOf(r.h)) != 0 {
			all[leafOf(r.h)] ^= r.digested
		}
		return true
	})
	out := make([]uint64, 0, bits.OnesCount64(mask)*subBuckets)
	for b := 0; b < buckets; b++ {
		if mask&(1<<b) != 0 {
			out = append(out, all[b*subBuckets:(b+1)*subBuckets]...)
		}
	}
	return out
}

// Snapshot is a frozen view that many nodes of one process (a simulator, a
// testnet) can start from and share: each node copies an entry only when
// its own view of it changes.
type Snapshot struct {
	recs    map[uint64]*rec
	digests [buckets]uint64
	n       int
	region  region // what it holds (the whole space but for Within)
}

// view is a node's membership view: a shared base (a Snapshot, possibly
// empty) under the node's own changes.
type view struct {
	base    map[uint64]*rec
	own     map[uint64]*rec // nil value: deleted from the base
	n       int
	digests [buckets]uint64 // stable digest per bucket
	// idx orders the records by the first 64 bits of their Kademlia ID:
	// Closest's index (see nearest), built on its first use and kept in
	// step by add and del after. Not shared: a simulator's views share
	// their base, and only the views asked for replicas pay for one.
	idx []idxEnt
}

// idxEnt is one record in view.idx: its Kademlia prefix and id hash.
type idxEnt struct{ k, h uint64 }

// kprefix is the first 64 bits of a Kademlia ID.
func kprefix(kid [32]byte) uint64 { return binary.BigEndian.Uint64(kid[:8]) }

// index returns idx, building it if need be.
func (v *view) index() []idxEnt {
	if v.idx == nil {
		idx := make([]idxEnt, 0, v.n+1)
		v.each(func(r *rec) bool {
			idx = append(idx, idxEnt{kprefix(r.kid), r.h})
			return true
		})
		slices.SortFunc(idx, cmpIdx)
		v.idx = idx
	}
	return v.idx
}

func cmpIdx(a, b idxEnt) int {
	if c := cmp.Compare(a.k, b.k); c != 0 {
		return c
	}
	return cmp.Compare(a.h, b.h)
}

// indexAdd and indexDel keep a built idx in step with the records.
func (v *view) indexAdd(r *rec) {
	if v.idx == nil {
		return
	}
	e := idxEnt{kprefix(r.kid), r.h}
	i, _ := slices.BinarySearchFunc(v.idx, e, cmpIdx)
	v.idx = slices.Insert(v.idx, i, e)
}

func (v *view) indexDel(r *rec) {
	if v.idx == nil {
		return
	}
	if i, ok := slices.BinarySearchFunc(v.idx, idxEnt{kprefix(r.kid), r.h}, cmpIdx); ok {
		v.idx = slices.Delete(v.idx, i, i+1)
	}
}

func newView(s *Snapshot) *view {
	v := &view{own: map[uint64]*rec{}}
	if s != nil {
		v.base, v.n, v.digests = s.recs, s.n, s.digests
	}
	return v
}

func (v *view) get(h uint64) *rec {
	if r, ok := v.own[h]; ok {
		return r
	}
	return v.base[h]
}

// mut returns h's record for writing (copying a shared one).
func (v *view) mut(h uint64) *rec {
	if r, ok := v.own[h]; ok {
		return r
	}
	if r := v.base[h]; r != nil {
		c := *r
		v.own[h] = &c
		return &c
	}
	return nil
}

func (v *view) add(r *rec) {
	switch old := v.get(r.h); {
	case old == nil:
		v.n++
		v.indexAdd(r)
	case old.kid != r.kid: // another ID with the same hash takes the slot
		v.indexDel(old)
		v.indexAdd(r)
	}
	v.own[r.h] = r
}

func (v *view) del(h uint64) {
	r := v.get(h)
	if r == nil {
		return
	}
	v.n--
	v.indexDel(r)
	if _, ok := v.base[h]; ok {
		v.own[h] = nil
	} else {
		delete(v.own, h)
	}
}

// each calls f for every record until f returns false.
func (v *view) each(f func(*rec) bool) {
	for _, r := range v.own {
		if r != nil && !f(r) {
			return
		}
	}
	for h, r := range v.base {
		if _, ok := v.own[h]; ok {
			continue
		}
		if !f(r) {
			return
		}
	}
}

func (v *view) digest() uint64 {
	var d uint64
	for _, x := range v.digests {
		d ^= x
	}
	return d
}

func (v *view) undigest(r *rec) {
	if r.digested != 0 {
		v.digests[bucketOf(r.h)] ^= r.digested
		r.digested = 0
	}
}

func (v *view) digestIn(r *rec) {
	v.undigest(r)
	r.digested = r.contribution()
	v.digests[bucketOf(r.h)] ^= r.digested
}

// ringPos is a member's position on ring j (of up to 4): 8 bytes of its
// Kademlia ID, so rings are independent and cost nothing to compute.
func ringPos(kid *[32]byte, j int) uint64 { return binary.BigEndian.Uint64(kid[8*j:]) }
