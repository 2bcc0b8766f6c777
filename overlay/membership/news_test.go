package membership

import (
	"fmt"
	"testing"
	"time"
)

// TestNewsRides: news rides on the messages a node sends its flood
// targets anyway (answers to their fetches, probes), and a target is
// offered each change once by each node, on one message or the other.
// Members join and one fails while 20 run: every view follows, some of
// the news rode, and no node offered any peer the same change twice.
func TestNewsRides(t *testing.T) {
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("n%02d", i))
	}
	n := joinedNet(t, ids, 3, 0)
	n.run(30 * time.Second)
	type offer struct {
		from, to string
		it       item
	}
	offers := map[offer]int{}
	how := map[offer][]string{}
	ridden, inHaves := 0, 0
	n.tap = func(from, to string, b []byte) {
		msg, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("%s sent %s a message that does not decode: %v", from, to, err)
		}
		items := msg.news
		if msg.typ == msgHave {
			items = msg.items
			inHaves += len(items)
		} else {
			ridden += len(items)
		}
		for _, it := range items {
			offers[offer{from, to, it}]++
			how[offer{from, to, it}] = append(how[offer{from, to, it}], fmt.Sprintf("%d@%v", msg.typ, n.now.Unix()%1000))
		}
	}
	for i := range 5 {
		id := fmt.Sprintf("j%d", i)
		n.add(id, uint64(100+i)).Join(n.now, ids[i])
		ids = append(ids, id)
		n.run(2 * time.Second)
	}
	n.drop = func(from, to string, _ []byte) bool { return from == "n07" || to == "n07" }
	n.run(30 * time.Second)
	for _, id := range ids {
		if id == "n07" {
			continue
		}
		for _, o := range ids {
			want := "live"
			if o == "n07" {
				want = "dead"
			}
			if st := n.nodes[id].State(n.now, o); st != want && o != id {
				t.Fatalf("%s sees %s %s, want %s", id, o, st, want)
			}
		}
	}
	t.Logf("announcements: %d ridden on other messages, %d in haves", ridden, inHaves)
	if ridden == 0 {
		t.Fatal("no news rode on another message")
	}
	for o, k := range offers {
		if k > 1 {
			t.Fatalf("%s offered %s %+v %d times: %v", o.from, o.to, o.it, k, how[o])
		}
	}
}

// TestNewsOnlyToReaders: news rides only to a flood target whose probes
// said it reads them (an older node ignores the field, and must get its
// news in a have of its own), and never on a message that may be dropped.
func TestNewsOnlyToReaders(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e", "f"}
	n := joinedNet(t, ids, 1, 0)
	n.run(20 * time.Second)
	a := n.nodes["a"]
	n.add("z", 50).Join(n.now, "b")
	for end := n.now.Add(5 * time.Second); len(a.floodSet) == 0 && n.now.Before(end); {
		n.run(50 * time.Millisecond)
	}
	var p string
	for q := range a.floodSet {
		p = q
	}
	if p == "" {
		t.Fatal("a flushed no news")
	}
	a.fresh = append(a.fresh, freshItem{it: item{h: 12345, inc: 7, kind: kindAlive}, from: "nobody"})
	clear(a.told)
	ping := encodeProbe(msgPing, 1, 0)
	a.peers[p].news = false // as an older node's probes leave it
	if got := a.ride(p, ping); len(got) != len(ping) {
		t.Fatalf("news rode to %s, whose probes never said it reads them", p)
	}
	if err := a.Receive(n.now, p, appendTakesNews(encodeProbe(msgPing, 9, 0))); err != nil {
		t.Fatal(err)
	}
	if !a.peers[p].news {
		t.Fatalf("%s's probe said it reads news; a did not note it", p)
	}
	if got := a.ride(p, encodeItems(msgWant, []item{{h: 1, inc: 1, kind: kindAlive}})); len(got) != len(encodeItems(msgWant, []item{{h: 1, inc: 1, kind: kindAlive}})) {
		t.Fatal("news rode on a want (a transport may drop it)")
	}
	got := a.ride(p, ping)
	msg, err := decodeMessage(got)
	if err != nil {
		t.Fatal(err)
	}
	if msg.seq != 1 || len(msg.news) != 1 || msg.news[0].h != 12345 {
		t.Fatalf("the ping to %s carries seq %d and news %+v", p, msg.seq, msg.news)
	}
	if again := a.ride(p, ping); len(again) != len(ping) {
		t.Fatal("the same news rode twice")
	}
	// The target fetches what rode on the ping, as from a have.
	var wanted bool
	n.tap = func(from, to string, b []byte) {
		if from == p && to == "a" && b[0] == msgWant {
			if w, err := decodeMessage(b); err == nil && len(w.items) == 1 && w.items[0].h == 12345 {
				wanted = true
			}
		}
	}
	if err := n.nodes[p].Receive(n.now, "a", got); err != nil {
		t.Fatal(err)
	}
	if !wanted {
		t.Fatalf("%s did not fetch the news that rode on a's ping", p)
	}
	// One message with room to spare, sent to two peers: the news for
	// the second must not land in the first's bytes.
	var q string
	for x := range a.floodSet {
		if x != p {
			q = x
		}
	}
	if q == "" {
		t.Skip("a has one flood target") // not with this seed
	}
	a.fresh = append(a.fresh, freshItem{it: item{h: 777, inc: 8, kind: kindAlive}, from: "nobody"})
	a.peers[q].news = true
	roomy := make([]byte, 0, 512)
	roomy = append(roomy, encodeProbe(msgPing, 2, 0)...)
	toP := a.ride(p, roomy)
	keep := string(toP)
	toQ := a.ride(q, roomy)
	if string(toP) != keep || len(toQ) == len(roomy) {
		t.Fatal("news for one peer was written into the bytes sent to another")
	}
}

// TestSeedTwoHops: a change is pushed whole, marked a seed, by the member
// it starts at to its ring neighbours, and once more, unmarked, by each
// of those to its own neighbours (relayFrom); no one else pushes it (a
// member that takes a relay, or a flood target fetching, floods it as any
// change), and a leave reaches each neighbour once.
func TestSeedTwoHops(t *testing.T) {
	ids := names(30)
	n := settledNet(t, ids, 17)
	for _, m := range n.nodes {
		m.cfg.SeedHops = 2 // as a view of 1024 records or more (seedHops)
	}
	x := n.nodes["n05"]
	type push struct {
		from, to string
		inc      uint64
		marked   bool
	}
	var pushed []push
	asked := map[[2]string]int{}
	n.tap = func(from, to string, b []byte) {
		if b[0] == msgWant {
			asked[[2]string{from, to}]++
		}
		if b[0] != msgUpdates {
			return
		}
		if asked[[2]string{to, from}] > 0 {
			asked[[2]string{to, from}]--
			return // an answer to a fetch
		}
		msg, err := decodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range msg.entries {
			if e, err := DecodeEntry(raw); err == nil && e.ID == "n05" {
				pushed = append(pushed, push{from, to, e.Inc, msg.seed > 0})
			}
		}
	}
	n.run(time.Second)
	if err := x.SetSelf(n.now, [][]byte{[]byte("n05-moved")}, nil); err != nil {
		t.Fatal(err)
	}
	inc := x.inc
	n.run(15 * time.Second)
	for _, id := range ids {
		if r := n.nodes[id].v.get(x.selfH); r == nil || r.e.Inc != inc {
			t.Fatalf("%s did not take n05's new entry", id)
		}
	}
	nbrs := x.Neighbours()
	relays := map[string]map[string]bool{}
	origin := 0
	for _, p := range pushed {
		if p.inc != inc {
			continue
		}
		switch {
		case p.from == "n05":
			if !p.marked {
				t.Fatalf("n05's own push to %s is not marked a seed", p.to)
			}
			origin++
		case p.marked:
			t.Fatalf("%s passed the seed on marked: it would go a third hop", p.from)
		case !contains(nbrs, p.from):
			t.Fatalf("%s, not a neighbour of n05, pushed its entry unasked", p.from)
		case p.to == "n05" || !contains(n.nodes[p.from].Neighbours(), p.to):
			t.Fatalf("%s relayed n05's entry to %s, not a neighbour of its own other than n05", p.from, p.to)
		case relays[p.from][p.to]:
			t.Fatalf("%s relayed n05's entry to %s twice", p.from, p.to)
		default:
			if relays[p.from] == nil {
				relays[p.from] = map[string]bool{}
			}
			relays[p.from][p.to] = true
		}
	}
	if origin == 0 || origin > len(nbrs) {
		t.Fatalf("n05 seeded its entry %d times, want 1 to %d (its neighbours)", origin, len(nbrs))
	}
	if len(relays) == 0 {
		t.Fatal("no neighbour of n05 relayed its seed")
	}
	t.Logf("n05 seeded %d neighbours; %d of them relayed it", origin, len(relays))
	// A leave: each neighbour is sent it once (Leave), not seeded too.
	leaves := map[string]int{}
	n.tap = func(from, to string, b []byte) {
		if from == "n05" && b[0] == msgUpdates {
			if msg, err := decodeMessage(b); err == nil && len(msg.entries) == 1 {
				if e, err := DecodeEntry(msg.entries[0]); err == nil && e.Left {
					leaves[to]++
				}
			}
		}
	}
	x.Leave(n.now)
	for to, k := range leaves {
		if k != 1 {
			t.Fatalf("n05's leave went to %s %d times", to, k)
		}
	}
	if len(leaves) == 0 {
		t.Fatal("n05's leave went to no one")
	}
}

// TestSeedsBounded: joins of new identities through one member (a
// bootstrap peer, or a stranger making up identities) make it seed at
// most seedBurst of them a Period: the rest flood as any change.
func TestSeedsBounded(t *testing.T) {
	ids := names(20)
	n := settledNet(t, ids, 23)
	b := n.nodes["n03"]
	seeded := 0
	n.tap = func(from, _ string, m []byte) {
		if from == "n03" && m[0] == msgUpdates {
			if msg, err := decodeMessage(m); err == nil && len(msg.entries) == 1 {
				seeded++
			}
		}
	}
	const joins = 40
	for i := range joins {
		id := fmt.Sprintf("sybil%02d", i)
		raw, err := SignEntry("test", id, uint64(n.now.UnixNano()), [][]byte{[]byte(id)}, nil, false, 0,
			func(msg []byte) ([]byte, error) { return testSig(id, msg), nil })
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Receive(n.now, id, encodeUpdates(msgJoin, [][]byte{raw}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	limit := seedBurst * len(b.Neighbours())
	t.Logf("%d joins at once: %d pushes (bound %d)", joins, seeded, limit)
	if seeded == 0 || seeded > limit {
		t.Fatalf("%d joins at once made n03 push %d entries, want 1 to %d", joins, seeded, limit)
	}
}

// TestSeedRelaysBounded: a neighbour marking its messages seeds (a liar,
// or a bootstrap peer many join through) makes a node relay at most
// seedBurst changes a Period, only changes it took as new, and not from
// its own seeds' budget: its own change right after is still seeded.
func TestSeedRelaysBounded(t *testing.T) {
	ids := names(20)
	n := settledNet(t, ids, 29)
	b := n.nodes["n03"]
	b.cfg.SeedHops = 2
	liar := b.Neighbours()[0] // only a ring neighbour's mark is honoured
	relayed, own := 0, 0
	n.tap = func(from, _ string, m []byte) {
		if from != "n03" || m[0] != msgUpdates {
			return
		}
		msg, err := decodeMessage(m)
		if err != nil || len(msg.entries) != 1 {
			return
		}
		e, err := DecodeEntry(msg.entries[0])
		switch {
		case err != nil:
		case e.ID == "n03" && msg.seed > 0:
			own++
		case e.ID != "n03" && msg.seed == 0:
			relayed++
		}
	}
	held := b.v.get(hashOf(KeyID("n11"))).e.Raw
	for range 5 { // an entry the view holds already is not relayed
		if err := b.Receive(n.now, liar, appendSeed(encodeUpdates(msgUpdates, [][]byte{held}, nil), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if relayed != 0 {
		t.Fatalf("n03 relayed an entry its view held already (%d pushes)", relayed)
	}
	const joins = 40
	for i := range joins {
		raw := signAt(t, fmt.Sprintf("sybil%02d", i), uint64(n.now.UnixNano()))
		if err := b.Receive(n.now, liar, appendSeed(encodeUpdates(msgUpdates, [][]byte{raw}, nil), 1)); err != nil {
			t.Fatal(err)
		}
	}
	limit := seedBurst * len(b.Neighbours())
	t.Logf("%d marked seeds at once: %d relayed pushes (bound %d)", joins, relayed, limit)
	if relayed == 0 || relayed > limit {
		t.Fatalf("%d marked seeds at once made n03 push %d entries, want 1 to %d", joins, relayed, limit)
	}
	if err := b.SetSelf(n.now, [][]byte{[]byte("n03-moved")}, nil); err != nil {
		t.Fatal(err)
	}
	if own == 0 {
		t.Fatal("the relays took n03's own seeds' budget: its new entry was not seeded")
	}
}

// TestSeedHopsByViewSize: seeds go deeper, and the flood along fewer
// rings, as the view grows; a configured value is kept.
func TestSeedHopsByViewSize(t *testing.T) {
	n := settledNet(t, names(3), 5)
	m := n.nodes["n01"]
	for _, c := range []struct{ records, hops, entryHops, rings int }{
		{3, 1, 1, 3}, {1023, 1, 1, 3}, {1024, 2, 2, 3}, {8191, 2, 2, 3}, {8192, 3, 4, 2}, {100000, 3, 4, 2},
	} {
		m.v.n = c.records
		if h, e, r := m.seedHopsOf(false), m.seedHopsOf(true), m.floodRings(); h != c.hops || e != c.entryHops || r != c.rings {
			t.Errorf("a view of %d records: accusations seed %d hops deep, entries %d, along %d rings; want %d, %d and %d",
				c.records, h, e, r, c.hops, c.entryHops, c.rings)
		}
	}
	m.cfg.SeedHops, m.cfg.FloodRings = 1, 4
	if h, e, r := m.seedHopsOf(false), m.seedHopsOf(true), m.floodRings(); h != 1 || e != 1 || r != 4 {
		t.Errorf("configured 1 hop and 4 rings, got %d (entries %d) and %d", h, e, r)
	}
}

// TestSeedMarksFromNeighboursOnly: a seed's mark counts only from a ring
// neighbour, and only for the message it is on; a relay goes on with a
// hop fewer than the node's own seeds would go at most, never back to
// its sender; a node whose seeds go one hop relays nothing.
func TestSeedMarksFromNeighboursOnly(t *testing.T) {
	ids := names(40)
	n := settledNet(t, ids, 31)
	b := n.nodes["n10"]
	b.cfg.SeedHops = 3
	var stranger string
	for _, id := range ids {
		if id != "n10" && !contains(b.Neighbours(), id) {
			stranger = id
			break
		}
	}
	nbr := b.Neighbours()[0]
	type push struct {
		to   string
		mark uint64
	}
	var pushes []push
	n.tap = func(from, to string, m []byte) {
		if from != "n10" || m[0] != msgUpdates {
			return
		}
		if msg, err := decodeMessage(m); err == nil && len(msg.entries) == 1 {
			if e, err := DecodeEntry(msg.entries[0]); err == nil && e.ID != "n10" {
				pushes = append(pushes, push{to, msg.seed})
			}
		}
	}
	k := 0
	fresh := func() []byte {
		k++
		return signAt(t, fmt.Sprintf("new%02d", k), uint64(n.now.UnixNano()))
	}
	takes := func(from string, msg []byte) {
		t.Helper()
		before := b.Size()
		if err := b.Receive(n.now, from, msg); err != nil {
			t.Fatal(err)
		}
		if b.Size() != before+1 {
			t.Fatalf("n10 did not take the new entry from %s", from)
		}
	}
	for _, from := range []string{stranger, "outsider"} {
		takes(from, appendSeed(encodeUpdates(msgUpdates, [][]byte{fresh()}, nil), 1<<40))
		if len(pushes) != 0 {
			t.Fatalf("a seed marked by %s, not a ring neighbour, was relayed %d times", from, len(pushes))
		}
	}
	takes(nbr, appendSeed(encodeUpdates(msgUpdates, [][]byte{fresh()}, nil), 1<<40))
	if len(pushes) == 0 {
		t.Fatal("a ring neighbour's seed was not relayed")
	}
	for _, p := range pushes {
		if p.to == nbr {
			t.Fatalf("the seed went back to its sender %s", nbr)
		}
		if p.mark != 1 {
			t.Fatalf("relayed with %d hops to go, want 1 (three hops at most: two from the neighbour)", p.mark)
		}
	}
	pushes = nil
	takes(nbr, encodeUpdates(msgUpdates, [][]byte{fresh()}, nil))
	if len(pushes) != 0 {
		t.Fatalf("an unmarked message after a seed was relayed %d times", len(pushes))
	}
	b.cfg.SeedHops = 1
	takes(nbr, appendSeed(encodeUpdates(msgUpdates, [][]byte{fresh()}, nil), 2))
	if len(pushes) != 0 {
		t.Fatalf("a node whose seeds go one hop relayed %d times", len(pushes))
	}
	// By size (SeedHops unset), a view of deepSeeds records relays an
	// entry's seed on with two hops to go: entries go four hops
	// (seedHopsOf), accusations three.
	b.cfg.SeedHops = 0
	size := b.v.n
	b.v.n = deepSeeds
	takes(nbr, appendSeed(encodeUpdates(msgUpdates, [][]byte{fresh()}, nil), 1<<40))
	b.v.n = size + 1
	if len(pushes) == 0 {
		t.Fatal("a deep view's neighbour's seed was not relayed")
	}
	for _, p := range pushes {
		if p.mark != 2 {
			t.Fatalf("a deep view relayed an entry with %d hops to go, want 2 (four hops: three from the neighbour)", p.mark)
		}
	}
}

// TestSeedDeepMarks: in a view of deepSeeds records (SeedHops unset), a
// node marks its own entry's seed for three more hops (four in all) and
// its own accusation's for two (three), and a neighbour's seed that
// carries accusations is relayed as an accusation's, even with an entry
// beside them (one hop more to go, not two).
func TestSeedDeepMarks(t *testing.T) {
	ids := names(40)
	n := settledNet(t, ids, 37)
	b := n.nodes["n10"]
	size := b.v.n
	b.v.n = deepSeeds
	type push struct {
		entry string // the entry's id, "" for accusations alone
		mark  uint64
	}
	var pushes []push
	n.tap = func(from, _ string, m []byte) {
		if from != "n10" || m[0] != msgUpdates {
			return
		}
		msg, err := decodeMessage(m)
		if err != nil || msg.seed == 0 {
			return
		}
		p := push{mark: msg.seed}
		if len(msg.entries) == 1 {
			if e, err := DecodeEntry(msg.entries[0]); err == nil {
				p.entry = e.ID
			}
		}
		pushes = append(pushes, p)
	}
	marks := func(entry string) []uint64 {
		var out []uint64
		for _, p := range pushes {
			if p.entry == entry {
				out = append(out, p.mark)
			}
		}
		pushes = nil
		return out
	}
	all := func(got []uint64, want uint64) bool {
		for _, m := range got {
			if m != want {
				return false
			}
		}
		return len(got) > 0
	}
	if err := b.SetSelf(n.now, [][]byte{[]byte("n10-moved")}, nil); err != nil {
		t.Fatal(err)
	}
	if got := marks("n10"); !all(got, 3) {
		t.Fatalf("n10's own entry was seeded with marks %v, want 3 to each neighbour (four hops)", got)
	}
	// Its own accusation, made public (as accept makes a confirmed one).
	r := b.v.mut(hashOf(KeyID("n20")))
	body := accusationBody("n20", r.e.Inc, "n10", uint64(n.now.UnixNano()))
	a, err := DecodeAccusation(appendSig(body, testSig("n10", append(b.accPrefix(), body...))))
	if err != nil {
		t.Fatal(err)
	}
	r.acc, r.loud = a, true
	b.seed(n.now, r, true)
	if got := marks(""); !all(got, 2) {
		t.Fatalf("n10's own accusation was seeded with marks %v, want 2 to each neighbour (three hops)", got)
	}
	// A neighbour's seed with a new member's entry and an accusation of
	// n30 by n31.
	nbr := b.Neighbours()[0]
	s := b.v.get(hashOf(KeyID("n30")))
	body = accusationBody("n30", s.e.Inc, "n31", uint64(n.now.UnixNano()))
	acc := appendSig(body, testSig("n31", append(b.accPrefix(), body...)))
	fresh := signAt(t, "mixed", uint64(n.now.UnixNano()))
	if err := b.Receive(n.now, nbr, appendSeed(encodeUpdates(msgUpdates, [][]byte{fresh}, [][]byte{acc}), 1<<40)); err != nil {
		t.Fatal(err)
	}
	if got := marks("mixed"); !all(got, 1) {
		t.Fatalf("a neighbour's seed of an entry beside an accusation was relayed with marks %v, want 1 (as an accusation's)", got)
	}
	// The same with the accusation in compact form.
	s = b.v.get(hashOf(KeyID("n32")))
	body = accusationBody("n32", s.e.Inc, "n33", uint64(n.now.UnixNano()))
	a33, err := DecodeAccusation(appendSig(body, testSig("n33", append(b.accPrefix(), body...))))
	if err != nil {
		t.Fatal(err)
	}
	c := compactAcc(a33)
	if c == nil {
		t.Fatal("no compact form of the accusation")
	}
	fresh = signAt(t, "mixed2", uint64(n.now.UnixNano()))
	msg := appendCompact(encodeUpdates(msgUpdates, [][]byte{fresh}, nil), [][]byte{c})
	if err := b.Receive(n.now, nbr, appendSeed(msg, 1<<40)); err != nil {
		t.Fatal(err)
	}
	if got := marks("mixed2"); !all(got, 1) {
		t.Fatalf("a neighbour's seed of an entry beside a compact accusation was relayed with marks %v, want 1", got)
	}
	b.v.n = size + 2
}

// TestFlushEveryByViewSize: a view of deepSeeds records or more flushes
// every 5/4 of a Period, a smaller one every Period; a configured value
// is kept. The flush schedules the next by it.
func TestFlushEveryByViewSize(t *testing.T) {
	n := settledNet(t, names(3), 5)
	m := n.nodes["n01"]
	p := m.cfg.Period
	for _, c := range []struct {
		records int
		want    time.Duration
	}{{3, p}, {8191, p}, {8192, p * 5 / 4}, {100000, p * 5 / 4}} {
		m.v.n = c.records
		if got := m.flushEvery(); got != c.want {
			t.Errorf("a view of %d records flushes every %v, want %v", c.records, got, c.want)
		}
		now := n.now.Add(time.Hour)
		m.nextFlush = now
		m.fresh = append(m.fresh, freshItem{it: item{h: 1, inc: 1}})
		m.flush(now)
		if got := m.nextFlush.Sub(now); got != c.want {
			t.Errorf("a view of %d records: after a flush, the next is %v later, want %v", c.records, got, c.want)
		}
	}
	m.cfg.FlushEvery = 3 * p
	if got := m.flushEvery(); got != 3*p {
		t.Errorf("configured %v, flushes every %v", 3*p, got)
	}
}
