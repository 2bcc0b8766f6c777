package membership

import (
	"fmt"
	"testing"
	"time"
)

// TestAttackShieldedProbation: an identity nobody can reach (its key
// holder is an attacker that relays its entries through a member, and
// refutes its accusations, either as soon as a view holds one or once
// some view holds it confirmed) must never be live in any view, even when
// each of its probers also has identities on probation ground to sit
// nearer after it, unreachable as well and re-signed more than
// SuspectTimeout apart so they stay on probation: shields that took the
// probes meant for it until its probation ended (live in every view at
// 16 s with 4 shields per prober, before probationStep). A reachable
// member that joins meanwhile is live in every view within two
// probations. Production timings (overlay/members.go at the default 1 s
// gossip interval and 10 s FailAfter).
func TestAttackShieldedProbation(t *testing.T) {
	for _, eager := range []bool{false, true} {
		for _, k := range []int{0, 1, 4, 8} {
			for seed := uint64(700); seed < 703; seed++ {
				t.Run(fmt.Sprintf("eager=%v/shields=%d/seed=%d", eager, k, seed), func(t *testing.T) { shieldedProbation(t, k, seed, eager) })
			}
		}
	}
}

func shieldedProbation(t *testing.T, k int, seed uint64, eager bool) {
	ids := names(12)
	n := joinedNetWith(t, ids, seed, 0, func(c *Config) {
		c.SuspectTimeout, c.LocalSuspect = 8*time.Second, 10*time.Second
	})
	n.run(90 * time.Second)
	u := fmt.Sprintf("unreachable%d", seed)
	ur := &rec{kid: KeyID(u)}
	var shields, probers []string
	next := 0
	for _, o := range ids {
		m := n.nodes[o]
		du, in := m.gapDistance(ur)
		if !in {
			continue
		}
		probers = append(probers, o)
		for c := 0; c < k; next++ {
			id := fmt.Sprintf("shield%d", next)
			if d, in := m.gapDistance(&rec{kid: KeyID(id)}); in && d < du {
				shields = append(shields, id)
				c++
			}
		}
	}
	if len(probers) < 2 {
		t.Fatalf("%s has %d probers: the test needs a pair", u, len(probers))
	}
	sign := func(id string) []byte {
		raw, err := SignEntry("test", id, uint64(n.now.UnixNano()), [][]byte{[]byte("x")}, nil, false, 0,
			func(msg []byte) ([]byte, error) { return testSig(id, msg), nil })
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	tell := func(raws [][]byte) { // relayed by n01, a member
		for _, o := range ids {
			_ = n.nodes[o].Receive(n.now, "n01", encodeUpdates(msgUpdates, raws, nil))
		}
	}
	pings := 0
	n.tap = func(from, to string, b []byte) {
		if to == u && len(b) > 0 && b[0] == msgPing {
			pings++
		}
	}
	n.drop = func(from, to string, b []byte) bool { return to == u || contains(shields, to) }
	var rs [][]byte
	for _, s := range shields {
		rs = append(rs, sign(s))
	}
	tell(rs)
	n.run(time.Second) // the shields' probations end first
	tell([][]byte{sign(u)})
	n.addRings("honest", seed+100, 0).Join(n.now, "n03")
	ids = append(ids, "honest")
	honestLive := time.Duration(0)
	refutes := 0
	for i := 0; i < 120; i++ {
		if i%9 == 8 && len(shields) > 0 {
			rs = rs[:0]
			for _, s := range shields {
				rs = append(rs, sign(s))
			}
			tell(rs)
		}
		n.run(time.Second)
		for _, o := range ids {
			if n.nodes[o].Alive(n.now, u) {
				t.Fatalf("at %d s %s holds %s live (%d probers %v, %d shields, %d pings to it, %d refutations)",
					i+1, o, u, len(probers), probers, len(shields), pings, refutes)
			}
		}
		for _, o := range ids {
			if r := n.nodes[o].v.get(hashOf(KeyID(u))); r != nil && (eager || r.confirmed) && (r.acc != nil || r.dead) {
				tell([][]byte{sign(u)})
				refutes++
				break
			}
		}
		if honestLive == 0 && everyoneSees(n, ids, "honest") {
			honestLive = time.Duration(i+1) * time.Second
		}
	}
	if pings == 0 {
		t.Fatalf("%s was never probed", u)
	}
	if eager && refutes == 0 {
		t.Fatalf("%s was never accused", u)
	}
	if honestLive == 0 || honestLive > 32*time.Second {
		t.Fatalf("the member that joined is live in every view after %v (0: never in 120 s)", honestLive)
	}
	t.Logf("%d probers, %d shields: %d pings to %s, %d refutations; the reachable joiner live everywhere at %v",
		len(probers), len(shields), pings, u, refutes, honestLive)
}

// everyoneSees: every node of ids but x holds x live.
func everyoneSees(n *testNet, ids []string, x string) bool {
	for _, o := range ids {
		if o != x && !n.nodes[o].Alive(n.now, x) {
			return false
		}
	}
	return true
}
