package membership

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// nonCanonical is an accusation by by of subject's incarnation inc, signed
// over a body with a field accusationBody never writes (a member may sign
// any encoding; DecodeAccusation takes it).
func nonCanonical(m *Membership, subject string, inc uint64, by string, at time.Time) []byte {
	body := accusationBody(subject, inc, by, uint64(at.UnixNano()))
	body = protowire.AppendTag(body, 9, protowire.VarintType)
	body = protowire.AppendVarint(body, 1)
	return appendSig(body, testSig(by, append(m.accPrefix(), body...)))
}

// TestCompactAcc: a canonical accusation's compact form rebuilds it byte
// for byte; a non-canonical one has none (nil); compact forms that do
// not decode are refused.
func TestCompactAcc(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := viewOf(t, snapshotOf(t, 10), "m0", now)
	raw := accusation(m, "m1", 7, "m2", now)
	a, err := DecodeAccusation(raw)
	if err != nil {
		t.Fatal(err)
	}
	c := compactAcc(a)
	if want := 16 + 1 + len(protowire.AppendVarint(nil, uint64(now.UnixNano()))) + len(a.sig); len(c) != want {
		t.Fatalf("compact form of %d bytes, want %d (two 8-byte hashes, the incarnation, the time, the signature)", len(c), want)
	}
	d, err := decodeCompact(c)
	if err != nil {
		t.Fatal(err)
	}
	if d.subject != hashOf(KeyID("m1")) || d.accuser != hashOf(KeyID("m2")) || d.inc != 7 {
		t.Fatalf("decoded %+v", d)
	}
	back, err := d.expand("m1", "m2")
	if err != nil || !bytes.Equal(back.Raw, raw) {
		t.Fatalf("rebuilt %x (%v), want %x", back.Raw, err, raw)
	}
	odd, err := DecodeAccusation(nonCanonical(m, "m1", 7, "m2", now))
	if err != nil {
		t.Fatal(err)
	}
	if c := compactAcc(odd); c != nil {
		t.Fatalf("a non-canonical accusation got a compact form %x", c)
	}
	for _, v := range [][]byte{nil, c[:15], c[:16], c[:17], append(append([]byte(nil), c[:16]...), 0x80), append(c[:len(c):len(c)], make([]byte, 100)...)} {
		if _, err := decodeCompact(v); err == nil {
			t.Errorf("decodeCompact(%x) took it", v)
		}
	}
}

// TestCompactOnlyAnswers: compact accusations a view did not ask for (no
// fetch of their subject pending) are not taken, whatever their
// signatures; an asked-for one whose accuser the view lacks is asked
// again in full, of the same peer, once.
func TestCompactOnlyAnswers(t *testing.T) {
	ids := names(20)
	n := settledNet(t, ids, 17)
	a, s, x1, x2 := n.nodes["n00"], "n05", "n06", "n07"
	r := a.v.get(hashOf(KeyID(s)))
	pair := [][]byte{}
	for _, by := range []string{x1, x2} {
		acc, err := DecodeAccusation(accusation(a, s, r.e.Inc, by, n.now))
		if err != nil {
			t.Fatal(err)
		}
		pair = append(pair, compactAcc(acc))
	}
	var sent [][]byte
	n.tap = func(from, _ string, b []byte) {
		if from == "n00" && b[0] == msgWant {
			sent = append(sent, append([]byte(nil), b...))
		}
	}
	_ = a.Receive(n.now, x1, appendCompact([]byte{msgUpdates}, pair))
	if st := a.State(n.now, s); st != "live" {
		t.Fatalf("unasked compact accusations got %s %s", s, st)
	}
	// Asked (a fetch pending), but the view lacks the second accuser.
	a.pending[r.h] = &wanted{it: item{h: r.h, inc: r.e.Inc, kind: kindConfirmed}, until: n.now.Add(time.Second)}
	stranger := "zz-not-a-member"
	acc, err := DecodeAccusation(accusation(a, s, r.e.Inc, stranger, n.now))
	if err != nil {
		t.Fatal(err)
	}
	pair[1] = compactAcc(acc)
	for i := 0; i < 2; i++ {
		_ = a.Receive(n.now, x1, appendCompact([]byte{msgUpdates}, pair))
	}
	if st := a.State(n.now, s); st != "live" {
		t.Fatalf("half a pair got %s %s", s, st)
	}
	if len(sent) != 1 {
		t.Fatalf("%d wants sent, want 1 (asked again in full once)", len(sent))
	}
	msg, err := decodeMessage(sent[0])
	if err != nil || len(msg.items) != 1 || msg.items[0].held || msg.items[0].h != r.h {
		t.Fatalf("the second want: %+v %v", msg, err)
	}
	if a.stats.Bans != 0 || a.stats.BadSignatures != 0 {
		t.Fatalf("%d bans, %d bad signatures", a.stats.Bans, a.stats.BadSignatures)
	}
}

// TestCompactSkipsNonCanonical: a member signs its accusations in an
// encoding of its own (an extra field). The views it sends them to pass
// them on in full, not in a compact form that would be rebuilt into a
// body nobody signed: no view bans another, and the news spreads.
func TestCompactSkipsNonCanonical(t *testing.T) {
	ids := names(20)
	n := settledNet(t, ids, 23)
	a, s, x1, x2 := n.nodes["n00"], "n05", "n06", "n07"
	r := a.v.get(hashOf(KeyID(s)))
	full, compact := 0, 0
	n.drop = func(from, to string, b []byte) bool {
		if to == s && b[0] != msgPing && b[0] != msgAck {
			return true // s never hears of it (so does not refute) and answers probes (so no one else accuses it)
		}
		if b[0] == msgUpdates {
			if msg, err := decodeMessage(b); err == nil {
				full += len(msg.accs)
				compact += len(msg.compact)
			}
		}
		return false
	}
	_ = a.Receive(n.now, x1, encodeUpdates(msgUpdates, nil,
		[][]byte{nonCanonical(a, s, r.e.Inc, x1, n.now), nonCanonical(a, s, r.e.Inc, x2, n.now)}))
	if st := a.State(n.now, s); st == "live" {
		t.Fatalf("%s took the pair: %s %s", "n00", s, st)
	}
	n.run(10 * time.Second)
	for _, id := range ids {
		m := n.nodes[id]
		if m.stats.Bans != 0 || m.stats.BadSignatures != 0 {
			t.Fatalf("%s: %d bans, %d bad signatures", id, m.stats.Bans, m.stats.BadSignatures)
		}
	}
	took := 0
	for _, id := range ids {
		if id != s && n.nodes[id].State(n.now, s) != "live" {
			took++
		}
	}
	if took < len(ids)-3 || full == 0 { // all but s and the accusers (who take only their own)
		t.Fatalf("%d views took the accusations (%d passed in full, %d compact)", took, full, compact)
	}
	if compact > 0 {
		t.Fatalf("%d non-canonical accusations passed in compact form", compact)
	}
}

// TestAttackCompactCollision: a compact accusation names its accuser by
// id hash, and a view may hold another identity at that hash (two ids
// whose hashes collide, 2^32 key generations away, each told to a part of
// the overlay). Rebuilt with the wrong id, the accusation fails its
// signature: that banned the honest member that answered (five in 90 s
// in a review's run). Now the view asks for it in full, once a fetch,
// and bans no one.
func TestAttackCompactCollision(t *testing.T) {
	ids := names(20)
	n := settledNet(t, ids, 29)
	b := n.nodes["n01"]
	evilRaw := signAt(t, "evil", uint64(n.now.UnixNano()))
	evil, err := DecodeEntry(evilRaw)
	if err != nil {
		t.Fatal(err)
	}
	// n01 holds "evil" where the others hold n06 (and, as a colliding id
	// would be, where evil's own hash is).
	_ = b.Receive(n.now, "evil", encodeUpdates(msgUpdates, [][]byte{evilRaw}, nil))
	if b.Entry("evil") == nil {
		t.Fatal("n01 did not take evil's entry")
	}
	r := b.v.mut(hashOf(KeyID("n06")))
	r.e = evil
	a, s, x1, x2 := n.nodes["n00"], "n05", "n06", "n07"
	compact, full := 0, 0
	n.drop = func(_, to string, msg []byte) bool {
		if to == "n01" && msg[0] == msgUpdates {
			if d, err := decodeMessage(msg); err == nil {
				compact += len(d.compact)
				full += len(d.accs)
			}
		}
		return to == s && msg[0] != msgPing && msg[0] != msgAck // s never refutes
	}
	inc := a.v.get(hashOf(KeyID(s))).e.Inc
	_ = a.Receive(n.now, x1, encodeUpdates(msgUpdates, nil,
		[][]byte{accusation(a, s, inc, x1, n.now), accusation(a, s, inc, x2, n.now)}))
	if st := a.State(n.now, s); st == "live" {
		t.Fatalf("n00 did not take the pair: %s %s", s, st)
	}
	n.run(30 * time.Second)
	if b.stats.Bans != 0 {
		t.Fatalf("n01 banned %d honest members over a rebuilt accusation", b.stats.Bans)
	}
	if compact == 0 || full == 0 {
		t.Fatalf("n01 was answered %d compact and %d full accusations: want both (asked again in full)", compact, full)
	}
	for _, id := range ids {
		if id != s && id != x1 && id != x2 && id != "n01" && n.nodes[id].State(n.now, s) == "live" {
			t.Fatalf("%s still holds %s live", id, s)
		}
	}
}

// TestCompactOnlyForNewAskers: a want without field 2 (a node from before
// compact accusations, which would drop field 3) is answered in full; one
// with it, compact.
func TestCompactOnlyForNewAskers(t *testing.T) {
	ids := names(12)
	n := settledNet(t, ids, 53)
	a, s := n.nodes["n00"], "n05"
	r := a.v.get(hashOf(KeyID(s)))
	_ = a.Receive(n.now, "n06", encodeUpdates(msgUpdates, nil,
		[][]byte{accusation(a, s, r.e.Inc, "n06", n.now), accusation(a, s, r.e.Inc, "n07", n.now)}))
	r = a.v.get(hashOf(KeyID(s)))
	if r.pub() != kindConfirmed {
		t.Fatalf("n00 holds %s as kind %d", s, r.pub())
	}
	var answers []*message
	n.tap = func(from, to string, b []byte) {
		if from == "n00" && to == "n09" && b[0] == msgUpdates {
			m, err := decodeMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			answers = append(answers, m)
		}
	}
	it := item{h: r.h, inc: r.e.Inc, kind: kindConfirmed, held: true}
	_ = a.Receive(n.now, "n09", encodeItems(msgWant, []item{it}))
	_ = a.Receive(n.now.Add(time.Millisecond), "n09", encodeWant([]item{it}))
	if len(answers) != 2 {
		t.Fatalf("%d answers", len(answers))
	}
	if len(answers[0].accs) != 2 || len(answers[0].compact) != 0 {
		t.Fatalf("an old want got %d full and %d compact accusations", len(answers[0].accs), len(answers[0].compact))
	}
	if len(answers[1].accs) != 0 || len(answers[1].compact) != 2 {
		t.Fatalf("a new want got %d full and %d compact accusations", len(answers[1].accs), len(answers[1].compact))
	}
}
