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
}

type testMsg struct {
	from, to string
	b        []byte
}

type testTransport struct {
	n    *testNet
	from string
}

func (tr testTransport) Send(to string, b []byte) {
	tr.n.queue = append(tr.n.queue, testMsg{tr.from, to, append([]byte(nil), b...)})
}

func testSig(id string, msg []byte) []byte {
	h := sha256.Sum256(append([]byte(id+"\x00"), msg...))
	return h[:]
}

func (n *testNet) add(id string, seed uint64) *Membership {
	n.t.Helper()
	m, err := New(Config{Name: "test", Self: id, Serve: true, Addrs: [][]byte{[]byte(id)},
		Sign:   func(msg []byte) ([]byte, error) { return testSig(id, msg), nil },
		Verify: func(id string, msg, sig []byte) bool { return string(testSig(id, msg)) == string(sig) },
		Rand:   rand.New(rand.NewPCG(seed, seed))}, testTransport{n, id}, n.now, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	n.nodes[id] = m
	return m
}

// run steps the network for d in steps of 50 ms.
func (n *testNet) run(d time.Duration) {
	for end := n.now.Add(d); n.now.Before(end); n.now = n.now.Add(50 * time.Millisecond) {
		q := n.queue
		n.queue = nil
		for _, msg := range q {
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
	n := &testNet{t: t, now: time.Unix(1_700_000_000, 0), nodes: map[string]*Membership{}}
	ids := []string{"a", "b", "c", "x"}
	for i, id := range ids {
		n.add(id, uint64(i+1))
	}
	for _, id := range ids[1:] {
		n.nodes[id].Join(n.now, "a")
	}
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
	n.drop = func(_, to string, b []byte) bool { return to == "x" && (b[0] == msgPing || b[0] == msgUpdates) }
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
