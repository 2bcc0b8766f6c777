package membership

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
	"time"
)

// net is an in-memory network of memberships in virtual time: messages
// arrive on the next step unless drop says otherwise.
type testNet struct {
	t     *testing.T
	now   time.Time
	nodes map[string]*Membership
	queue []testMsg
	drop  func(from, to string, b []byte) bool
	delay func(from, to string, b []byte) time.Duration // nil: the next step
	tap   func(from, to string, b []byte)               // sees every message sent
	cfg   func(*Config)                                 // adjusts each node's config before New
}

type testMsg struct {
	from, to string
	b        []byte
	at       time.Time // not delivered before (zero: the next step)
}

type testTransport struct {
	n    *testNet
	from string
}

func (tr testTransport) Send(to string, b []byte) {
	msg := testMsg{from: tr.from, to: to, b: append([]byte(nil), b...)}
	if tr.n.tap != nil {
		tr.n.tap(tr.from, to, b)
	}
	if tr.n.delay != nil {
		msg.at = tr.n.now.Add(tr.n.delay(tr.from, to, b))
	}
	tr.n.queue = append(tr.n.queue, msg)
}

func testSig(id string, msg []byte) []byte {
	h := sha256.Sum256(append([]byte(id+"\x00"), msg...))
	return h[:]
}

func (n *testNet) add(id string, seed uint64) *Membership {
	return n.addRings(id, seed, 0)
}

func (n *testNet) addRings(id string, seed uint64, rings int) *Membership {
	return n.addRegion(id, seed, rings, 0)
}

// addRegion adds a member keeping a partial view of bits (0: full).
func (n *testNet) addRegion(id string, seed uint64, rings, bits int) *Membership {
	n.t.Helper()
	cfg := Config{Name: "test", Self: id, Serve: true, Addrs: [][]byte{[]byte(id)}, Rings: rings, RegionBits: bits,
		Sign:   func(msg []byte) ([]byte, error) { return testSig(id, msg), nil },
		Verify: func(id string, msg, sig []byte) bool { return string(testSig(id, msg)) == string(sig) },
		Rand:   rand.New(rand.NewPCG(seed, seed))}
	if n.cfg != nil {
		n.cfg(&cfg)
	}
	m, err := New(cfg, testTransport{n, id}, n.now, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	n.nodes[id] = m
	return m
}

// joinedNet is ids (the i-th seeded seed+i, probing rings rings, 0 for
// the default), each but the first asked to join through the first.
func joinedNet(t *testing.T, ids []string, seed uint64, rings int) *testNet {
	t.Helper()
	return joinedNetWith(t, ids, seed, rings, nil)
}

// joinedNetWith is joinedNet with cfg applied to each node's config.
func joinedNetWith(t *testing.T, ids []string, seed uint64, rings int, cfg func(*Config)) *testNet {
	t.Helper()
	n := &testNet{t: t, now: time.Unix(1_700_000_000, 0), nodes: map[string]*Membership{}, cfg: cfg}
	for i, id := range ids {
		n.addRings(id, uint64(i)+seed, rings)
	}
	for _, id := range ids[1:] {
		n.nodes[id].Join(n.now, ids[0])
	}
	return n
}

// run steps the network for d in steps of 50 ms.
func (n *testNet) run(d time.Duration) {
	for end := n.now.Add(d); n.now.Before(end); n.now = n.now.Add(50 * time.Millisecond) {
		q := n.queue
		n.queue = nil
		for _, msg := range q {
			if msg.at.After(n.now) {
				n.queue = append(n.queue, msg)
				continue
			}
			if m, ok := n.nodes[msg.to]; ok && (n.drop == nil || !n.drop(msg.from, msg.to, msg.b)) {
				_ = m.Receive(n.now, msg.from, msg.b)
			}
		}
		for _, m := range n.nodes {
			m.Tick(n.now)
		}
	}
}

// TestDeadMemberHearsItsAccusation: a member whose probers' messages to it
// were all lost while it was accused (so it never refuted) is told of the
// accusation by a node holding it dead as soon as it talks to that node,
// refutes, and is live again in every view long before its tombstone
// would be purged (5 min).
func TestDeadMemberHearsItsAccusation(t *testing.T) {
	ids := []string{"a", "b", "c", "x"}
	n := joinedNet(t, ids, 1, 0)
	n.run(30 * time.Second)
	for _, id := range ids {
		for _, o := range ids {
			if st := n.nodes[id].State(n.now, o); st != "live" {
				t.Fatalf("before: %s sees %s %s", id, o, st)
			}
		}
	}
	// For 10 s the probes of x and every update sent to it are lost (its
	// own probes are answered): its probers accuse it, and the
	// accusations they send it are lost too.
	n.drop = func(_, to string, b []byte) bool {
		return to == "x" && (b[0] == msgPing || b[0] == msgUpdates || b[0] == msgAccuse)
	}
	n.run(10 * time.Second)
	for _, id := range ids[:3] {
		if st := n.nodes[id].State(n.now, "x"); st != "dead" {
			t.Fatalf("after 10 s cut off, %s sees x %s, want dead", id, st)
		}
	}
	if got := n.nodes["x"].Stats().Refutations; got != 0 {
		t.Fatalf("x refuted %d accusations it cannot have heard", got)
	}
	n.drop = nil
	n.run(20 * time.Second)
	for _, id := range ids[:3] {
		if st := n.nodes[id].State(n.now, "x"); st != "live" {
			t.Errorf("20 s after the cut, %s sees x %s, want live", id, st)
		}
	}
	if got := n.nodes["x"].Stats().Refutations; got == 0 {
		t.Error("x never refuted")
	}
}

// TestLoneAccuserMovesNothing: a prober that hears no acks for 20 s (an
// overloaded node) accuses the members it probes, but one member's word
// leaves them live in every other view (Closest unchanged) throughout, and
// is not spread (no refutation asked) before LoneSuspect; a real failure,
// seen by several probers, is still confirmed at once
// (TestDeadMemberHearsItsAccusation).
func TestLoneAccuserMovesNothing(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	n := joinedNet(t, ids, 11, 0)
	n.run(30 * time.Second)
	n.drop = func(_, to string, b []byte) bool { return to == "b" && b[0] == msgAck }
	refuted := func() (sum uint64) {
		for _, id := range ids {
			sum += n.nodes[id].Stats().Refutations
		}
		return sum
	}
	for i := 1; i <= 400; i++ { // 20 s
		n.run(50 * time.Millisecond)
		for _, id := range ids {
			if id == "b" {
				continue
			}
			for _, o := range ids {
				if st := n.nodes[id].State(n.now, o); st != "live" {
					t.Fatalf("after %d ms of b's lone accusations, %s sees %s %s", 50*i, id, o, st)
				}
			}
		}
		if i == 160 && refuted() != 0 { // 8 s, before LoneSuspect (9 s)
			t.Fatalf("after 8 s, %d refutations: a lone accusation was spread", refuted())
		}
	}
	if got := n.nodes["b"].Stats().Accusations; got == 0 {
		t.Fatal("b accused nobody: the test tests nothing")
	}
}

// TestSpreadLoneAccusationMustAge: a liar that floods its own fresh
// accusation (msgUpdates, as the spread does) gets nothing: a lone
// accusation counts only once it is LoneSuspect old (less
// SuspectTimeout), which is when an honest accuser spreads it; the
// subject is not made to refute it either.
func TestSpreadLoneAccusationMustAge(t *testing.T) {
	ids := []string{"a", "b", "c", "x"}
	n := joinedNet(t, ids, 21, 0)
	n.run(30 * time.Second)
	liar := n.nodes["b"]
	x := liar.v.get(hashOf(KeyID("x")))
	inc0 := x.e.Inc
	forge := func(at time.Time) []byte {
		raw, err := liar.sign(liar.accPrefix(), accusationBody("x", x.e.Inc, "b", uint64(at.UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		return encodeUpdates(msgUpdates, [][]byte{x.e.Raw}, [][]byte{raw})
	}
	for _, to := range []string{"a", "c", "x"} {
		_ = n.nodes[to].Receive(n.now, "b", forge(n.now))
	}
	n.run(time.Second)
	for _, id := range []string{"a", "c"} {
		if st := n.nodes[id].State(n.now, "x"); st != "live" {
			t.Fatalf("a fresh lone accusation, spread by its accuser, made %s see x %s", id, st)
		}
		if r := n.nodes[id].v.get(x.h); r.acc != nil {
			t.Fatalf("%s holds the liar's fresh accusation", id)
		}
	}
	if got := n.nodes["x"].Stats().Refutations; got != 0 {
		t.Fatalf("x refuted a fresh lone accusation %d times", got)
	}
	// Backdated past LoneSuspect, it still cannot predate the incarnation
	// it accuses (x's, signed 30 s ago, is old enough): it counts, x
	// refutes, and nobody ever sees x out of Closest.
	_ = n.nodes["a"].Receive(n.now, "b", forge(n.now.Add(-time.Hour)))
	for i := 0; i < 100; i++ {
		n.run(50 * time.Millisecond)
		for _, id := range []string{"a", "c"} {
			if st := n.nodes[id].State(n.now, "x"); st != "live" {
				t.Fatalf("a spread lone accusation made %s see x %s", id, st)
			}
		}
	}
	if got := n.nodes["x"].Stats().Refutations; got != 1 {
		t.Fatalf("x refuted %d times, want 1", got)
	}
	// Its new incarnation is young: the liar's next spread accusation of
	// it does not count, however backdated.
	if x = liar.v.get(hashOf(KeyID("x"))); x.e.Inc == inc0 {
		t.Fatal("the liar has not heard x's refutation")
	}
	_ = n.nodes["a"].Receive(n.now, "b", forge(n.now.Add(-time.Hour)))
	n.run(5 * time.Second)
	if got := n.nodes["x"].Stats().Refutations; got != 1 {
		t.Fatalf("x refuted %d times after a second accusation of a young incarnation, want 1", got)
	}
}

// TestSingleProberStillDetects: with one ring in a 3-member overlay, a
// dead member has a single prober, so no confirmation can come; its lone
// accusation is spread after LoneSuspect and the member is dead in every
// view SuspectTimeout later.
func TestSingleProberStillDetects(t *testing.T) {
	ids := []string{"a", "b", "x"}
	n := joinedNet(t, ids, 31, 1)
	n.run(30 * time.Second)
	delete(n.nodes, "x")
	n.run(5 * time.Second)
	for _, id := range ids[:2] {
		if st := n.nodes[id].State(n.now, "x"); st != "live" {
			t.Fatalf("5 s after x died, %s sees it %s: a lone accusation took it out", id, st)
		}
	}
	n.run(15 * time.Second)
	for _, id := range ids[:2] {
		if st := n.nodes[id].State(n.now, "x"); st != "dead" {
			t.Errorf("20 s after x died, %s sees it %s, want dead", id, st)
		}
	}
}

// TestLeftMemberFetched: a member's departure is announced, fetched and
// passed on (an entry with no accusation to send along).
func TestLeftMemberFetched(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "x"}
	n := joinedNet(t, ids, 41, 0)
	n.run(30 * time.Second)
	n.nodes["x"].Leave(n.now)
	n.run(5 * time.Second)
	for _, id := range ids[:len(ids)-1] {
		if st := n.nodes[id].State(n.now, "x"); st != "left" {
			t.Errorf("%s sees x %s, want left", id, st)
		}
	}
}

// TestAccuserRechecksItsDead: an accuser whose spread of its lone
// accusation was lost (it was overloaded) holds the member dead alone;
// the member never sends it a message and anti-entropy cannot reach it
// either. The accuser pings the members dead on its word once per
// SuspectTimeout: the answer gets the member its accusation, which it
// refutes, and it is live again in the accuser's view.
func TestAccuserRechecksItsDead(t *testing.T) {
	ids := names(40)
	n := joinedNet(t, ids, 51, 0)
	n.run(60 * time.Second)
	x := "n05"
	s := n.nodes[x].successors()[0]
	noSync := func(from, to string, b []byte) bool {
		return (from == x || to == x) && (b[0] == msgSync || b[0] == msgSummary) || from == s && to == x && b[0] == msgPing
	}
	// For 15 s x's probes of s fail and everything x sends but probes
	// is lost: it accuses s, and its spread of the accusation is lost.
	n.drop = func(from, to string, b []byte) bool {
		return noSync(from, to, b) || from == x && to == s && b[0] == msgPing || from == s && to == x ||
			from == x && b[0] != msgPing && b[0] != msgAck
	}
	n.run(15 * time.Second)
	if st := n.nodes[x].State(n.now, s); st != "dead" {
		t.Fatalf("x sees s %s after its 15 s of failed probes, want dead", st)
	}
	for _, id := range ids {
		if st := n.nodes[id].State(n.now, s); id != x && id != s && st != "live" {
			t.Fatalf("%s sees s %s: the spread was meant to be lost", id, st)
		}
	}
	n.drop = noSync
	n.run(30 * time.Second)
	if st := n.nodes[x].State(n.now, s); st != "live" {
		t.Errorf("30 s later x still sees s %s", st)
	}
	if got := n.nodes[s].Stats().Refutations; got == 0 {
		t.Error("s never refuted")
	}
}

// implausiblePair finds in a settled net a member x and a member s that
// x is not a plausible prober of (as every view of this size judges).
func implausiblePair(t *testing.T, n *testNet, ids []string) (x, s string) {
	t.Helper()
	for _, x := range ids {
		for _, s := range ids {
			if x != s && !n.nodes[x].plausible(KeyID(x), KeyID(s)) {
				return x, s
			}
		}
	}
	t.Fatal("every pair is plausible")
	return "", ""
}

// TestAccuserKeepsToPlausible: an accusation the other views would not
// believe (its accuser is not near its subject on any ring: made while the
// accuser's view was still small, as a node joining an overlay of 300 did)
// is not made, and one made earlier is dropped rather than spread. Before,
// the accuser alone held the member dead for minutes: the member itself
// would not refute an accusation it found implausible.
func TestAccuserKeepsToPlausible(t *testing.T) {
	ids := names(150)
	n := settledNet(t, ids, 61)
	x, s := implausiblePair(t, n, ids)
	m := n.nodes[x]
	m.accuse(n.now, s)
	r := m.v.get(hashOf(KeyID(s)))
	if r.acc != nil {
		t.Fatal("x accused s, which it does not plausibly probe")
	}
	// An accusation made when it was plausible (x's view small then).
	raw, err := m.sign(m.accPrefix(), accusationBody(s, r.e.Inc, x, uint64(n.now.UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	a, err := DecodeAccusation(raw)
	if err != nil || !m.accept(n.now, a, nil, x, false) {
		t.Fatalf("the accusation was not taken: %v", err)
	}
	n.drop = func(from, to string, b []byte) bool { return from == s && to == x && b[0] == msgAck }
	alwaysLive(t, n, ids, s, m.cfg.LoneSuspect+m.cfg.SuspectTimeout)
	if st := m.State(n.now, s); st != "live" {
		t.Errorf("x holds s %s after spreading an accusation no one else believes", st)
	}
}

// TestPurgedSuspectLeavesCount: a loud lone accusation old enough that
// its tombstone time comes before its subject's suspicion ends has the
// subject purged while it is still live; the live count (cached until the
// view changes) must drop with it at once, and the rings must let it go.
func TestPurgedSuspectLeavesCount(t *testing.T) {
	ids := []string{"a", "b", "c", "x"}
	n := joinedNet(t, ids, 23, 0)
	a := n.nodes["a"]
	n.run(a.cfg.Tombstone + time.Minute) // x's incarnation older than a tombstone
	liar := n.nodes["b"]
	x := liar.v.get(hashOf(KeyID("x")))
	at := n.now.Add(-a.cfg.Tombstone + 10*time.Millisecond)
	raw, err := liar.sign(liar.accPrefix(), accusationBody("x", x.e.Inc, "b", uint64(at.UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Receive(n.now, "b", encodeUpdates(msgUpdates, [][]byte{x.e.Raw}, [][]byte{raw})); err != nil {
		t.Fatal(err)
	}
	if st := a.State(n.now, "x"); st != "live" {
		t.Fatalf("x is %s at a after the aged lone accusation, want live (suspected)", st)
	}
	before := a.LiveCount(n.now)
	// The purge is due (at the whole period after it: settle), the
	// suspicion is not over.
	later := n.now.Add(10 * time.Millisecond).Truncate(a.cfg.Period).Add(a.cfg.Period)
	a.Tick(later)
	if a.v.get(x.h) != nil {
		t.Fatal("x was not purged: the test does not reach the case")
	}
	if got, want := a.LiveCount(later), len(a.Live(later)); got != want || got != before-1 {
		t.Fatalf("after the purge: LiveCount %d, Live %d (before %d)", got, want, before)
	}
	for _, p := range a.successors() {
		if p == "x" {
			t.Fatal("x, purged, is still a ring successor")
		}
	}
}

// TestProbationCountedWhenItEnds: a member told by a third party comes on
// probation; the live count (cached until the view changes or a known
// instant passes) takes it the instant its probation ends, with no Tick.
func TestProbationCountedWhenItEnds(t *testing.T) {
	ids := []string{"a", "b", "c"}
	n := joinedNet(t, ids, 29, 0)
	n.run(30 * time.Second)
	a := n.nodes["a"]
	y := n.add("y", 99) // not joined: only its signed entry travels
	yRaw := y.v.get(y.selfH).e.Raw
	before := a.LiveCount(n.now)
	if err := a.Receive(n.now, "b", encodeUpdates(msgUpdates, [][]byte{yRaw}, nil)); err != nil {
		t.Fatal(err)
	}
	if st := a.State(n.now, "y"); st != "probation" {
		t.Fatalf("y told by b is %s at a, want probation", st)
	}
	if got := a.LiveCount(n.now); got != before {
		t.Fatalf("on probation: LiveCount %d, want %d", got, before)
	}
	end := a.v.get(hashOf(KeyID("y"))).until
	if got := a.LiveCount(end.Add(-time.Millisecond)); got != before {
		t.Fatalf("just before the probation ends: LiveCount %d, want %d", got, before)
	}
	if got, want := a.LiveCount(end), len(a.Live(end)); got != want || got != before+1 {
		t.Fatalf("the instant it ends: LiveCount %d, Live %d, want %d", got, want, before+1)
	}
}
