package membership

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// snapshotOf n members named m0 … m(n-1), settled.
func snapshotOf(tb testing.TB, n int) *Snapshot {
	tb.Helper()
	raws := make([][]byte, n)
	for i := range raws {
		id := fmt.Sprintf("m%d", i)
		raw, err := SignEntry("test", id, 1, [][]byte{[]byte(id)}, nil, false, 0,
			func(msg []byte) ([]byte, error) { return testSig(id, msg), nil })
		if err != nil {
			tb.Fatal(err)
		}
		raws[i] = raw
	}
	s, err := NewSnapshot(raws)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func viewOf(tb testing.TB, s *Snapshot, self string, now time.Time) *Membership {
	tb.Helper()
	m, err := New(Config{Name: "test", Self: self, Serve: true, Addrs: [][]byte{[]byte(self)},
		Sign:   func(msg []byte) ([]byte, error) { return testSig(self, msg), nil },
		Verify: func(id string, msg, sig []byte) bool { return string(testSig(id, msg)) == string(sig) },
		Rand:   rand.New(rand.NewPCG(1, 2))}, drop{}, now, s)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// BenchmarkClosest: the R=3 replicas of a key (what every lookup and
// registration asks) and the live count (what every one sizes its quorum
// by), in full views of 100 to 100 000 members.
func BenchmarkClosest(b *testing.B) {
	for _, n := range []int{100, 1000, 10000, 100000} {
		s := snapshotOf(b, n)
		now := time.Unix(1_700_000_000, 0)
		m := viewOf(b, s, "m0", now)
		b.Run(fmt.Sprintf("closest/%d", n), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if len(m.Closest(now, KeyID(fmt.Sprint(i)), 3)) != 3 {
					b.Fatal("fewer than 3")
				}
			}
		})
		b.Run(fmt.Sprintf("live/%d", n), func(b *testing.B) {
			for b.Loop() {
				if len(m.Live(now)) < n {
					b.Fatal("fewer live")
				}
			}
		})
	}
}

// nearestByScan is nearest as a scan of every record: the reference.
func nearestByScan(m *Membership, kid [32]byte, n int, ok func(*rec) bool) []string {
	var rs []*rec
	m.v.each(func(r *rec) bool {
		if ok(r) {
			rs = append(rs, r)
		}
		return true
	})
	dist := func(r *rec) []byte {
		d := make([]byte, 32)
		for i := range d {
			d[i] = r.kid[i] ^ kid[i]
		}
		return d
	}
	slices.SortFunc(rs, func(a, b *rec) int { return bytes.Compare(dist(a), dist(b)) })
	var out []string
	for _, r := range rs[:min(n, len(rs))] {
		out = append(out, r.e.ID)
	}
	return out
}

// TestNearestIndex: the index's answer is the scan's, for random keys and
// counts, with records a predicate refuses, on a view whose records are
// added and deleted (from its shared base and its own) between queries,
// and for keys next to a record's own prefix.
func TestNearestIndex(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, size := range []int{1, 2, 5, 50, 2000} {
		m := viewOf(t, snapshotOf(t, size), "m0", now)
		rng := rand.New(rand.NewPCG(uint64(size), 7))
		ok := func(r *rec) bool { return r.h%5 != 0 }
		next := size
		for q := 0; q < 3000; q++ {
			switch rng.IntN(4) {
			case 0: // a new record
				id := fmt.Sprintf("m%d", next)
				next++
				kid := KeyID(id)
				m.v.add(&rec{h: hashOf(kid), kid: kid, e: &Entry{ID: id}})
			case 1: // one goes (base or own)
				var hs []uint64
				m.v.each(func(r *rec) bool { hs = append(hs, r.h); return len(hs) < 50 })
				if len(hs) > 0 {
					m.v.del(hs[rng.IntN(len(hs))])
				}
			}
			var kid [32]byte
			if rng.IntN(4) == 0 && len(m.v.idx) > 0 { // a key sharing a record's prefix
				e := m.v.idx[rng.IntN(len(m.v.idx))]
				binary.BigEndian.PutUint64(kid[:8], e.k)
				binary.BigEndian.PutUint64(kid[8:], rng.Uint64())
			} else {
				binary.BigEndian.PutUint64(kid[:8], rng.Uint64())
				binary.BigEndian.PutUint64(kid[8:], rng.Uint64())
			}
			n := 1 + rng.IntN(12)
			got, want := m.nearest(kid, n, ok), nearestByScan(m, kid, n, ok)
			if !slices.Equal(got, want) {
				t.Fatalf("size %d, query %d: nearest %d of %x = %v, the scan's %v", size, q, n, kid[:8], got, want)
			}
		}
		if len(m.v.idx) != m.v.n {
			t.Fatalf("size %d: the index holds %d records, the view %d", size, len(m.v.idx), m.v.n)
		}
	}
}

// TestLiveCount: LiveCount and Announced follow the view's changes at
// once and a probation that runs out within a second.
func TestLiveCount(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := viewOf(t, snapshotOf(t, 20), "m0", now)
	if got, want := m.LiveCount(now), len(m.Live(now)); got != want || want < 20 {
		t.Fatalf("LiveCount %d, Live %d", got, want)
	}
	kid := KeyID("late")
	r := &rec{h: hashOf(kid), kid: kid, e: &Entry{ID: "late", Services: []string{"turn:192.0.2.1:3478"}}, until: now.Add(500 * time.Millisecond)}
	m.v.add(r)
	m.version++ // as changed does for a new candidate, live or on probation
	if got, want := m.LiveCount(now), len(m.Live(now)); got != want {
		t.Fatalf("after a member on probation came: LiveCount %d, Live %d", got, want)
	}
	later := now.Add(500 * time.Millisecond) // the instant it ends, with no Tick and no new version
	if got, want := m.LiveCount(later), len(m.Live(later)); got != want || got != len(m.Live(now))+1 {
		t.Fatalf("after its probation: LiveCount %d, Live %d (before %d)", got, want, len(m.Live(now)))
	}
	if len(m.Announced(now)) != 0 || len(m.Announced(later)["late"]) != 1 {
		t.Fatalf("announced on probation %v, after it %v", m.Announced(now), m.Announced(later))
	}
	// A local suspicion takes a member out at once and gives it back when
	// it runs out, again without a Tick.
	n := m.LiveCount(later)
	victim := ""
	for _, id := range m.Live(later) { // (in no set order)
		if id != m.cfg.Self { // a node never suspects itself
			victim = id
			break
		}
	}
	m.Suspect(later, victim)
	if got := m.LiveCount(later); got != n-1 {
		t.Fatalf("while suspected locally: LiveCount %d, want %d", got, n-1)
	}
	back := later.Add(m.cfg.LocalSuspect)
	if got, want := m.LiveCount(back.Add(-time.Millisecond)), n-1; got != want {
		t.Fatalf("just before the suspicion ends: LiveCount %d, want %d", got, want)
	}
	if got, want := m.LiveCount(back), len(m.Live(back)); got != want || got != n {
		t.Fatalf("once it ends: LiveCount %d, Live %d, want %d", got, want, n)
	}
}
