package membership

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"
)

// mixedNet is k members, every third keeping a partial view of bits; all
// join through the first (a full view, which answers a partial joiner
// with its region alone).
func mixedNet(t *testing.T, k, bits int) (*testNet, []string) {
	t.Helper()
	n := &testNet{t: t, now: time.Unix(1_700_000_000, 0), nodes: map[string]*Membership{}}
	ids := names(k)
	for i, id := range ids {
		b := 0
		if i%3 == 2 {
			b = bits
		}
		n.addRegion(id, uint64(i)+7, 0, b)
	}
	for _, id := range ids[1:] {
		n.nodes[id].Join(n.now, ids[0])
	}
	n.run(40 * time.Second)
	return n, ids
}

func regionHas(view *Membership, id string) bool { return view.Covers(KeyID(id)) }

// TestPartialViews: partial views hold exactly the live members of their
// region, give the same replica sets as full views for the keys in it
// and none for the keys outside, and learn of failures (of a partial and
// of a full member) as fast as the full views do.
func TestPartialViews(t *testing.T) {
	n, ids := mixedNet(t, 48, 1)
	full := n.nodes[ids[0]]
	var partial []string
	for _, id := range ids {
		v := n.nodes[id]
		bits, _ := v.Region()
		if bits == 0 {
			continue
		}
		partial = append(partial, id)
		for _, o := range ids {
			if got, want := v.Alive(n.now, o), regionHas(v, o); got != want {
				t.Fatalf("partial %s holds %s live: %v, in its region: %v (%s)", id, o, got, want, v.State(n.now, o))
			}
		}
		t.Logf("partial %s holds %d of %d", id, v.Size(), len(ids))
		if v.Size() >= len(ids) {
			t.Fatalf("partial %s holds %d members of %d", id, v.Size(), len(ids))
		}
		for k := 0; k < 50; k++ {
			key := sha256.Sum256(binary.BigEndian.AppendUint64([]byte(id), uint64(k)))
			got := v.Closest(n.now, key, 3)
			if !v.Covers(key) {
				if got != nil {
					t.Fatalf("partial %s answered %v for a key outside its region", id, got)
				}
				continue
			}
			if want := full.Closest(n.now, key, 3); !slices.Equal(got, want) {
				t.Fatalf("partial %s: replicas %v, the full view's %v", id, got, want)
			}
		}
	}
	if len(partial) < 10 {
		t.Fatalf("only %d partial views", len(partial))
	}
	// One partial and one full member in the first partial view's region
	// crash.
	var gone []string
	for _, id := range ids[1:] {
		if regionHas(n.nodes[partial[0]], id) && id != partial[0] && len(gone) < 2 {
			if b, _ := n.nodes[id].Region(); (b == 0) == (len(gone) == 1) {
				gone = append(gone, id)
			}
		}
	}
	if len(gone) < 2 {
		t.Fatalf("no partial and full member to crash in %s's region", partial[0])
	}
	for _, id := range gone {
		delete(n.nodes, id)
	}
	n.run(15 * time.Second)
	for id, v := range n.nodes {
		for _, g := range gone {
			if v.Alive(n.now, g) {
				t.Errorf("15 s after %s crashed, %s still holds it live (%s)", g, id, v.State(n.now, g))
			}
		}
	}
}

// TestPartialViewAttacks: what peers may not do to a partial view.
func TestPartialViewAttacks(t *testing.T) {
	n, ids := mixedNet(t, 24, 1)
	var p *Membership
	var pid string
	for _, id := range ids {
		if b, _ := n.nodes[id].Region(); b > 0 {
			p, pid = n.nodes[id], id
			break
		}
	}
	// An entry from outside its region, pushed at it: not taken.
	var out string
	for i := 0; out == ""; i++ {
		if id := names(100 + i)[99+i]; !p.Covers(KeyID(id)) {
			out = id
		}
	}
	raw, err := SignEntry("test", out, uint64(n.now.UnixNano()), [][]byte{[]byte(out)}, nil, false, 0,
		func(msg []byte) ([]byte, error) { return testSig(out, msg), nil })
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Receive(n.now, ids[0], encodeUpdates(msgUpdates, [][]byte{raw}, nil))
	_ = p.Receive(n.now, out, encodeUpdates(msgJoin, [][]byte{raw}, nil))
	if p.Entry(out) != nil {
		t.Fatal("a partial view took an entry from outside its region")
	}
	// An accusation by an identity inside its region that is not a member,
	// confirmed by a second such identity: not credible, the member stays.
	var victim string
	for _, id := range ids {
		if id != pid && p.Alive(n.now, id) {
			victim = id
			break
		}
	}
	var liars []string
	for i := 0; len(liars) < 2; i++ {
		if id := names(200 + i)[199+i]; p.Covers(KeyID(id)) {
			liars = append(liars, id)
		}
	}
	inc := p.Entry(victim).Inc
	var accs [][]byte
	for _, l := range liars {
		body := accusationBody(victim, inc, l, uint64(n.now.UnixNano()))
		accs = append(accs, appendSig(body, testSig(l, append(p.accPrefix(), body...))))
	}
	_ = p.Receive(n.now, liars[0], encodeUpdates(msgUpdates, nil, accs))
	if st := p.State(n.now, victim); st != "live" {
		t.Fatalf("accusations by non-members in the region made %s %s", victim, st)
	}
	// A malformed region (prefix wider than its bits) is refused whole.
	bad := append(encodeProbe(msgPing, 1, 5), 3<<3, 15<<3|1) // field 3: prefix 15 of 1 bit
	if err := p.Receive(n.now, ids[0], bad); err == nil {
		t.Fatal("a region of 1 bit with prefix 15 decoded")
	}
}

// TestSetRegion: a full view narrowed to a region forgets the rest at once
// and the other views ring it as partial; widened again, it fetches the
// rest and holds every member.
func TestSetRegion(t *testing.T) {
	n, ids := mixedNet(t, 24, 1)
	x := n.nodes[ids[1]]
	if err := x.SetRegion(n.now, 1, ""); err != nil {
		t.Fatal(err)
	}
	for _, o := range ids {
		if x.Alive(n.now, o) != regionHas(x, o) {
			t.Fatalf("narrowed: holds %s live %v, in region %v", o, x.Alive(n.now, o), regionHas(x, o))
		}
	}
	n.run(5 * time.Second)
	if e := n.nodes[ids[0]].Entry(ids[1]); e == nil || e.Region != 1 {
		t.Fatalf("the others did not hear of the narrowed region: %+v", e)
	}
	if err := x.SetRegion(n.now, 7, ""); err == nil {
		t.Fatal("a region of 7 bits was taken")
	}
	if err := x.SetRegion(n.now, 0, ids[0]); err != nil {
		t.Fatal(err)
	}
	n.run(10 * time.Second)
	for _, o := range ids {
		if !x.Alive(n.now, o) {
			t.Fatalf("widened again: %s is %s", o, x.State(n.now, o))
		}
	}
}

// signedAcc is accuser's accusation of subject's incarnation inc, made at t.
func signedAcc(subject, accuser string, inc uint64, t time.Time) []byte {
	body := accusationBody(subject, inc, accuser, uint64(t.UnixNano()))
	return appendSig(body, testSig(accuser, append([]byte("lsnode/suspect/test\x00"), body...)))
}

// TestStrangersCannotKill (attack review): two identities from outside a
// partial view's region, members of nothing, accuse a member as a
// confirmed pair. A stranger's word counts once (a lone accusation), and
// the member refutes it: no view ever holds it dead, and the partial
// views hold it live again at the end.
func TestStrangersCannotKill(t *testing.T) {
	n, ids := mixedNet(t, 24, 1)
	var p *Membership
	for _, id := range ids {
		if b, _ := n.nodes[id].Region(); b > 0 {
			p = n.nodes[id]
			break
		}
	}
	var victim string
	for _, id := range ids {
		if p.Alive(n.now, id) && p.Entry(id) != nil && id != p.cfg.Self {
			victim = id
			break
		}
	}
	var strangers []string
	for i := 0; len(strangers) < 2; i++ {
		if id := fmt.Sprintf("stranger%d", i); !p.Covers(KeyID(id)) {
			strangers = append(strangers, id)
		}
	}
	inc := p.Entry(victim).Inc
	at := n.now.Add(-20 * time.Second) // aged, as a liar would backdate
	pair := [][]byte{signedAcc(victim, strangers[0], inc, at), signedAcc(victim, strangers[1], inc, at)}
	_ = p.Receive(n.now, strangers[0], encodeUpdates(msgUpdates, nil, pair))
	for end := n.now.Add(60 * time.Second); n.now.Before(end); {
		n.run(500 * time.Millisecond)
		for id, v := range n.nodes {
			if st := v.State(n.now, victim); st == "dead" {
				t.Fatalf("%s holds %s dead on strangers' word", id, victim)
			}
		}
	}
	if st := p.State(n.now, victim); st != "live" {
		t.Fatalf("after 60 s the partial view holds %s %s", victim, st)
	}
}

// TestRegionAccuserPlace (attack review): a member declaring a region of
// 6 bits is a plausible accuser only of members of its own region, not
// of any member its ring-0 position happens to match once its prefix is
// shifted away.
func TestRegionAccuserPlace(t *testing.T) {
	n, ids := mixedNet(t, 24, 1)
	m := n.nodes[ids[0]]
	var a, same, other [32]byte
	a = KeyID("accuser")
	for i := 0; same == ([32]byte{}) || other == ([32]byte{}); i++ {
		k := KeyID(fmt.Sprintf("subject%d", i))
		if regionOf(hashOf(a), 6).has(hashOf(k)) {
			same = k
		} else {
			other = k
		}
	}
	if m.plausibleAt(a, other, 6) {
		t.Fatal("an accuser of a 6-bit region is plausible for a member outside it")
	}
	if !m.plausibleAt(a, same, 6) {
		t.Fatal("an accuser of a 6-bit region is not plausible for a member of it in a small overlay")
	}
}

// TestJoinAnswerBounds (attack review): a peer cannot get the whole view
// listed again and again within the join period by claiming a small
// region in its pings and then joining for the whole space; and a
// snapshot its boot sends long after the join is not trusted.
func TestJoinAnswerBounds(t *testing.T) {
	n, ids := mixedNet(t, 12, 1)
	m := n.nodes[ids[0]]
	snapshots := func() int {
		k := 0
		for _, q := range n.queue {
			if q.from == ids[0] && q.to == "outsider" && q.b[0] == msgSnapshot {
				k++
			}
		}
		return k
	}
	g := regionOf(hashOf(KeyID("outsider")), 6)
	for i := 0; i < 10; i++ {
		_ = m.Receive(n.now, "outsider", appendRegion(encodeProbe(msgPing, uint64(i), 7), g))
		_ = m.Receive(n.now, "outsider", encodeUpdates(msgJoin, nil, nil))
	}
	if k := snapshots(); k != 1 {
		t.Fatalf("%d whole views sent to one peer within the join period", k)
	}
	// A late snapshot from the node joined through: its new member is on
	// probation, not live at once.
	j := n.nodes[ids[1]]
	late := "latecomer"
	raw, err := SignEntry("test", late, uint64(n.now.UnixNano()), [][]byte{[]byte(late)}, nil, false, 0,
		func(msg []byte) ([]byte, error) { return testSig(late, msg), nil })
	if err != nil {
		t.Fatal(err)
	}
	_ = j.Receive(n.now, ids[0], encodeUpdates(msgSnapshot, [][]byte{raw}, nil))
	if j.Alive(n.now, late) || j.State(n.now, late) != "probation" {
		t.Fatalf("a snapshot 40 s after the join made %s %s", late, j.State(n.now, late))
	}
}

// TestMerge: two parts of a region that joined apart (each through a
// member the other does not know) become one view of the region once a
// member of one asks a member of the other (Merge), its members on
// probation first.
func TestMerge(t *testing.T) {
	n := &testNet{t: t, now: time.Unix(1_700_000_000, 0), nodes: map[string]*Membership{}}
	g := regionOf(hashOf(KeyID("n00")), 1)
	var ids []string
	for i := 0; len(ids) < 8; i++ {
		if id := fmt.Sprintf("m%03d", i); g.has(hashOf(KeyID(id))) {
			ids = append(ids, id)
		}
	}
	for i, id := range ids {
		n.addRegion(id, uint64(i)+3, 0, 1)
	}
	for i, id := range ids {
		if i != 0 && i != 4 {
			n.nodes[id].Join(n.now, ids[i/4*4])
		}
	}
	n.run(20 * time.Second)
	if n.nodes[ids[1]].Knows(ids[5]) {
		t.Fatal("the two parts know each other before the merge")
	}
	n.nodes[ids[1]].Merge(n.now, ids[5])
	n.run(30 * time.Second)
	for _, a := range ids {
		for _, b := range ids {
			if !n.nodes[a].Alive(n.now, b) {
				t.Fatalf("after the merge %s holds %s %s", a, b, n.nodes[a].State(n.now, b))
			}
		}
	}
}
