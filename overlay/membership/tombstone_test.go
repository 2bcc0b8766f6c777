package membership

import (
	"testing"
	"time"
)

// TestJoinAnswerAccuserLater: a join's answer comes in several messages,
// in any order. One holding a member's confirmed accusations before the
// one holding the accusers' entries must still leave the member accused
// at the joiner (it was held live there, with no tombstone, and taught to
// the overlay again once the other views purged it), taken as soon as the
// accusers' entries come; the same accusations from a peer the joiner did
// not ask are not held for later.
func TestJoinAnswerAccuserLater(t *testing.T) {
	ids := []string{"a", "b", "c", "x"}
	n := joinedNet(t, ids, 41, 0)
	n.run(30 * time.Second)
	a := n.nodes["a"]
	x := a.v.get(hashOf(KeyID("x")))
	accuse := func(by string) []byte {
		raw, err := n.nodes[by].sign(n.nodes[by].accPrefix(), accusationBody("x", x.e.Inc, by, uint64(n.now.UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	entry := func(id string) []byte { return a.v.get(hashOf(KeyID(id))).e.Raw }
	first := encodeUpdates(msgSnapshot, [][]byte{entry("a"), entry("x")}, [][]byte{accuse("b"), accuse("c")})
	rest := encodeUpdates(msgSnapshot, [][]byte{entry("b"), entry("c")}, nil)

	j := n.add("j", 99)
	j.Join(n.now, "a")
	_ = j.Receive(n.now, "a", first)
	if r := j.v.get(x.h); r == nil || r.acc != nil {
		t.Fatal("the test does not reach the case: x missing, or accused before its accusers came")
	}
	_ = j.Receive(n.now.Add(20*time.Millisecond), "a", rest)
	if st := j.State(n.now, "x"); st != "suspect" {
		t.Fatalf("x, accused by b and c in the first part of the answer, is %s at the joiner after the rest came, want suspect", st)
	}

	// The same first part from a peer not asked: not held, so the rest
	// (from anyone) does not make it count.
	k := n.add("k", 98)
	k.Join(n.now, "a")
	_ = k.Receive(n.now, "b", first)
	_ = k.Receive(n.now, "a", rest)
	if r := k.v.get(x.h); r != nil && r.acc != nil {
		t.Fatal("accusations from a peer not asked to answer were held and taken later")
	}
	if len(k.early) != 0 {
		t.Fatalf("%d accusations held from a peer not asked", len(k.early))
	}
}

// TestJoinAnswerEarlyBounded: an answer's accusations by accusers the
// joiner does not hold wait at most maxEarly at a time and at most
// SuspectTimeout.
func TestJoinAnswerEarlyBounded(t *testing.T) {
	ids := []string{"a", "b", "c", "x"}
	n := joinedNet(t, ids, 43, 0)
	n.run(30 * time.Second)
	a := n.nodes["a"]
	x := a.v.get(hashOf(KeyID("x")))
	var accs [][]byte
	for i := range maxEarly + 50 {
		id := string(rune('A'+i%26)) + string(rune('a'+i/26%26)) + string(rune('0'+i/676))
		body := accusationBody("x", x.e.Inc, id, uint64(n.now.UnixNano()))
		accs = append(accs, appendSig(body, testSig(id, append(a.accPrefix(), body...))))
	}
	j := n.add("j", 97)
	j.Join(n.now, "a")
	_ = j.Receive(n.now, "a", encodeUpdates(msgSnapshot, [][]byte{x.e.Raw}, accs))
	if len(j.early) != maxEarly {
		t.Fatalf("%d accusations held, want the bound %d", len(j.early), maxEarly)
	}
	j.Tick(n.now.Add(j.cfg.SuspectTimeout + j.cfg.Period))
	if len(j.early) != 0 {
		t.Fatalf("%d accusations still held past SuspectTimeout", len(j.early))
	}
}

// TestRetiredTombstoneNotTaught: in the last tenth of its Tombstone a dead
// member's record is out of the view's digest and out of a join's answer
// (a view that had already forgotten it took it back as a new member),
// but still held, so a copy that comes back is not new.
func TestRetiredTombstoneNotTaught(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "x"}
	n := joinedNet(t, ids, 47, 0)
	n.run(30 * time.Second)
	a := n.nodes["a"]
	xh := hashOf(KeyID("x"))
	xRaw := a.v.get(xh).e.Raw
	delete(n.nodes, "x")
	n.run(20 * time.Second)
	r := a.v.get(xh)
	if r == nil || r.pub() == kindAlive {
		t.Fatal("x is not accused at a: the test does not reach the case")
	}
	if r.digested == 0 {
		t.Fatal("x's tombstone is not in a's digest while it is young")
	}
	retire, end := a.retireAt(r), unixTime(r.eventTime()).Add(a.cfg.Tombstone)
	n.run(retire.Sub(n.now) + 2*a.cfg.Period)
	if !n.now.Before(end) {
		t.Fatal("past the purge: the test does not reach the case")
	}
	if r = a.v.get(xh); r == nil {
		t.Fatal("x's tombstone was forgotten before its Tombstone ended")
	}
	if r.digested != 0 {
		t.Fatal("x's retired tombstone is still in a's digest")
	}
	j := n.add("j", 99)
	j.Join(n.now, "a")
	n.run(3 * time.Second)
	if st := j.State(n.now, "b"); st != "live" {
		t.Fatalf("the joiner holds b %s: its join did not complete", st)
	}
	if st := j.State(n.now, "x"); st != "unknown" {
		t.Fatalf("a joiner through a holds x, whose tombstone is retired, as %s", st)
	}
	// A copy of x's entry sent back to a is not a new member there.
	_ = a.Receive(n.now, "b", encodeUpdates(msgUpdates, [][]byte{xRaw}, nil))
	if st := a.State(n.now, "x"); st == "live" || st == "probation" {
		t.Fatalf("x's entry sent back to a, which holds it retired, made it %s", st)
	}
	n.run(end.Sub(n.now) + 2*a.cfg.Period)
	if a.v.get(xh) != nil {
		t.Fatal("x's tombstone outlived its Tombstone")
	}
}
