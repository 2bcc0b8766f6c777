package membership

import (
	"fmt"
	"testing"
	"time"
)

// Attacks on confirmed suspicion, each first found by a review as a way
// around "one accuser's word moves nothing".

func settledNet(t *testing.T, ids []string, seed uint64) *testNet {
	t.Helper()
	n := joinedNet(t, ids, seed, 0)
	n.run(60 * time.Second)
	return n
}

func names(k int) []string {
	var ids []string
	for i := 0; i < k; i++ {
		ids = append(ids, fmt.Sprintf("n%02d", i))
	}
	return ids
}

// alwaysLive fails the test at the first step of d at which a view other
// than x's own does not hold x live.
func alwaysLive(t *testing.T, n *testNet, ids []string, x string, d time.Duration) {
	t.Helper()
	for end := n.now.Add(d); n.now.Before(end); {
		n.run(100 * time.Millisecond)
		for _, id := range ids {
			if id != x && !n.nodes[id].Alive(n.now, x) {
				t.Fatalf("%s does not hold %s live: %s", id, x, n.nodes[id].State(n.now, x))
			}
		}
	}
}

// A fresh lone accusation cannot make its subject refute, with a forged
// "confirmation" or from outside the view: no refutation, and the member
// sending a forged signature is banned.
func TestAttackForcedRefute(t *testing.T) {
	n := settledNet(t, []string{"a", "b", "c", "x"}, 100)
	x := n.nodes["x"]
	for i := 0; i < 20; i++ {
		at := uint64(n.now.UnixNano())
		for _, by := range []string{"zz-not-a-member", "b"} {
			body := accusationBody("x", x.inc, by, at)
			real := appendSig(body, testSig(by, append(x.accPrefix(), body...)))
			fake := appendSig(accusationBody("x", x.inc, "c", at), []byte("garbage"))
			_ = x.Receive(n.now, by, encodeUpdates(msgUpdates, nil, [][]byte{real, fake}))
		}
		n.run(200 * time.Millisecond)
	}
	if got := x.Stats().Refutations; got != 0 {
		t.Errorf("x refuted %d fresh lone accusations", got)
	}
	if x.Stats().Bans == 0 {
		t.Error("b sent a forged signature and was not banned")
	}
}

// An old honest accusation, replayed with a fresh one of the liar's own,
// is no confirmation: the member stays live everywhere.
func TestAttackReplayPair(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "x"}
	n := settledNet(t, ids, 200)
	var captured []byte
	n.drop = func(from, to string, b []byte) bool {
		if b[0] == msgAccuse && captured == nil {
			if m, err := decodeMessage(b); err == nil {
				if a, err := DecodeAccusation(m.accs[0]); err == nil && a.Subject == "x" && a.Accuser == "a" {
					captured = m.accs[0]
				}
			}
		}
		return to == "a" && b[0] == msgAck
	}
	n.run(8 * time.Second)
	n.drop = nil
	if captured == nil {
		t.Fatal("a never accused x: nothing to replay")
	}
	n.run(2 * time.Minute)
	liar := n.nodes["b"]
	xr := liar.v.get(hashOf(KeyID("x")))
	if old, _ := DecodeAccusation(captured); old.Inc != xr.e.Inc {
		t.Fatal("x changed incarnation: the captured accusation is void, the test tests nothing")
	}
	raw, _ := liar.sign(liar.accPrefix(), accusationBody("x", xr.e.Inc, "b", uint64(n.now.UnixNano())))
	_ = n.nodes["c"].Receive(n.now, "b", encodeUpdates(msgUpdates, [][]byte{xr.e.Raw}, [][]byte{captured, raw}))
	alwaysLive(t, n, ids, "x", 10*time.Second)
}

// msgAccuse cannot pin a prober's probes on one member: urgent probes
// come at most once per probe period, and every successor is still
// probed.
func TestAttackUrgentProbes(t *testing.T) {
	ids := names(40)
	n := settledNet(t, ids, 300)
	var q *Membership
	var qid, x, liar string
	for _, id := range ids {
		s := n.nodes[id].successors()
		if len(s) < 2 {
			continue
		}
		for _, p := range n.nodes[id].probersOf(n.nodes[id].v.get(hashOf(KeyID(s[0])))) {
			if p != id && !contains(s, p) {
				q, qid, x, liar = n.nodes[id], id, s[0], p
			}
		}
		if liar != "" {
			break
		}
	}
	if liar == "" {
		t.Fatal("no prober pair found")
	}
	pings := map[string]int{}
	n.drop = func(from, to string, b []byte) bool {
		if from == qid && b[0] == msgPing {
			pings[to]++
		}
		return false
	}
	L := n.nodes[liar]
	xr := L.v.get(hashOf(KeyID(x)))
	raw, _ := L.sign(L.accPrefix(), accusationBody(x, xr.e.Inc, liar, uint64(n.now.UnixNano())))
	msg := encodeUpdates(msgAccuse, nil, [][]byte{raw})
	for i := 0; i < 200; i++ { // 20 s
		_ = q.Receive(n.now, liar, msg)
		n.run(100 * time.Millisecond)
	}
	if pings[x] > 30 {
		t.Errorf("q pinged x %d times in 20 s: urgent probes not bounded", pings[x])
	}
	for _, s := range q.successors() {
		if pings[s] == 0 {
			t.Errorf("q never pinged its successor %s while x was urged on it (pings %v)", s, pings)
		}
	}
}

// A forged spread copy of an accusation a node holds quietly is checked
// like any other: its sender is banned and nothing moves.
func TestAttackForgedSame(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "x"}
	n := settledNet(t, ids, 400)
	c := n.nodes["c"]
	xr := c.v.get(hashOf(KeyID("x")))
	A := n.nodes["a"]
	raw, _ := A.sign(A.accPrefix(), accusationBody("x", xr.e.Inc, "a", uint64(n.now.UnixNano())))
	_ = c.Receive(n.now, "a", encodeUpdates(msgAccuse, nil, [][]byte{raw}))
	forged := appendSig(accusationBody("x", xr.e.Inc, "a", 1), []byte("garbage"))
	_ = c.Receive(n.now, "d", encodeUpdates(msgUpdates, nil, [][]byte{forged}))
	if c.Stats().Bans == 0 {
		t.Error("d sent a forged signature and was not banned")
	}
	alwaysLive(t, n, ids, "x", 20*time.Second)
}

// One liar holding its fresh accusation quietly at every node, then
// spreading a backdated copy: the member stays live everywhere (a spread
// lone accusation leaves it live) and refutes the copy it is sent.
func TestAttackQuietThenLoud(t *testing.T) {
	ids := names(12)
	n := settledNet(t, ids, 500)
	L, x := n.nodes["n01"], "n05"
	for cycle := 0; cycle < 6; cycle++ {
		xr := L.v.get(hashOf(KeyID(x)))
		fresh, _ := L.sign(L.accPrefix(), accusationBody(x, xr.e.Inc, "n01", uint64(n.now.UnixNano())))
		old, _ := L.sign(L.accPrefix(), accusationBody(x, xr.e.Inc, "n01", uint64(n.now.Add(-time.Hour).UnixNano())))
		for _, id := range ids {
			if id == x || id == "n01" {
				continue
			}
			_ = n.nodes[id].Receive(n.now, "n01", encodeUpdates(msgAccuse, nil, [][]byte{fresh}))
			_ = n.nodes[id].Receive(n.now, "n01", encodeUpdates(msgUpdates, [][]byte{xr.e.Raw}, [][]byte{old}))
		}
		alwaysLive(t, n, ids, x, 10*time.Second)
	}
	if got := n.nodes[x].Stats().Refutations; got == 0 || got > 6 {
		t.Errorf("x refuted %d times over 6 spread accusations", got)
	}
}

// A member told of many identities that land in its ring gap (ids ground
// to sit just after it, their addresses a victim's) floods news to at
// most maxProbFan of them a flush, not all, so a third party cannot turn
// it into a reflector of one Have per identity per flush (before the
// bound, n00 sent a Have to all 200 in every flush). Probes are not
// bounded so (one a Period, round robin): they must still reach the
// identities behind the nearest.
func TestAttackSybilsInGap(t *testing.T) {
	ids := names(8)
	n := settledNet(t, ids, 600)
	a := n.nodes["n00"]
	var raws [][]byte
	for i := 0; len(raws) < 200 && i < 2_000_000; i++ {
		id := fmt.Sprintf("sybil%d", i)
		if _, in := a.gapDistance(&rec{kid: KeyID(id)}); !in {
			continue
		}
		raw, err := SignEntry("test", id, 1, [][]byte{[]byte("victim")}, nil, false, 0,
			func(msg []byte) ([]byte, error) { return testSig(id, msg), nil })
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	if len(raws) < 200 {
		t.Fatalf("ground %d sybils in the gap", len(raws))
	}
	_ = a.Receive(n.now, "n01", encodeUpdates(msgUpdates, raws, nil))
	if got := len(a.onProb); got < 100 {
		t.Fatalf("%d sybils taken on probation: the test tests nothing", got)
	}
	haves := map[time.Time]int{} // Haves to sybils by flush
	pinged := map[string]bool{}
	n.tap = func(from, dst string, b []byte) {
		if from != "n00" || len(dst) < 5 || dst[:5] != "sybil" {
			return
		}
		switch b[0] {
		case msgHave:
			haves[n.now]++
		case msgPing:
			pinged[dst] = true
		}
	}
	// News to flood: a member re-signs, so every flush has something.
	for i := 0; i < 10; i++ {
		n.nodes["n03"].SetSelf(n.now, [][]byte{[]byte(fmt.Sprint("n03-", i))}, nil)
		n.run(time.Second)
	}
	most := 0
	for _, k := range haves {
		most = max(most, k)
	}
	// The nearest maxProbFan on probation, and sybils that became ring
	// successors once their probation ended.
	if most == 0 || most > maxProbFan+a.cfg.Rings {
		t.Errorf("n00 sent up to %d Haves to sybils in one flush (want 1 to %d)", most, maxProbFan+a.cfg.Rings)
	}
	if len(pinged) < 2 {
		t.Errorf("n00 probed %d sybils in 10 s", len(pinged))
	}
}
