package membership

import (
	"testing"
	"time"
)

// TestLateAcksCalmProbers: a member whose acks all arrive 1.2 s late (a
// busy machine: the default probe fails after 1 s) is live throughout.
// Its probers take each late ack as the sign of a slow network (the
// health score goes up, stretching their timeouts) and drop the
// accusation the failed probe made before it spreads, so it is accused
// now and then, not every other probe, and refutes seldom.
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
