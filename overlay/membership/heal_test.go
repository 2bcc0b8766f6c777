package membership

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHeal: eight members, cut in two halves for longer than the
// tombstone time (5 min), purge each other; once the network is whole
// again they stay two overlays (anti-entropy runs only between members
// that know each other). Heal on a member its view holds live sends
// nothing; Heal from one side to a member of the other (which its view no
// longer holds) asks it for its view, and every view holds all eight.
// Checked: without that Heal, every view is still at 4 30 s later.
func TestHeal(t *testing.T) {
	ids, n := eightJoined(t, "h")
	all := func() bool {
		for _, a := range ids {
			for _, b := range ids {
				if !n.nodes[a].Alive(n.now, b) {
					return false
				}
			}
		}
		return true
	}
	if !all() {
		t.Fatal("the eight did not converge")
	}
	side := func(id string) bool { return id < "h4" }
	n.drop = func(from, to string, _ []byte) bool { return side(from) != side(to) }
	n.run(7 * time.Minute)
	n.drop = nil
	n.run(time.Minute)
	for _, a := range ids {
		for _, b := range ids {
			if side(a) != side(b) && n.nodes[a].Knows(b) {
				t.Fatalf("after the partition %s still holds %s (%s)", a, b, n.nodes[a].State(n.now, b))
			}
		}
	}
	if q := len(n.queue); n.nodes["h1"].Heal(n.now, "h2") || len(n.queue) != q {
		t.Fatalf("Heal of a live member sent %d messages", len(n.queue)-q)
	}
	if !n.nodes["h1"].Heal(n.now, "h6") {
		t.Fatal("Heal of a member the view does not hold sent nothing")
	}
	n.run(30 * time.Second)
	if !all() {
		var out []string
		for _, a := range ids {
			out = append(out, fmt.Sprintf("%s sees %d", a, len(n.nodes[a].Live(n.now))))
		}
		t.Fatalf("not healed 30 s after Heal: %s", strings.Join(out, ", "))
	}
}

// TestHealDead: after a cut shorter than the tombstone, each side holds the
// other dead (not yet purged): Heal of a member held dead pings it (one
// message, to it), and the two sides are whole again.
func TestHealDead(t *testing.T) {
	ids, n := eightJoined(t, "d")
	side := func(id string) bool { return id < "d4" }
	n.drop = func(from, to string, _ []byte) bool { return side(from) != side(to) }
	n.run(2 * time.Minute)
	n.drop = nil
	if s := n.nodes["d1"].State(n.now, "d6"); s != "dead" {
		t.Fatalf("after a 2-minute cut d1 holds d6 %s, want dead (tombstoned, not purged)", s)
	}
	q := len(n.queue)
	if !n.nodes["d1"].Heal(n.now, "d6") {
		t.Fatal("Heal of a member held dead sent nothing")
	}
	if sent := n.queue[q:]; len(sent) != 1 || sent[0].from != "d1" || sent[0].to != "d6" {
		t.Fatalf("Heal of a member held dead sent %d messages (%+v), want one ping to it", len(sent), sent)
	}
	n.run(time.Minute)
	for _, a := range ids {
		for _, b := range ids {
			if !n.nodes[a].Alive(n.now, b) {
				t.Fatalf("a minute after the cut and Heal, %s holds %s %s", a, b, n.nodes[a].State(n.now, b))
			}
		}
	}
}

// eightJoined is a test network of eight members named prefix0…prefix7,
// 30 s after they joined.
func eightJoined(t *testing.T, prefix string) ([]string, *testNet) {
	var ids []string
	for i := range 8 {
		ids = append(ids, fmt.Sprintf("%s%d", prefix, i))
	}
	n := joinedNet(t, ids, 40, 0)
	n.run(30 * time.Second)
	return ids, n
}
