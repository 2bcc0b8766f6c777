package membership

import (
	"testing"
	"time"
)

// TestLateAcksCalmProbers: a member whose acks all arrive 1.2 s late (a
// busy machine: the default probe fails after 1 s) is live throughout.
// Its probers learn its round trip from the late acks (its rto, so their
// next probes wait long enough) and withdraw the accusation the failed
// probe made before it spreads, so it is accused now and then, not every
// other probe, and refutes seldom.
func TestLateAcksCalmProbers(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e", "f", "x"}
	n := joinedNet(t, ids, 7, 0)
	n.run(30 * time.Second)
	for _, id := range ids {
		if st := n.nodes[id].State(n.now, "x"); st != "live" {
			t.Fatalf("before: %s sees x %s", id, st)
		}
	}
	n.delay = func(from, _ string, b []byte) time.Duration {
		if from == "x" && b[0] == msgAck {
			return 1200 * time.Millisecond
		}
		return 0
	}
	before := n.nodes["x"].Stats().Refutations
	var late uint64
	notLive := 0
	for range 120 {
		n.run(500 * time.Millisecond)
		for _, id := range ids[:len(ids)-1] {
			if n.nodes[id].State(n.now, "x") != "live" {
				notLive++
			}
		}
	}
	for _, id := range ids[:len(ids)-1] {
		late += n.nodes[id].Stats().LateAcks
	}
	refuted := n.nodes["x"].Stats().Refutations - before
	t.Logf("60 s of acks 1.2 s late: %d late acks taken, x refuted %d accusations, not live in %d of %d looks", late, refuted, notLive, 120*(len(ids)-1))
	if late == 0 {
		t.Fatal("no late ack was taken")
	}
	if refuted > 2 {
		t.Fatalf("x refuted %d accusations in 60 s of slow acks, want at most 2", refuted)
	}
}

// TestAckFromStrangerIgnored: an ack counts only from the probe's target
// or a helper asked to ping it. Another member that guesses the sequence
// number (they are consecutive) cannot keep a silent member live.
func TestAckFromStrangerIgnored(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "x"}
	n := joinedNet(t, ids, 3, 0)
	n.run(30 * time.Second)
	n.drop = func(_, to string, _ []byte) bool { return to == "x" }
	a := n.nodes["a"]
	for end := n.now.Add(20 * time.Second); n.now.Before(end); n.run(50 * time.Millisecond) {
		p := a.probe
		if p == nil || p.target != "x" || p.indirect {
			continue
		}
		stranger := "b" // a member a did not ask to ping x
		if err := a.Receive(n.now, stranger, encodeProbe(msgAck, p.seq, 0)); err != nil {
			t.Fatal(err)
		}
		if a.probe != p {
			t.Fatalf("%s's forged ack of a's probe %d of x ended it", stranger, p.seq)
		}
		if err := a.Receive(n.now, "x", encodeProbe(msgAck, p.seq, 0)); err != nil {
			t.Fatal(err)
		}
		if a.probe != nil {
			t.Fatalf("x's own ack of a's probe %d did not end it", p.seq)
		}
		return
	}
	t.Fatal("a never probed x in 20 s")
}

// TestRelayPassesOnlyTargetsAck: a helper asked to ping x passes on an ack
// only from x. A stranger that learnt the helper's sequence numbers (a
// ping-req naming itself gets it pinged with the next one) cannot have a
// silent member's probe answered through the helper.
func TestRelayPassesOnlyTargetsAck(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "x"}
	n := joinedNet(t, ids, 3, 0)
	n.run(30 * time.Second)
	n.drop = func(_, to string, _ []byte) bool { return to == "x" }
	a := n.nodes["a"]
	for end := n.now.Add(30 * time.Second); n.now.Before(end); n.run(50 * time.Millisecond) {
		p := a.probe
		if p == nil || p.target != "x" || !p.indirect || len(p.helpers) == 0 {
			continue
		}
		n.run(50 * time.Millisecond) // the ping-req reaches the helper
		h := n.nodes[p.helpers[0]]
		var hseq uint64
		for s, rl := range h.relays {
			if rl.requester == "a" && rl.seq == p.seq {
				hseq = s
			}
		}
		if hseq == 0 {
			t.Fatalf("helper %s holds no relay of a's probe %d", p.helpers[0], p.seq)
		}
		stranger := "c"
		if stranger == p.helpers[0] {
			stranger = "d"
		}
		if err := h.Receive(n.now, stranger, encodeProbe(msgAck, hseq, 0)); err != nil {
			t.Fatal(err)
		}
		if _, ok := h.relays[hseq]; !ok {
			t.Fatalf("%s's forged ack ended helper %s's relay", stranger, p.helpers[0])
		}
		n.run(100 * time.Millisecond)
		if a.probe != p {
			t.Fatalf("a's probe %d of silent x ended after %s's forged ack at helper %s", p.seq, stranger, p.helpers[0])
		}
		return
	}
	t.Fatal("a never probed x indirectly in 30 s")
}

// TestLateLiarIsAccused: a member that answers one prober's every probe
// just after it failed (whatever the prober's timeout) gains nothing past
// the longest timeout: its rto reaches that bound, the acks then come
// later than any withdrawal allows, and the prober's accusation stands
// and spreads, so the member must refute it.
func TestLateLiarIsAccused(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e", "f", "x"}
	n := joinedNet(t, ids, 7, 0)
	n.run(30 * time.Second)
	a := n.nodes["a"]
	n.delay = func(from, to string, b []byte) time.Duration {
		if from == "x" && to == "a" && b[0] == msgAck && a.probe != nil && a.probe.target == "x" {
			return 2*a.probeTimeout(a.probe) + 300*time.Millisecond
		}
		return 0
	}
	// a's helpers are not reached: the liar's acks to it are the test.
	n.drop = func(from, _ string, b []byte) bool { return from == "a" && b[0] == msgPingReq }
	before := n.nodes["x"].Stats().Refutations
	n.run(3 * time.Minute)
	late, refuted := a.Stats().LateAcks, n.nodes["x"].Stats().Refutations-before
	t.Logf("3 min of acks just after a's probes failed: a took %d late acks, rto of x %v (bound %v), x refuted %d", late, a.peers["x"].rto(), a.maxTimeout(), refuted)
	if late == 0 {
		t.Fatal("a took no late ack: the liar's acks were not late")
	}
	if refuted == 0 {
		t.Fatal("x was never accused past the longest timeout")
	}
}
