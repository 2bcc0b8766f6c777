package membership

import (
	"bytes"
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Config configures one node's membership. Self, Sign and Verify are
// required; every duration has a default.
type Config struct {
	// Name separates signatures of different overlays.
	Name string
	// Self is this node's identity (libp2p peer ID bytes).
	Self string
	// Addrs and Services are what a serving node first announces.
	Addrs    [][]byte
	Services []string
	// Serve: this node is a member (announces itself, holds replicas,
	// probes and disseminates). Otherwise it follows a member's view.
	Serve bool
	// Sign signs with this node's identity key; Verify checks a
	// signature by the key of identity id.
	Sign   func(msg []byte) ([]byte, error)
	Verify func(id string, msg, sig []byte) bool
	// Period between probes of one ring successor. Default 1 s.
	Period time.Duration
	// PingTimeout: a probe without an ack after this goes indirect, and
	// fails after twice this. Default Period/2.
	PingTimeout time.Duration
	// FlushEvery: news is announced to the ring successors at most this
	// often, in one message each, unless it rides on another message sent
	// to them first (news.go; a change waits up to FlushEvery/2 a hop on
	// average; each message costs ~84 bytes of headers). Default Period,
	// or 5/4 of it in a view of 8192 records or more (flushEvery).
	FlushEvery time.Duration
	// SuspectTimeout: a member accused by two members, not refuting
	// within this, is dead. Default 3 × Period.
	SuspectTimeout time.Duration
	// LoneSuspect: how long one member's accusation, unconfirmed by a
	// second accuser, leaves a member suspect (still live and probed)
	// before it is dead. Default 3 × SuspectTimeout (Lifeguard's
	// suspicion that shortens with independent confirmations).
	LoneSuspect time.Duration
	// LocalSuspect: how long Suspect keeps a member out of Closest.
	// Default SuspectTimeout.
	LocalSuspect time.Duration
	// BanFor: how long a peer that sent a bad signature has its gossip
	// ignored (it still gets its probes answered). Default 10 × SyncEvery.
	BanFor time.Duration
	// Probation: a member learnt from a third party is not live (holds
	// no replica) until it has been in the view this long without being
	// accused. Default 2 × SuspectTimeout.
	Probation time.Duration
	// StableAfter: changes younger than this (by their signed time) stay
	// out of the anti-entropy digest, so updates still spreading do not
	// look like divergence. Default 10 × Period.
	StableAfter time.Duration
	// SyncEvery: at most one anti-entropy exchange per neighbour this
	// often. Default 30 × Period.
	SyncEvery time.Duration
	// Tombstone: a departed or dead member is forgotten this long after
	// its departure or accusation was made. Default 5 min. For its last
	// tenth it is retired first: held, but no longer digested or sent
	// (retireAt).
	Tombstone time.Duration
	// Rings: how many rings (1-4) this node probes a successor on and
	// disseminates along. Default 4 (up to 8 neighbours).
	Rings int
	// FloodRings: news is announced to the successors on the first this
	// many rings (1 to Rings). Default (0): 3, and 2 in a view of
	// deepSeeds records or more, where seeds go three hops (SeedHops): a
	// random graph of out-degree three spreads a change in O(log N) hops
	// as four does, and each node gets each announcement three times
	// instead of four; started from the few hundred members three seed
	// hops reach, out-degree two spreads it as fast, each node getting it
	// twice (news.go).
	FloodRings int
	// SeedHops: how many ring hops the member a change starts at pushes
	// it whole (seed, news.go): 1 to its neighbours alone, each hop more
	// relayed once more by those that took it (at most 4). Default (0):
	// by the view's size, as many as keep the seeds' reach a small share
	// of it (seedHops): 1 below 1024 records, 2 below deepSeeds, then 3,
	// and 4 for entries (seedHopsOf: a join waits out Probation after it
	// arrives, so its spread is what a join's time can lose).
	SeedHops int
	// MaxUnconfirmed bounds the members on probation that third parties
	// announced: in all, and a quarter of it per Group of the peer that
	// passed each on (without Group, every peer is one group: a quarter in
	// all). Default 1024.
	MaxUnconfirmed int
	// Group names where a peer's messages come from (an IPv4 /24); nil:
	// one group.
	Group func(from string) string
	// MaxPerGroup: at most this many live members per AddrGroup (this
	// node first in its own, then the lowest ids), so nodes that see the
	// same members keep the same ones. 0: no limit.
	MaxPerGroup int
	AddrGroup   func(e *Entry) string
	// Allowed, if set, refuses members it returns false for.
	Allowed func(id string) bool
	// RegionBits (0-6): keep a partial view, of the members whose id
	// hash starts with the same bits as this node's (region.go); 0 is the
	// full view.
	RegionBits int
	// Rand; default a random source.
	Rand *rand.Rand
}

func (c *Config) defaults() {
	if c.Period <= 0 {
		c.Period = time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = c.Period / 2
	}
	if c.SuspectTimeout <= 0 {
		c.SuspectTimeout = 3 * c.Period
	}
	if c.LoneSuspect <= 0 {
		c.LoneSuspect = 3 * c.SuspectTimeout
	}
	if c.LocalSuspect <= 0 {
		c.LocalSuspect = c.SuspectTimeout
	}
	if c.Probation <= 0 {
		c.Probation = 2 * c.SuspectTimeout
	}
	if c.StableAfter <= 0 {
		c.StableAfter = 10 * c.Period
	}
	if c.SyncEvery <= 0 {
		c.SyncEvery = 30 * c.Period
	}
	if c.BanFor <= 0 {
		c.BanFor = 10 * c.SyncEvery
	}
	if c.Tombstone <= 0 {
		c.Tombstone = 5 * time.Minute
	}
	if c.Rings <= 0 || c.Rings > 4 {
		c.Rings = 4
	}
	c.FloodRings = min(max(c.FloodRings, 0), c.Rings)
	c.SeedHops = min(max(c.SeedHops, 0), maxSeedHops)
	if c.MaxUnconfirmed <= 0 {
		c.MaxUnconfirmed = 1024
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
}

// Transport sends one message to a peer, without waiting: a message lost
// is a message lost. Send must not call back into Membership.
type Transport interface {
	Send(to string, msg []byte)
}

// Stats counts what a node's membership has done.
type Stats struct {
	MsgsSent, MsgsRecv   uint64
	BytesSent, BytesRecv uint64
	SentByType           [numMsgTypes]uint64 // messages
	SentBytesByType      [numMsgTypes]uint64
	Verifies             uint64 // signatures checked
	BadSignatures        uint64
	BadMessages          uint64
	OverUnconfirmed      uint64 // new members, and refutations of members never confirmed, refused by MaxUnconfirmed
	Accusations          uint64 // made by this node
	LateAcks             uint64 // acks of probes that had failed
	Refutations          uint64 // of accusations of this node
	Syncs                uint64 // anti-entropy exchanges started
	Bans                 uint64 // peers caught sending a bad signature
	Ignored              uint64 // messages from banned peers dropped
	NewsRidden           uint64 // announcements sent on other messages (news.go)
	Health               int    // local health score now: 0 best, 8 worst
}

// Membership is one node's SWIM-style membership: it probes its successor
// on each of a few rings (so every member is watched by a few others and
// each node talks to a bounded set of neighbours), floods changes to its
// neighbours as compact announcements that they fetch only when new, and
// repairs divergence by comparing bucketed digests. It does no I/O of its
// own and reads no clock: its driver calls Tick and Receive with the time
// and gives it a Transport. Not safe for concurrent use.
type Membership struct {
	cfg     Config
	tr      Transport
	selfKid [32]byte
	selfH   uint64
	inc     uint64
	addrs   [][]byte
	svcs    []string
	v       *view
	region  region // what the view holds (region.go)

	succ, pred [4]uint64
	fresh      []freshItem
	pending    map[uint64]*wanted
	probe      *probe
	failed     *probe // the last probe that failed, until its ack comes late
	probeIdx   int
	nextProbe  time.Time
	urgent     string    // a successor another prober accused: probe it next
	urgentAt   time.Time // no urgent probe before (one per probe period)
	seq        uint64
	relays     map[uint64]relay
	suspects   map[uint64]struct{}
	// recheck: members dead on this node's own accusation, and when to
	// ping them next (an answer gets them their accusation to refute).
	recheck map[uint64]time.Time
	// probProbes: the probes of members on probation in flight
	// (probationStep); none started before nextProbProbe.
	probProbes    []*probe
	nextProbProbe time.Time
	probLate      []*probe // the last maxProbProbes that failed, for late acks
	// dens: density's count (n), with the view's size (viewN), the
	// members on probation (onProb) and the time (at) it was counted at.
	dens struct {
		n, viewN, onProb int
		at               time.Time
	}
	// deferred: the newest entry of each member that came within
	// SuspectTimeout of its last (take), taken once that has passed or the
	// member is accused; at most maxDeferred.
	deferred map[uint64]deferredEntry
	// early: a trusted join answer's accusations waiting for their
	// accusers' entries (holdEarly).
	early []earlyAcc
	// nextFlush: news waits until then (FlushEvery).
	nextFlush time.Time
	// floodSet: the peers the last flush sent news to; told: how much
	// of fresh each was told since, on other messages (news.go).
	floodSet map[string]struct{}
	told     map[string]int
	// origin: the member whose own entry is being taken from it (a
	// join); seedAt: the seeds' rate bound (seed, news.go).
	origin string
	seedAt time.Time
	// answering: a trusted join answer is being taken (onUpdates).
	answering bool
	// relayFrom: the peer whose seed (a msgUpdates marked fieldSeed)
	// onUpdates is taking, whose changes this node seeds once more;
	// relayAt: those relays' rate bound (seed).
	relayFrom string
	relayHops int
	relayAt   time.Time
	probQ     timerHeap // probation ends and local suspicions
	stableQ   timerHeap
	purgeQ    timerHeap
	peers     map[string]*peerState
	listeners map[string]time.Time
	unconf    map[string]int
	joinFrom  string // the peer last asked to join through
	// joins: the peers asked to join through in the last half SyncEvery
	// (their answers are taken for that long), at most maxJoins, with how
	// far each answer skips probation (joinTrust). A node joins
	// through all its bootstrap peers at once: with only the last one
	// asked remembered, the others' answers put every member on
	// probation, off the rings, and the joiner flooded and probed the
	// whole view (at 300 members, 30 joiners dialled ~300 each within a
	// second, and the probes their handshakes delayed were accused).
	joins map[string]joinAsk
	// joinedAt: when the answer to a join came (a partial view's region
	// may hold no one else yet: an empty answer is an answer).
	joinedAt time.Time
	version  uint64
	now      time.Time        // of the latest call
	onProb   map[uint64]uint8 // members on probation (off the rings): how far this node probed them in this probation
	// probGroup: the group each member on probation is charged to
	// (chargeProb).
	probGroup map[uint64]string
	offRing   map[uint64]struct{} // members whose views differ in kind from this one's (ringable; some may be gone: checked on use)
	capped    map[uint64]bool     // over MaxPerGroup, as of cappedAt
	health    int                 // local health score (Lifeguard), 0 best
	cappedAt  uint64
	stats     Stats
	// LiveCount's and Announced's answers, as of the version and time
	// they were gathered (summary).
	sum     liveSummary
	sumVer  uint64
	sumAt   time.Time
	sumNext time.Time // the next time a member's liveness changes with time alone
}

// liveSummary is what the request path asks of the live members, gathered
// in one walk of the view.
type liveSummary struct {
	n        int
	services map[string][]string // by member id; shared, read-only
}

type freshItem struct {
	it   item
	from string
}

// wanted is an announced version asked for and not yet received, with
// other peers that announced it, to ask next.
type wanted struct {
	it    item
	until time.Time
	alts  []string
	// full: its accusations are asked for in full, not compact (the
	// view lacked an accuser).
	full bool
}

type deferredEntry struct {
	e    *Entry
	from string
}

// Members on probation, as probed by this node (onProb).
const (
	probUnprobed = iota // not probed in this probation yet
	probProbed          // probed (or left alone: not in this node's gaps)
	probAnswered        // answered a probe, directly or through a helper
)

type probe struct {
	target   string
	seq      uint64
	sent     time.Time
	indirect bool
	cold     bool          // no exchange with target yet (a connection to set up)
	rto      time.Duration // the target's retransmission timeout (rto), when sent
	helpers  []string      // asked to ping target (indirect): their acks count
}

// acks: from is the probe's target or a helper asked to ping it, the
// only peers whose ack of the probe counts (another's would be a guess of
// the sequence number, to keep a dead member live or this node's health
// score up).
func (p *probe) acks(from string) bool {
	return from == p.target || contains(p.helpers, from)
}

type relay struct {
	requester string
	target    string // pinged for requester: only its ack is passed on
	seq       uint64
	at        time.Time
}

type peerState struct {
	mismatch int
	lastSync time.Time
	lastReq  time.Time
	// asked: a sync sent to it, its answer (a summary or leaf digests)
	// not taken yet; listed: leaf digests sent to it, its leaf summary
	// not taken yet. Anti-entropy answers only what was asked for.
	asked, listed time.Time
	listedMask    uint64 // the buckets whose leaf digests were sent
	lastJoin      time.Time
	banned        time.Time // gossip ignored before (a bad signature)
	seen          time.Time
	// toldAcc: when it was last sent its own accusation (tellAccused);
	// toldCur: when it was last sent this node's entry (tellCurrent).
	toldAcc, toldCur time.Time
	// srtt, rttvar: its probes' round trips, smoothed (RFC 6298), from
	// its own acks, late ones too (zero: none yet).
	srtt, rttvar time.Duration
	// joined: the region its last join was answered for.
	joined region
	// region: what it last said it shares with this node (told: it did).
	region region
	told   bool
	// news: its probes say it reads news on other messages (news.go).
	news bool
}

// due reports whether an act last done at *last may be done again (at
// most once per every), and if so marks it done now.
func due(last *time.Time, now time.Time, every time.Duration) bool {
	if !last.IsZero() && now.Sub(*last) < every {
		return false
	}
	*last = now
	return true
}

// New returns a node's membership at time now, its view starting from
// base (nil: empty). A serving node signs its first entry with addrs and
// services.
func New(cfg Config, tr Transport, now time.Time, base *Snapshot) (*Membership, error) {
	cfg.defaults()
	if cfg.RegionBits < 0 || cfg.RegionBits > maxRegionBits {
		return nil, fmt.Errorf("membership: region of %d bits (0 to %d)", cfg.RegionBits, maxRegionBits)
	}
	selfKid := KeyID(cfg.Self)
	if base != nil {
		base = base.Within(cfg.Self, cfg.RegionBits)
	}
	m := &Membership{
		cfg: cfg, tr: tr, v: newView(base),
		region:    regionOf(hashOf(selfKid), cfg.RegionBits),
		selfKid:   selfKid,
		pending:   map[uint64]*wanted{},
		relays:    map[uint64]relay{},
		suspects:  map[uint64]struct{}{},
		recheck:   map[uint64]time.Time{},
		peers:     map[string]*peerState{},
		listeners: map[string]time.Time{},
		floodSet:  map[string]struct{}{},
		told:      map[string]int{},
		unconf:    map[string]int{},
		onProb:    map[uint64]uint8{},
		probGroup: map[uint64]string{},
		deferred:  map[uint64]deferredEntry{},
		offRing:   map[uint64]struct{}{},
		now:       now,
	}
	m.selfH = hashOf(m.selfKid)
	m.seedAt = now.Add(m.cfg.Period) // nothing seeded from New (its first entry, a snapshot's)
	m.relayAt = m.seedAt
	m.nextProbe = now.Add(time.Duration(cfg.Rand.Int64N(int64(cfg.Period))))
	if base != nil {
		for h, r := range m.v.base {
			if r.e.Region != cfg.RegionBits {
				m.offRing[h] = struct{}{}
			}
		}
		for j := 0; j < cfg.Rings; j++ {
			m.rescan(j)
		}
	}
	if !cfg.Serve {
		return m, nil
	}
	m.addrs, m.svcs = slices.Clone(cfg.Addrs), slices.Clone(cfg.Services)
	slices.SortFunc(m.addrs, bytes.Compare)
	m.inc = uint64(now.UnixNano())
	if r := m.v.get(m.selfH); r != nil && r.e.ID == cfg.Self {
		// A shared snapshot holding this node's current entry: keep it.
		if r.kind() == kindAlive && sameEntry(r.e, m.addrs, m.svcs) && r.e.Region == cfg.RegionBits {
			m.inc = r.e.Inc
			return m, nil
		}
		m.inc = max(m.inc, r.e.Inc+1)
	}
	if err := m.announce(now); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Membership) entryPrefix() []byte { return []byte("lsnode/members/" + m.cfg.Name + "\x00") }
func (m *Membership) accPrefix() []byte   { return []byte("lsnode/suspect/" + m.cfg.Name + "\x00") }

func (m *Membership) sign(prefix, body []byte) ([]byte, error) {
	sig, err := m.cfg.Sign(append(prefix, body...))
	if err != nil {
		return nil, err
	}
	return appendSig(body, sig), nil
}

func (m *Membership) verify(id string, prefix, body, sig []byte) bool {
	m.stats.Verifies++
	if m.cfg.Verify(id, append(prefix, body...), sig) {
		return true
	}
	m.stats.BadSignatures++
	return false
}

// announce signs this node's entry at its current incarnation and takes
// it into the view.
func (m *Membership) announce(now time.Time) error {
	return m.announceLeft(now, false)
}

func (m *Membership) announceLeft(now time.Time, left bool) error {
	raw, err := m.sign(m.entryPrefix(), entryBody(m.cfg.Self, m.inc, m.addrs, m.svcs, left, int(m.region.bits)))
	if err != nil {
		return err
	}
	e, err := DecodeEntry(raw)
	if err != nil {
		return err
	}
	m.take(now, e, m.cfg.Self, true)
	return nil
}

// raise moves this node to a new incarnation.
func (m *Membership) raise(now time.Time) { m.inc = max(m.inc+1, uint64(now.UnixNano())) }

// SetSelf changes what this node announces; a change is signed at a new
// incarnation and spread.
func (m *Membership) SetSelf(now time.Time, addrs [][]byte, services []string) error {
	if !m.cfg.Serve {
		m.addrs, m.svcs = addrs, services
		return nil
	}
	// A host may list the same addresses in another order: not a change.
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, bytes.Compare)
	if r := m.v.get(m.selfH); r != nil && sameEntry(r.e, addrs, services) && r.kind() == kindAlive {
		return nil
	}
	m.addrs, m.svcs = addrs, slices.Clone(services)
	m.raise(now)
	return m.announce(now)
}

func sameEntry(e *Entry, addrs [][]byte, services []string) bool {
	return slices.EqualFunc(addrs, e.Addrs, func(a, b []byte) bool { return string(a) == string(b) }) &&
		slices.Equal(services, e.Services)
}

// SignEntry returns a member's signed entry (a simulator's or a test's
// way to make many at once).
func SignEntry(name, id string, inc uint64, addrs [][]byte, services []string, left bool, region int, sign func([]byte) ([]byte, error)) ([]byte, error) {
	body := entryBody(id, inc, addrs, services, left, region)
	sig, err := sign(append([]byte("lsnode/members/"+name+"\x00"), body...))
	if err != nil {
		return nil, err
	}
	return appendSig(body, sig), nil
}

// NewSnapshot builds a shared view of the given signed entries, settled
// (see Freeze). It checks nothing but that they decode.
func NewSnapshot(raws [][]byte) (*Snapshot, error) {
	s := &Snapshot{recs: map[uint64]*rec{}}
	for _, raw := range raws {
		e, err := DecodeEntry(raw)
		if err != nil {
			return nil, err
		}
		kid := KeyID(e.ID)
		r := &rec{h: hashOf(kid), kid: kid, e: e}
		r.digested = r.contribution()
		s.recs[r.h] = r
		s.digests[bucketOf(r.h)] ^= r.digested
	}
	s.n = len(s.recs)
	return s, nil
}

// Join asks boot for its view (and, for a member, to spread this node's
// entry). Call it again if no answer came. boot is a peer the operator
// configured: its answer skips probation while the join is pending (half
// SyncEvery), alongside the other bootstrap peers asked meanwhile.
func (m *Membership) Join(now time.Time, boot string) {
	m.join(now, boot, joinTrusted)
}

// JoinNear is Join through a peer found rather than configured (a partial
// view's nearest members, as kad-dht knows them): its answer skips
// probation only while it is the last peer asked, so a sybil placed near
// this node's id cannot have its members taken live for the whole window.
func (m *Membership) JoinNear(now time.Time, p string) {
	m.join(now, p, joinLatest)
}

// joinAsk is one join asked for: when, and how far its answer is trusted.
type joinAsk struct {
	at    time.Time
	trust joinTrust
}

type joinTrust int

const (
	joinUntrusted joinTrust = iota // its members on probation (Merge, a widened region)
	joinLatest                     // trusted while the last asked (JoinNear)
	joinTrusted                    // trusted (Join: a bootstrap peer)
)

// maxJoins bounds the joins remembered: a node asks its bootstrap peers
// at once (a handful: past maxJoins the first asked's answer goes on
// probation), one at a time after that.
const maxJoins = 8

func (m *Membership) join(now time.Time, boot string, trust joinTrust) {
	m.joinFrom = boot
	if m.joins == nil {
		m.joins = map[string]joinAsk{}
	}
	var oldest string
	for p, a := range m.joins {
		if now.Sub(a.at) > m.cfg.SyncEvery/2 {
			delete(m.joins, p)
		} else if oldest == "" || a.at.Before(m.joins[oldest].at) {
			oldest = p
		}
	}
	if _, ok := m.joins[boot]; !ok && len(m.joins) >= maxJoins {
		delete(m.joins, oldest)
	}
	m.joins[boot] = joinAsk{at: now, trust: trust}
	var entries [][]byte
	if r := m.v.get(m.selfH); m.cfg.Serve && r != nil {
		entries = [][]byte{r.e.Raw}
	}
	m.send(boot, appendRegion(encodeUpdates(msgJoin, entries, nil), m.region))
}

// Leave announces this node's departure to its neighbours.
func (m *Membership) Leave(now time.Time) {
	if !m.cfg.Serve {
		return
	}
	m.raise(now)
	if m.announceLeft(now, true) != nil {
		return
	}
	msg := encodeUpdates(msgUpdates, [][]byte{m.v.get(m.selfH).e.Raw}, nil)
	for _, p := range m.Neighbours() {
		m.send(p, msg)
	}
	for p := range m.listeners {
		m.send(p, msg)
	}
	m.fresh = nil
	clear(m.told)
}

func (m *Membership) send(to string, msg []byte) {
	msg = m.ride(to, msg)
	m.stats.MsgsSent++
	m.stats.BytesSent += uint64(len(msg))
	m.stats.SentByType[msg[0]]++
	m.stats.SentBytesByType[msg[0]] += uint64(len(msg))
	m.tr.Send(to, msg)
}

// Stats returns the counters.
func (m *Membership) Stats() Stats {
	st := m.stats
	st.Health = m.health
	return st
}

// Health is the local health score (Lifeguard): 0 best, maxHealth worst.
func (m *Membership) Health() int { return m.health }

// Version changes whenever the set of live members may have changed.
func (m *Membership) Version() uint64 { return m.version }

// Size is the number of members in the view (live or not yet forgotten).
func (m *Membership) Size() int { return m.v.n }

// Digest is the view's stable digest (equal on nodes that agree).
func (m *Membership) Digest() uint64 { return m.v.digest() }

// timers

type timer struct {
	at   time.Time
	h    uint64
	inc  uint64
	kind uint8
}

type timerHeap []timer

func (t timerHeap) Len() int           { return len(t) }
func (t timerHeap) Less(i, j int) bool { return t[i].at.Before(t[j].at) }
func (t timerHeap) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *timerHeap) Push(x any)        { *t = append(*t, x.(timer)) }
func (t *timerHeap) Pop() any {
	old := *t
	x := old[len(old)-1]
	*t = old[:len(old)-1]
	return x
}

func (t *timerHeap) due(now time.Time) (timer, bool) {
	if len(*t) == 0 || (*t)[0].at.After(now) {
		return timer{}, false
	}
	return heap.Pop(t).(timer), true
}

func unixTime(ns uint64) time.Time { return time.Unix(0, int64(min(ns, 1<<62))) }

// SetServe turns this node into a member (announcing a new incarnation)
// or back into a follower (announcing its departure).
func (m *Membership) SetServe(now time.Time, serve bool) error {
	if serve == m.cfg.Serve {
		return nil
	}
	if !serve {
		m.Leave(now)
		m.cfg.Serve = false
		return nil
	}
	m.cfg.Serve = true
	m.raise(now)
	return m.announce(now)
}

// Heal checks on p, a peer that may be on the other side of a partition
// (a bootstrap peer), and reports whether it sent anything. A part of the
// overlay cut off from the rest for long enough has declared the rest
// dead, then purged it, and the rest it; only a peer that this view holds
// dead, or does not hold though it belongs in it (this node's region),
// can be on the other side. One held dead is pinged with this node's
// digest (its answer gets it its accusation, which it refutes, and the
// two sides' digests then differ); one not held is asked for its view
// (Merge). One held in any other state (live, on probation, suspected,
// over its group's cap) is on this side, and is left alone: checking it
// anyway cost the few bootstrap peers a dial and a digest check per
// member and interval, a cost that grew with the overlay.
func (m *Membership) Heal(now time.Time, p string) bool {
	if !m.region.has(hashOf(KeyID(p))) || p == m.cfg.Self {
		return false
	}
	switch r := m.v.get(hashOf(KeyID(p))); {
	case r == nil || r.e.ID != p:
		m.join(now, p, joinUntrusted)
	case r.dead:
		m.seq++
		m.send(p, m.probeTo(msgPing, m.seq, p))
	default:
		return false
	}
	return true
}
