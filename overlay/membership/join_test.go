package membership

import (
	"fmt"
	"testing"
	"time"
)

// TestJoinThroughSeveralBoots: a node joins through three bootstrap
// members at once, as overlay.Join does. Every answer is trusted, so no
// member is on probation in the joiner's view and it floods and probes
// its ring neighbours only. When only the last boot asked was remembered,
// the first answers put the whole view on probation, off the rings, and
// the joiner sent a Have or a ping to every member at once (39 of the 40
// here; 4 now).
func TestJoinThroughSeveralBoots(t *testing.T) {
	var ids []string
	for i := 0; i < 40; i++ {
		ids = append(ids, fmt.Sprintf("n%02d", i))
	}
	n := joinedNet(t, ids, 1, 0)
	n.run(20 * time.Second)
	j := n.add("joiner", 99)
	for _, boot := range ids[:3] {
		j.Join(n.now, boot)
	}
	// The boots' answers arrive in the order asked: all but the last
	// came while another join was the last asked.
	sentTo := map[string]bool{}
	for end := n.now.Add(3 * time.Second); n.now.Before(end); {
		for _, q := range n.queue {
			if q.from == "joiner" && (q.b[0] == msgHave || q.b[0] == msgPing) {
				sentTo[q.to] = true
			}
		}
		n.run(50 * time.Millisecond)
	}
	if !j.Joined() {
		t.Fatal("the joiner has no view")
	}
	onProb := 0
	for _, id := range ids {
		if st := j.State(n.now, id); st == "probation" {
			onProb++
		} else if st != "live" {
			t.Fatalf("the joiner sees %s %s", id, st)
		}
	}
	if onProb > 0 {
		t.Fatalf("%d of %d members on probation in the view of a node that joined through three boots", onProb, len(ids))
	}
	if k := len(sentTo); k > 2*len(j.Neighbours()) {
		t.Fatalf("in its first 3 s the joiner flooded or probed %d members, its ring neighbours being %d", k, len(j.Neighbours()))
	}
}
