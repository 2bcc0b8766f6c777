// Package sim runs the overlay's real membership code (overlay/membership)
// for thousands of members over a simulated network in virtual time: no
// sockets, no sleeps. Messages are the real encoded bytes, delayed by a
// latency distribution and dropped at a loss rate; members come and go by
// a session-time distribution. It measures what each member pays and how
// fast and how well views follow the changes.
package sim

import (
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/lsnode/lsnode/overlay/membership"
)

// Config describes one run.
type Config struct {
	N        int           // members at the start (and kept by churn)
	Seed     uint64        // the run is deterministic for a seed
	Period   time.Duration // membership probe period; default 1 s
	Tick     time.Duration // how often each node's timers run; default Period/5, as overlay's driver
	Warmup   time.Duration // before measuring; default 20 s
	Duration time.Duration // measured window; default 60 s
	// Latency median and spread (lognormal sigma); defaults 20 ms, 0.5.
	Latency time.Duration
	Sigma   float64
	Loss    float64 // message loss probability
	// Churn: sessions last a Weibull-distributed time with this median and
	// shape (default 1: exponential; measured P2P sessions are heavier
	// tailed, shape 0.3-0.6, which for the same median means fewer
	// departures); 0: no churn. Each departure (a crash: no goodbye) is followed after Downtime
	// (default 1 s) by a new member joining through a random live one.
	Median time.Duration
	Shape  float64
	// Downtime before a departed member is replaced.
	Downtime time.Duration
	// Observers is the sample of views checked for the spread of each
	// change and for lookups; default 400.
	Observers int
	// Lookups per virtual second, each from a random observer to a random
	// key, for R replicas; defaults 200 and 3.
	Lookups  int
	Replicas int
	// Stalls: how often a member, on average, stops for StallFor (a
	// process starved of CPU: it neither runs its timers nor reads its
	// messages meanwhile, which wait for it); 0: never. This is how an
	// overloaded machine makes probes fail and members accuse live ones.
	Stalls   time.Duration
	StallFor time.Duration
	// Partial: the fraction of members (0 to 1) keeping a partial view,
	// of a region of RegionBits bits (membership.Config.RegionBits). A
	// lookup of a key outside the asker's region goes where kad-dht's
	// routing ends, the key's nearest member, and takes that view.
	Partial    float64
	RegionBits int
	// FlushEvery: membership.Config's (0: its default, a Period).
	FlushEvery time.Duration
	// FloodRings, SeedHops: membership.Config's (0: its default).
	FloodRings, SeedHops int
}

func (c *Config) defaults() {
	if c.Period <= 0 {
		c.Period = time.Second
	}
	if c.Tick <= 0 {
		c.Tick = c.Period / 5
	}
	if c.Warmup <= 0 {
		c.Warmup = 20 * time.Second
	}
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.Latency <= 0 {
		c.Latency = 20 * time.Millisecond
	}
	if c.Sigma <= 0 {
		c.Sigma = 0.5
	}
	if c.Shape <= 0 {
		c.Shape = 1
	}
	if c.Downtime <= 0 {
		c.Downtime = time.Second
	}
	if c.Observers <= 0 {
		c.Observers = 400
	}
	if c.Lookups <= 0 {
		c.Lookups = 200
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
}

// WireOverhead is what one message costs on the wire beyond its payload
// in the real overlay: a length prefix (2), yamux header (12), noise length
// and tag (18) and TCP/IPv4 headers (52), one message per segment.
const WireOverhead = 84

// Report is what a run measured, per member over the measured window
// (members present for all of it).
type Report struct {
	N, Members                 int
	Window                     time.Duration
	SentMean, SentP99          float64 // bytes/s, payload + WireOverhead per message
	RecvMean, RecvP99          float64
	PayloadMean                float64 // bytes/s sent, payload only
	MsgsPerSec                 float64 // sent, mean
	VerifiesPerSec             float64 // signature checks, mean
	Joins, Failures            int     // changes made in the window
	JoinP99, FailP99           time.Duration
	JoinP50, FailP50           time.Duration
	JoinMax, FailMax           time.Duration
	Unreached                  int // changes that never reached 99% of the observers
	LookupsDone, OneHop, Right int
	HopsMean                   float64 // over lookups not one hop
	// Routed: lookups of a key outside the asker's partial view, answered
	// by the key's nearest member (kad-dht's hops not simulated); right
	// when its view gave the true set. Counted in LookupsDone and Right.
	Routed, RoutedRight int
	// PartialMembers and PartialSent: how many of Members keep a partial
	// view, and what one sends (bytes/s, mean, with WireOverhead).
	PartialMembers int
	PartialSent    float64
	RealTime       time.Duration
	Syncs          float64
	// WronglyDead: at the end, (observer, member) pairs where a member up
	// for over a minute is not live in the observer's view; Stalls made.
	WronglyDead, Stalls int
	// Ridden: announcements a node sent per second on other messages
	// (membership's news.go) instead of in a have of their own.
	Ridden     float64
	ByType     [16]float64 // payload bytes sent, all nodes, by message type
	MsgsByType [16]float64 // messages sent, all nodes, by type
}

func (r Report) String() string {
	return fmt.Sprintf("sim N=%d: sent %.0f B/s/node (p99 %.0f), recv %.0f (p99 %.0f), payload %.0f B/s, %.1f msgs/s, %.1f verifies/s, %.1f announcements/s ridden; "+
		"joins %d p50 %v p99 %v, failures %d p50 %v p99 %v (unreached %d); lookups %d one-hop %.2f%% right after skipping dead %.2f%% hops-if-not %.2f; %d stalls, %d wrongly dead; %v real",
		r.N, r.SentMean, r.SentP99, r.RecvMean, r.RecvP99, r.PayloadMean, r.MsgsPerSec, r.VerifiesPerSec, r.Ridden,
		r.Joins, r.JoinP50.Round(10*time.Millisecond), r.JoinP99.Round(10*time.Millisecond),
		r.Failures, r.FailP50.Round(10*time.Millisecond), r.FailP99.Round(10*time.Millisecond), r.Unreached,
		r.LookupsDone, pct(r.OneHop, r.LookupsDone), pct(r.Right, r.LookupsDone), r.HopsMean, r.Stalls, r.WronglyDead, r.RealTime.Round(time.Second)) +
		r.partial()
}

func (r Report) partial() string {
	if r.Routed == 0 {
		return ""
	}
	return fmt.Sprintf("; %d partial views send %.0f B/s each; routed to the key's region %d, right %.2f%%",
		r.PartialMembers, r.PartialSent, r.Routed, pct(r.RoutedRight, r.Routed))
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

type node struct {
	id     string
	kid    [32]byte
	m      *membership.Membership
	alive  bool
	joined time.Duration // when it came up
	sent0  membership.Stats
	base   bool // present at the start of the window
	bits   int  // region bits of its view (0: full)
	// stalled: the member runs nothing before this time.
	stalled time.Duration
}

type event struct {
	at   time.Duration
	seq  uint64
	kind uint8 // 0 tick, 1 message, 2 depart, 3 arrive, 4 observe, 6 start of the window
	to   int32
	from int32
	msg  []byte
}

type queue []event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	return q[i].at < q[j].at || q[i].at == q[j].at && q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *queue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// change is a join or a failure whose spread is being watched.
type change struct {
	node    int32
	join    bool
	at      time.Duration
	reached time.Duration // when 99% of observers agreed; 0: not yet
}

type world struct {
	cfg     Config
	rng     *rand.Rand
	now     time.Duration
	epoch   time.Time
	q       queue
	seq     uint64
	nodes   []*node
	byID    map[string]int32
	obs     []int32
	changes []*change
	rep     Report
	hops    []int
	spreads [2][]time.Duration              // failures, joins
	regions map[uint64]*membership.Snapshot // the shared start, per region
}

// Run simulates cfg and reports.
func Run(cfg Config) (Report, error) {
	cfg.defaults()
	start := time.Now()
	w := &world{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed)), epoch: time.Unix(1_800_000_000, 0),
		byID: map[string]int32{}}
	if err := w.populate(); err != nil {
		return Report{}, err
	}
	end := cfg.Warmup + cfg.Duration
	w.push(event{at: cfg.Warmup, kind: 6})
	w.push(event{at: 100 * time.Millisecond, kind: 4})
	for len(w.q) > 0 {
		ev := heap.Pop(&w.q).(event)
		if ev.at > end {
			break
		}
		w.now = ev.at
		w.handle(ev)
	}
	w.finish(end)
	w.rep.RealTime = time.Since(start)
	return w.rep, nil
}

func (w *world) push(ev event) {
	w.seq++
	ev.seq = w.seq
	heap.Push(&w.q, ev)
}

func (w *world) clock() time.Time { return w.epoch.Add(w.now) }

// populate starts N members sharing one settled view, as if they had been
// running for a while.
func (w *world) populate() error {
	var raws [][]byte
	for i := 0; i < w.cfg.N; i++ {
		n := w.newNode()
		w.choose(n)
		raw, err := membership.SignEntry("sim", n.id, uint64(w.epoch.UnixNano())-uint64(i), addrsOf(n.id), nil, false, n.bits, signer(n.id))
		if err != nil {
			return err
		}
		raws = append(raws, raw)
	}
	snap, err := membership.NewSnapshot(raws)
	if err != nil {
		return err
	}
	w.regions = map[uint64]*membership.Snapshot{}
	for i := range w.nodes {
		n := w.nodes[i]
		s := snap
		if n.bits > 0 {
			g := binary.BigEndian.Uint64(n.kid[:8]) >> (64 - n.bits)
			if w.regions[g] == nil {
				w.regions[g] = snap.Within(n.id, n.bits)
			}
			s = w.regions[g]
		}
		if err := w.start(int32(i), s); err != nil {
			return err
		}
		w.depart(int32(i), true)
	}
	perm := w.rng.Perm(len(w.nodes))
	for _, i := range perm[:min(w.cfg.Observers, len(perm))] {
		w.obs = append(w.obs, int32(i))
	}
	return nil
}

func (w *world) newNode() *node {
	b := make([]byte, 38) // the size of an Ed25519 peer ID
	for i := range b {
		b[i] = byte(w.rng.Uint32())
	}
	b[0], b[1] = 0x00, 0x24
	n := &node{id: string(b), kid: membership.KeyID(string(b))}
	w.byID[n.id] = int32(len(w.nodes))
	w.nodes = append(w.nodes, n)
	return n
}

func addrsOf(id string) [][]byte {
	h := sha256.Sum256([]byte(id))
	return [][]byte{append([]byte{0x04, 10, h[0], h[1], h[2], 0x06}, h[3], h[4])} // /ip4/10.x.y.z/tcp/p
}

// signer and verify stand in for Ed25519 (the simulator counts
// verifications; it need not pay for them): a keyed hash, padded to the
// size of an Ed25519 signature.
func signer(id string) func([]byte) ([]byte, error) {
	return func(msg []byte) ([]byte, error) { return fakeSig(id, msg), nil }
}

func fakeSig(id string, msg []byte) []byte {
	h := sha256.New()
	h.Write([]byte(id))
	h.Write(msg)
	return append(h.Sum(nil), make([]byte, 32)...)
}

func verify(id string, msg, sig []byte) bool { return string(fakeSig(id, msg)) == string(sig) }

type transport struct {
	w    *world
	from int32
}

func (t transport) Send(to string, msg []byte) {
	w := t.w
	i, ok := w.byID[to]
	if !ok || w.rng.Float64() < w.cfg.Loss {
		return
	}
	d := time.Duration(float64(w.cfg.Latency) * math.Exp(w.cfg.Sigma*w.rng.NormFloat64()))
	w.push(event{at: w.now + d, kind: 1, to: i, from: t.from, msg: msg})
}

func (w *world) start(i int32, snap *membership.Snapshot) error {
	n := w.nodes[i]
	m, err := membership.New(membership.Config{Name: "sim", Self: n.id, Serve: true, Addrs: addrsOf(n.id),
		Sign: signer(n.id), Verify: verify, Period: w.cfg.Period, RegionBits: n.bits, FlushEvery: w.cfg.FlushEvery,
		FloodRings: w.cfg.FloodRings, SeedHops: w.cfg.SeedHops,
		Rand: rand.New(rand.NewPCG(w.rng.Uint64(), w.rng.Uint64()))}, transport{w, i}, w.clock(), snap)
	if err != nil {
		return err
	}
	n.m, n.alive, n.joined = m, true, w.now
	w.push(event{at: w.now + time.Duration(w.rng.Int64N(int64(w.cfg.Tick))), kind: 0, to: i})
	return nil
}

// depart schedules node i's crash at the end of a session.
func (w *world) depart(i int32, first bool) {
	if w.cfg.Median <= 0 {
		return
	}
	// Weibull with the given median: scale λ = median / ln(2)^(1/k).
	k := w.cfg.Shape
	scale := float64(w.cfg.Median) / math.Pow(math.Ln2, 1/k)
	life := time.Duration(scale * math.Pow(-math.Log(1-w.rng.Float64()), 1/k))
	if first {
		// Already part-way through: the remaining life of a session in
		// progress has density S(t)/mean (S the survival function), so
		// the run starts in equilibrium rather than with a burst of
		// short sessions ending.
		for {
			t := w.rng.Float64() * 60 * scale
			if w.rng.Float64() < math.Exp(-math.Pow(t/scale, k)) {
				life = time.Duration(t)
				break
			}
		}
	}
	w.push(event{at: w.now + life, kind: 2, to: i})
}

func (w *world) handle(ev event) {
	if (ev.kind == 0 || ev.kind == 1) && w.nodes[ev.to].stalled > w.now {
		ev.at = w.nodes[ev.to].stalled // waits for the member to run again
		w.push(ev)
		return
	}
	switch ev.kind {
	case 0:
		n := w.nodes[ev.to]
		if !n.alive {
			return
		}
		if w.cfg.Stalls > 0 && w.rng.Float64() < float64(w.cfg.Tick)/float64(w.cfg.Stalls) {
			n.stalled = w.now + w.cfg.StallFor
			w.rep.Stalls++
		}
		n.m.Tick(w.clock())
		if !n.m.Joined() && w.now-n.joined > 2*w.cfg.Period {
			w.join(ev.to) // the join's answer was lost
		}
		w.push(event{at: w.now + w.cfg.Tick, kind: 0, to: ev.to})
	case 1:
		if n := w.nodes[ev.to]; n.alive {
			_ = n.m.Receive(w.clock(), w.nodes[ev.from].id, ev.msg)
		}
	case 2:
		n := w.nodes[ev.to]
		// Its view is dropped with it: a departed member's full view of
		// 10 000 members holds 1.6 MB, and after 5 minutes of churn the
		// ones kept would outgrow the machine.
		n.alive, n.m = false, nil
		w.watch(ev.to, false)
		w.push(event{at: w.now + w.cfg.Downtime, kind: 3})
	case 3:
		w.arrive()
	case 4:
		w.observe()
		w.push(event{at: w.now + 100*time.Millisecond, kind: 4})
	case 6:
		for _, n := range w.nodes {
			n.base = n.alive
			if n.alive {
				n.sent0 = n.m.Stats()
			}
		}
	}
}

// arrive starts a new member that joins through a random live one.
func (w *world) arrive() {
	w.choose(w.newNode())
	i := int32(len(w.nodes) - 1)
	if err := w.start(i, nil); err != nil {
		panic(err)
	}
	w.join(i)
	w.watch(i, true)
	w.depart(i, false)
}

// choose makes n keep a partial view with probability cfg.Partial.
func (w *world) choose(n *node) {
	if w.cfg.Partial > 0 && w.rng.Float64() < w.cfg.Partial {
		n.bits = w.cfg.RegionBits
	}
}

// join asks a random live member whose view holds i's: a full one, or
// one of i's region (kad-dht's lookup of a joiner's own id finds them).
func (w *world) join(i int32) {
	n := w.nodes[i]
	for {
		j := w.rng.IntN(len(w.nodes))
		if b := w.nodes[j]; b.alive && int32(j) != i && (b.bits == 0 || n.bits > 0 && b.m.Covers(n.kid)) {
			n.m.Join(w.clock(), b.id)
			return
		}
	}
}

func (w *world) watch(i int32, join bool) {
	if w.now < w.cfg.Warmup {
		return
	}
	w.changes = append(w.changes, &change{node: i, join: join, at: w.now})
}

// observe checks, for each change still spreading, how many observers'
// views agree with it; and runs this tenth of a second's lookups.
func (w *world) observe() {
	now := w.clock()
	keep := w.changes[:0]
	for _, c := range w.changes {
		if c.reached != 0 {
			continue
		}
		agree, total := 0, 0
		id := w.nodes[c.node].id
		for _, o := range w.obs {
			on := w.nodes[o]
			if !on.alive || o == c.node || on.joined > c.at || !on.m.Covers(w.nodes[c.node].kid) {
				continue
			}
			total++
			if on.m.Alive(now, id) == c.join {
				agree++
			}
		}
		if total > 0 && agree*100 >= 99*total {
			c.reached = w.now - c.at
			w.record(c)
			continue
		}
		if w.now-c.at > 60*time.Second {
			w.rep.Unreached++
			continue
		}
		keep = append(keep, c)
	}
	w.changes = keep
	if w.now >= w.cfg.Warmup {
		for k := 0; k < w.cfg.Lookups/10; k++ {
			w.lookup()
		}
	}
}

func (w *world) record(c *change) {
	if c.join {
		w.rep.Joins++
		w.rep.JoinMax = max(w.rep.JoinMax, c.reached)
	} else {
		w.rep.Failures++
		w.rep.FailMax = max(w.rep.FailMax, c.reached)
	}
	j := 0
	if c.join {
		j = 1
	}
	w.spreads[j] = append(w.spreads[j], c.reached)
}

// lookup asks a random observer for a random key's replica set and
// follows the closest members' views until the true set comes back.
func (w *world) lookup() {
	var o *node
	for o == nil || !o.alive || !o.m.Joined() {
		o = w.nodes[w.obs[w.rng.IntN(len(w.obs))]]
	}
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], w.rng.Uint64())
	binary.BigEndian.PutUint64(key[8:], w.rng.Uint64())
	truth := w.truth(key)
	now := w.clock()
	w.rep.LookupsDone++
	if !o.m.Covers(key) {
		// Outside a partial view: kad-dht's iterative lookup ends at the
		// key's nearest member, whose view answers.
		w.rep.Routed++
		if len(truth) > 0 && slices.Equal(w.nodes[w.byID[truth[0]]].m.Closest(now, key, w.cfg.Replicas), truth) {
			w.rep.RoutedRight++
			w.rep.Right++
		}
		return
	}
	got := o.m.Closest(now, key, w.cfg.Replicas)
	if slices.Equal(got, truth) {
		w.rep.OneHop++
		w.rep.Right++
		return
	}
	// Not exact. A reader's request to a member that is down fails and it
	// moves on to the next nearest in its view: right if the live ones of
	// its view's nearest are the true set (a member that joined a moment
	// ago is missed, and holds nothing yet either).
	var live []string
	for _, id := range o.m.Closest(now, key, w.cfg.Replicas+8) {
		if w.nodes[w.byID[id]].alive && len(live) < w.cfg.Replicas {
			live = append(live, id)
		}
	}
	if slices.Equal(live, truth) {
		w.rep.Right++
		w.hops = append(w.hops, 2)
		return
	}
	w.hops = append(w.hops, 3)
}

// truth is the replica set of key among the members actually up.
func (w *world) truth(key [32]byte) []string {
	type c struct {
		id string
		d  [32]byte
	}
	var best []c
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		var d [32]byte
		for i := range d {
			d[i] = n.kid[i] ^ key[i]
		}
		if len(best) == w.cfg.Replicas && string(d[:]) >= string(best[len(best)-1].d[:]) {
			continue
		}
		i, _ := slices.BinarySearchFunc(best, d, func(x c, t [32]byte) int { return compare(x.d[:], t[:]) })
		best = slices.Insert(best, i, c{n.id, d})
		if len(best) > w.cfg.Replicas {
			best = best[:w.cfg.Replicas]
		}
	}
	out := make([]string, len(best))
	for i, b := range best {
		out[i] = b.id
	}
	return out
}

func compare(a, b []byte) int {
	switch {
	case string(a) < string(b):
		return -1
	case string(a) > string(b):
		return 1
	}
	return 0
}

// finish computes the report from the members present for the whole window.
func (w *world) finish(end time.Duration) {
	secs := w.cfg.Duration.Seconds()
	var sent, recv, payload, partial []float64
	var msgs, verifies, ridden float64
	var byType, msgsByType [16]float64
	var syncs float64
	for _, n := range w.nodes {
		if !n.base || !n.alive {
			continue
		}
		s := n.m.Stats()
		ms := float64(s.MsgsSent - n.sent0.MsgsSent)
		mr := float64(s.MsgsRecv - n.sent0.MsgsRecv)
		sent = append(sent, (float64(s.BytesSent-n.sent0.BytesSent)+WireOverhead*ms)/secs)
		if n.bits > 0 {
			partial = append(partial, sent[len(sent)-1])
		}
		recv = append(recv, (float64(s.BytesRecv-n.sent0.BytesRecv)+WireOverhead*mr)/secs)
		payload = append(payload, float64(s.BytesSent-n.sent0.BytesSent)/secs)
		msgs += ms / secs
		for t := range s.SentBytesByType {
			byType[t] += float64(s.SentBytesByType[t] - n.sent0.SentBytesByType[t])
			msgsByType[t] += float64(s.SentByType[t] - n.sent0.SentByType[t])
		}
		syncs += float64(s.Syncs - n.sent0.Syncs)
		verifies += float64(s.Verifies-n.sent0.Verifies) / secs
		ridden += float64(s.NewsRidden-n.sent0.NewsRidden) / secs
	}
	r := &w.rep
	r.N, r.Members, r.Window = w.cfg.N, len(sent), w.cfg.Duration
	if len(sent) > 0 {
		r.SentMean, r.SentP99 = mean(sent), p99(sent)
		r.RecvMean, r.RecvP99 = mean(recv), p99(recv)
		r.PayloadMean = mean(payload)
		if r.PartialMembers = len(partial); len(partial) > 0 {
			r.PartialSent = mean(partial)
		}
		r.MsgsPerSec, r.VerifiesPerSec = msgs/float64(len(sent)), verifies/float64(len(sent))
		r.Ridden = ridden / float64(len(sent))
	}
	for _, c := range w.changes {
		if end-c.at > 30*time.Second {
			r.Unreached++
		}
	}
	r.Syncs, r.ByType, r.MsgsByType = syncs, byType, msgsByType
	r.WronglyDead = w.wronglyDead()
	r.FailP99, r.JoinP99 = p99d(w.spreads[0]), p99d(w.spreads[1])
	r.FailP50, r.JoinP50 = p50d(w.spreads[0]), p50d(w.spreads[1])
	var h float64
	for _, x := range w.hops {
		h += float64(x)
	}
	if len(w.hops) > 0 {
		r.HopsMean = h / float64(len(w.hops))
	}
}

// wronglyDead counts the observers' views not holding live a member that
// has been up for over a minute, and running for the last 30 s: what only
// a lost refutation explains.
func (w *world) wronglyDead() int {
	now, k := w.clock(), 0
	for _, o := range w.obs {
		on := w.nodes[o]
		if !on.alive || w.now-on.joined < time.Minute {
			continue
		}
		for i, n := range w.nodes {
			if n.alive && int32(i) != o && on.m.Covers(n.kid) && w.now-n.joined > time.Minute && w.now-n.stalled > 30*time.Second && !on.m.Alive(now, n.id) {
				k++
			}
		}
	}
	return k
}

func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func p99(x []float64) float64 {
	slices.Sort(x)
	return x[min(len(x)-1, len(x)*99/100)]
}

func p50d(x []time.Duration) time.Duration {
	if len(x) == 0 {
		return 0
	}
	slices.Sort(x)
	return x[len(x)/2]
}

func p99d(x []time.Duration) time.Duration {
	if len(x) == 0 {
		return 0
	}
	slices.Sort(x)
	return x[min(len(x)-1, len(x)*99/100)]
}
