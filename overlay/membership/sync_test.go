package membership

import (
	"fmt"
	"testing"
	"time"
)

// TestAntiEntropyByLeaves: a member that heard none of 150 joins (every
// announcement and fetch to or from it lost while they spread) catches up
// through anti-entropy, and, the differing buckets holding more than
// directSummary members, by leaf digests: msgSubSync answered with the
// leaves' items, not whole buckets.
func TestAntiEntropyByLeaves(t *testing.T) {
	ids := names(100)
	n := settledNet(t, ids, 71)
	x := "n07"
	gossip := func(b []byte) bool {
		switch b[0] {
		case msgHave, msgWant, msgUpdates, msgSnapshot, msgSync, msgSubSync, msgSummary:
			return true
		}
		return false
	}
	n.drop = func(from, to string, b []byte) bool { return (from == x || to == x) && gossip(b) }
	var more []string
	for i := 0; i < 150; i++ {
		id := fmt.Sprintf("m%03d", i)
		n.add(id, uint64(1000+i)).Join(n.now, ids[0])
		more = append(more, id)
	}
	n.run(20 * time.Second)
	all := append(append([]string(nil), ids...), more...)
	missing := func() int {
		k := 0
		for _, id := range all {
			if id != x && !n.nodes[x].Alive(n.now, id) {
				k++
			}
		}
		return k
	}
	if k := missing(); k < 100 {
		t.Fatalf("x already holds all but %d of the new members live", k)
	}
	if got := n.nodes[ids[1]].State(n.now, more[0]); got != "live" {
		t.Fatalf("the others do not hold the new members live: %s", got)
	}
	// The joins' flood is over: only anti-entropy can bring x up to date.
	leafPath := 0
	n.drop = func(from, to string, b []byte) bool {
		if (to == x || from == x) && b[0] == msgSubSync {
			leafPath++
		}
		return false
	}
	n.run(2 * n.nodes[x].cfg.SyncEvery)
	if k := missing(); k != 0 {
		t.Fatalf("after two anti-entropy periods x still misses %d members", k)
	}
	if leafPath == 0 {
		t.Error("x and its peers sent each other no leaf digests: the whole buckets were listed")
	}
}

// Leaf digests and summaries are taken only as the answer to a request
// this node sent, once (an unasked-for summary of every bucket would cost
// a scan of the view and an announcement of all of it); leaf lists out of
// range or repeated are refused and change nothing.
func TestSubSyncBadInput(t *testing.T) {
	n := settledNet(t, names(40), 81)
	m := n.nodes["n01"]
	n.queue = nil
	if err := m.Receive(n.now, "n02", encodeSubSync(1, make([]uint64, subBuckets))); err != nil {
		t.Fatal(err)
	}
	if err := m.Receive(n.now, "n02", encodeSummary(^uint64(0), nil)); err != nil {
		t.Fatal(err)
	}
	for _, msg := range n.queue {
		if msg.from == "n01" && (msg.b[0] == msgSummary || msg.b[0] == msgHave) {
			t.Fatalf("an unasked-for msgSubSync or msgSummary was answered (type %d)", msg.b[0])
		}
	}
	size, dg := m.Size(), m.Digest()
	for _, b := range [][]byte{
		encodeLeafSummary([]uint16{leaves}, nil),
		encodeLeafSummary([]uint16{3, 3}, nil),
		append(encodeLeafSummary(nil, nil)[:len(encodeLeafSummary(nil, nil))-1], 1, 7),
	} {
		if err := m.Receive(n.now, "n02", b); err == nil {
			t.Errorf("% x was taken", b)
		}
		if m.Size() != size || m.Digest() != dg {
			t.Fatal("a refused summary changed the view")
		}
	}
}

// A failure's news costs its accusations, not the entry again: a node
// that holds the accused incarnation asks for the accusations alone
// (flagHeld), is sent them alone in compact form, and takes them.
func TestWantAccusationsAlone(t *testing.T) {
	ids := names(40)
	n := settledNet(t, ids, 91)
	x := "n03"
	var sizes []int
	var entries, full, seeded, relayed int
	asked := map[[2]string]int{}
	n.drop = func(from, to string, b []byte) bool {
		if to == x || from == x && b[0] != msgPing && b[0] != msgAck {
			return true // x is gone
		}
		if b[0] == msgWant {
			asked[[2]string{from, to}]++
		}
		if b[0] == msgUpdates && asked[[2]string{to, from}] == 0 {
			if msg, err := decodeMessage(b); err == nil && len(msg.accs) > 0 && msg.seed > 0 {
				seeded++ // the confirming prober's push to its neighbours (seed, news.go)
			} else if err == nil && len(msg.accs) > 0 {
				relayed++ // theirs to their own neighbours
			}
		}
		if b[0] == msgUpdates && asked[[2]string{to, from}] > 0 {
			asked[[2]string{to, from}]-- // an answer to a fetch
			msg, err := decodeMessage(b)
			if err == nil && len(msg.accs)+len(msg.compact) > 0 {
				sizes = append(sizes, len(b))
				entries += len(msg.entries)
				full += len(msg.accs)
			}
		}
		return false
	}
	n.run(30 * time.Second)
	for _, id := range ids {
		if id != x && n.nodes[id].Alive(n.now, x) {
			t.Fatalf("%s still holds x live", id)
		}
	}
	if len(sizes)+seeded+relayed < len(ids)-2 {
		t.Fatalf("%d answers to fetches and %d pushes carried the accusations, want one per view at least", len(sizes), seeded+relayed)
	}
	if seeded+relayed > 2*8 {
		t.Fatalf("%d pushes of the accusations, want at most its confirming prober's neighbours (8), twice (seeds go one hop in 40 members)", seeded+relayed)
	}
	if entries*10 > len(sizes) {
		t.Errorf("%d of %d updates carrying accusations carried the entry too", entries, len(sizes))
	}
	// In compact form (compactAcc): a pair in about 210 bytes, not 340.
	if full*10 > len(sizes) {
		t.Errorf("%d of %d updates carrying accusations carried them in full", full, len(sizes))
	}
	for _, size := range sizes {
		if size > 260 {
			t.Errorf("an update carrying a pair of accusations alone took %d bytes", size)
			break
		}
	}
}

// An attack review found anti-entropy could still be made to list a whole
// view: by an outsider asking (or making this node ask it), or by a leaf
// summary naming leaves of buckets that never differed. Neither works now.
// (A client that pings this node may sync, as a joiner gets a snapshot:
// once per peer per half SyncEvery; see docs/security.md.)
func TestSyncAttacks(t *testing.T) {
	n := settledNet(t, names(200), 101)
	m := n.nodes["n01"]
	answered := func(typ byte) bool {
		for _, msg := range n.queue {
			if msg.from == "n01" && msg.b[0] == typ {
				return true
			}
		}
		return false
	}
	// An outsider (neither a member nor a client pinging this node): its
	// acks with a wrong digest and its sync go unanswered.
	n.queue = nil
	for range 2 {
		_ = m.Receive(n.now, "outsider", encodeProbe(msgAck, 1, 12345))
	}
	var d [buckets]uint64
	_ = m.Receive(n.now, "outsider", encodeSync(&d, region{}))
	if answered(msgSync) || answered(msgSubSync) || answered(msgSummary) {
		t.Fatal("anti-entropy ran with a peer outside the view")
	}
	// A member whose view differs in the first 60 buckets only.
	d = m.v.digests
	for b := 0; b < 60; b++ {
		d[b]++
	}
	n.queue = nil
	_ = m.Receive(n.now, "n02", encodeSync(&d, region{}))
	if !answered(msgSubSync) {
		t.Fatal("200 members: differing buckets were not narrowed to leaves")
	}
	n.queue = nil
	_ = m.Receive(n.now, "n02", encodeLeafSummary([]uint16{60 * subBuckets, 61*subBuckets + 3, 63 * subBuckets}, nil))
	if answered(msgHave) {
		t.Error("leaves of buckets that never differed were announced")
	}
	n.queue = nil
	_ = m.Receive(n.now, "n02", encodeLeafSummary([]uint16{0, 1, 2, 3}, nil))
	if answered(msgHave) {
		t.Error("a second leaf summary (a replay) was answered")
	}
}

// TestDigestWhileSpreading: views that have and have not yet heard of a
// change keep equal digests while it spreads (each keeps the last stable
// version's part until the new one is stable), so anti-entropy does not
// start for news still on its way; once stable, they agree on the new
// version. Before, each change made every view that had it differ from
// every one that had not, and at 10 000 members with churn (make sim)
// nearly every neighbour's digest differed twice in a row.
func TestDigestWhileSpreading(t *testing.T) {
	ids := names(20)
	n := settledNet(t, ids, 41)
	d0 := n.nodes["n00"].Digest()
	for _, id := range ids {
		if d := n.nodes[id].Digest(); d != d0 {
			t.Fatalf("settled: %s's digest %x, n00's %x", id, d, d0)
		}
	}
	if err := n.nodes["n07"].SetSelf(n.now, [][]byte{[]byte("n07-new")}, nil); err != nil {
		t.Fatal(err)
	}
	split := 0
	for i := 0; i < 40; i++ {
		n.run(50 * time.Millisecond)
		var have, lack []string
		for _, id := range ids {
			if string(n.nodes[id].Entry("n07").Addrs[0]) == "n07-new" {
				have = append(have, id)
			} else {
				lack = append(lack, id)
			}
		}
		if len(have) > 0 && len(lack) > 0 {
			split++
			if a, b := n.nodes[have[0]].Digest(), n.nodes[lack[0]].Digest(); a != b {
				t.Fatalf("while spreading: %s (has it) %x, %s (has not) %x", have[0], a, lack[0], b)
			}
		}
	}
	if split == 0 {
		t.Fatal("never caught the change spreading")
	}
	n.run(15 * time.Second)
	d1 := n.nodes["n00"].Digest()
	for _, id := range ids {
		if d := n.nodes[id].Digest(); d != d1 {
			t.Fatalf("stable again: %s's digest %x, n00's %x", id, d, d1)
		}
	}
	if d1 == d0 {
		t.Fatal("the digest never took the new version")
	}
}

// TestDigestSettledOnPeriods: a view's digest is settled on whole
// periods, at a tick and when a probe comes: a view that has not ticked
// since a change became stable compares a neighbour's probe, sent just
// after it did, against the same digest the neighbour sent.
func TestDigestSettledOnPeriods(t *testing.T) {
	ids := names(12)
	n := settledNet(t, ids, 43)
	if err := n.nodes["n07"].SetSelf(n.now, [][]byte{[]byte("n07-new")}, nil); err != nil {
		t.Fatal(err)
	}
	inc := n.nodes["n07"].Entry("n07").Inc
	n.run(5 * time.Second)
	a, b := n.nodes["n01"], n.nodes["n02"]
	stable := time.Unix(0, int64(inc)).Add(a.cfg.StableAfter)
	boundary := stable.Add(a.cfg.Period - 1).Truncate(a.cfg.Period) // the first at or after it
	before := boundary.Add(-100 * time.Millisecond)
	a.Tick(before)
	b.Tick(before)
	if a.Digest() != b.Digest() {
		t.Fatal("the two views differ before the change is stable")
	}
	old := a.Digest()
	a.Tick(boundary.Add(10 * time.Millisecond))
	if a.Digest() == old {
		t.Fatal("the change did not become stable at the boundary")
	}
	ping := a.probeTo(msgPing, 99, "n02")
	if err := b.Receive(boundary.Add(30*time.Millisecond), "n01", ping); err != nil {
		t.Fatal(err)
	}
	if b.Digest() != a.Digest() {
		t.Fatalf("n02 compared n01's probe against %x, n01 sent %x", b.Digest(), a.Digest())
	}
}

// TestDigestFutureVersion: a member signs one version backdated and the
// next a year ahead; two views take them in opposite orders (the later
// refuses the older). Each view's digest kept the last stable version's
// part while the new one was not stable, so the two kept different parts
// (one the backdated version's, one the version before) for a year: a
// sync of nothing, once a period, between every such pair. A version
// dated ahead of this node's clock is stable StableAfter after it came.
func TestDigestFutureVersion(t *testing.T) {
	ids := names(12)
	n := settledNet(t, ids, 47)
	a, b := n.nodes["n01"], n.nodes["n02"]
	if a.Digest() != b.Digest() {
		t.Fatal("settled views differ")
	}
	back := signAt(t, "n07", uint64(n.now.Add(-20*time.Second).UnixNano()))
	ahead := signAt(t, "n07", uint64(n.now.Add(365*24*time.Hour).UnixNano()))
	now := n.now
	_ = a.Receive(now, "n03", encodeUpdates(msgUpdates, [][]byte{back}, nil))
	_ = b.Receive(now, "n03", encodeUpdates(msgUpdates, [][]byte{ahead}, nil))
	for i := 0; i < 20; i++ { // past SuspectTimeout: a takes the next version then
		now = now.Add(250 * time.Millisecond)
		a.Tick(now)
		b.Tick(now)
	}
	_ = a.Receive(now, "n03", encodeUpdates(msgUpdates, [][]byte{ahead}, nil))
	_ = b.Receive(now, "n03", encodeUpdates(msgUpdates, [][]byte{back}, nil))
	for i := 0; i < 200; i++ {
		now = now.Add(250 * time.Millisecond)
		a.Tick(now)
		b.Tick(now)
	}
	// (Only n07's part is compared: the two views tick without the
	// network, so each accuses others as it likes.)
	h := hashOf(KeyID("n07"))
	ra, rb := a.v.get(h), b.v.get(h)
	if ra.e.Inc != rb.e.Inc {
		t.Fatalf("the views hold different versions: %d and %d", ra.e.Inc, rb.e.Inc)
	}
	if ra.digested != rb.digested || ra.digested != ra.contribution() {
		t.Fatalf("50 s later, both holding the version dated a year ahead, n07's parts of the digests %x and %x (its own %x)", ra.digested, rb.digested, ra.contribution())
	}
}
