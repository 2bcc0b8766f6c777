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

// TestSeedOnlyAtOrigin: a change is pushed whole to the ring neighbours
// by the member it starts at alone (a neighbour that takes the push, or a
// flood target fetching from the member, floods it as any change), and a
// leave reaches each neighbour once.
func TestSeedOnlyAtOrigin(t *testing.T) {
	ids := names(30)
	n := settledNet(t, ids, 17)
	x := n.nodes["n05"]
	type push struct {
		from string
		inc  uint64
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
				pushed = append(pushed, push{from, e.Inc})
			}
		}
	}
	n.run(time.Second)
	if err := x.SetSelf(n.now, [][]byte{[]byte("n05-moved")}, nil); err != nil {
		t.Fatal(err)
	}
	inc := x.inc
	n.run(15 * time.Second)
	pushes := map[string]int{}
	for _, p := range pushed {
		if p.inc == inc {
			pushes[p.from]++
		}
	}
	for _, id := range ids {
		if r := n.nodes[id].v.get(x.selfH); r == nil || r.e.Inc != inc {
			t.Fatalf("%s did not take n05's new entry", id)
		}
	}
	if len(pushes) != 1 || pushes["n05"] == 0 || pushes["n05"] > len(x.Neighbours()) {
		t.Fatalf("unasked pushes of n05's new entry, by sender: %v (want n05 alone, to its %d neighbours)", pushes, len(x.Neighbours()))
	}
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
