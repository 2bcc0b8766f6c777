package lsp

import (
	"testing"
	"time"
)

func TestNewerOrder(t *testing.T) {
	t0 := time.Now()
	mk := func(callID string, cseq uint32, ts time.Duration, removed bool, contact string) *entry {
		e := &entry{AOR: "sip:bob@biloxi.example", Removed: removed,
			B: Binding{Contact: contact, Expires: t0.Add(time.Hour), CallID: callID, CSeq: cseq, Timestamp: t0.Add(ts)}}
		e.seal()
		return e
	}
	cases := []struct {
		name          string
		winner, loser *entry
	}{
		{"higher CSeq of one Call-ID, though older", mk("c", 5, 0, false, "sip:a@h"), mk("c", 4, time.Second, false, "sip:a@h")},
		{"same CSeq: the first write stays", mk("c", 5, 0, false, "sip:a@h"), mk("c", 5, time.Second, false, "sip:a@h")},
		{"removal beats its binding", mk("c", 5, time.Second, true, "sip:a@h"), mk("c", 5, 0, false, "sip:a@h")},
		{"other Call-ID: last writer", mk("d", 1, time.Second, false, "sip:a@h"), mk("c", 9, 0, false, "sip:a@h")},
		{"no Call-ID: last writer", mk("", 0, time.Second, false, "sip:a@h"), mk("", 0, 0, false, "sip:a@h")},
	}
	for _, c := range cases {
		if !c.winner.newer(c.loser) || c.loser.newer(c.winner) {
			t.Errorf("%s: winner.newer(loser)=%v loser.newer(winner)=%v", c.name, c.winner.newer(c.loser), c.loser.newer(c.winner))
		}
		for _, order := range [][]*entry{{c.loser, c.winner}, {c.winner, c.loser}} {
			merged := map[string]*entry{}
			merge(merged, order)
			if merged[c.winner.B.ID()] != c.winner {
				t.Errorf("%s: merge in order %v kept the loser", c.name, order[0] == c.winner)
			}
		}
	}
}
