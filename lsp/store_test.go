package lsp

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
	"unsafe"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
)

// TestRemovedBindingStaysRemoved: v1 of a binding (long expiry), v2
// (newer, short expiry), then a removal; once GC has run past v2's expiry,
// v1's signed entry replayed straight to every replica (as a member could)
// is dropped: no replica holds it live and lookups do not return it.
func TestRemovedBindingStaysRemoved(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newClusterWith(t, 4, []*Credential{biloxi}, ca, func(_ int, cfg *Config) { cfg.GCInterval = 50 * time.Millisecond })
	ctx := context.Background()
	aor := "sip:bob@biloxi.example"
	const contact = "sip:bob@192.0.2.1"
	v1 := signed(t, biloxi, aor, binding(contact, time.Hour))
	if err := c.svcs[0].put(ctx, v1, chainsOf(biloxi)); err != nil {
		t.Fatal(err)
	}
	b2 := binding(contact, 1500*time.Millisecond)
	b2.Timestamp = v1[0].B.Timestamp.Add(time.Millisecond)
	v2 := signed(t, biloxi, aor, b2)
	if err := c.svcs[0].put(ctx, v2, chainsOf(biloxi)); err != nil {
		t.Fatal(err)
	}
	if err := c.svcs[0].Remove(ctx, aor); err != nil {
		t.Fatal(err)
	}
	replicas := c.ovs[0].Closest(Key(aor), 3)
	svcOf := func(i int) *Service { return c.svcs[i] }
	var idx []int
	for i, ov := range c.ovs {
		for _, p := range replicas {
			if ov.ID() == p {
				idx = append(idx, i)
			}
		}
	}
	// GC past v2's expiry: the tombstone expired on every replica.
	waitFor(t, 10*time.Second, "every replica's tombstone expired and was collected", func() bool {
		for _, i := range idx {
			s := svcOf(i).store
			s.mu.RLock()
			rec := s.recs[aor]
			ok := rec != nil && len(rec.entries) == 0 && rec.ghosts[contact] != nil && rec.ghosts[contact].Removed
			if rec == nil {
				ok = time.Now().After(v2[0].B.Expires) // collected outright (the defect)
			}
			s.mu.RUnlock()
			if !ok {
				return false
			}
		}
		return true
	})
	for _, i := range idx {
		from := (i + 1) % len(c.svcs)
		reply, err := c.raw(from, c.ovs[i].ID(), &message{Type: msgStore, Entries: v1, Certs: biloxi.Chain})
		if err != nil {
			t.Fatalf("replay to replica %d: %v", i, err)
		}
		if reply.Count != 0 {
			t.Errorf("replica %d took the replayed v1 (%d changed)", i, reply.Count)
		}
		if n := svcOf(i).Holds(aor); n != 0 {
			t.Errorf("replica %d holds %d live bindings after the replay", i, n)
		}
	}
	for i, s := range c.svcs {
		bs, err := s.Lookup(ctx, aor)
		if err != nil || len(bs) != 0 {
			t.Fatalf("node %d: lookup after the replay = %+v, %v", i, bs, err)
		}
	}
}

// TestStoreGhostsBounded: expired entries stay as ghosts until their
// timestamp + retain, at most the record quota of them per record (the
// oldest give way to the floor), counted in the domain's usage until
// dropped; older versions do not come back, newer ones do.
func TestStoreGhostsBounded(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	ctx := context.Background()
	const retain = time.Hour
	s := newStore(dssync.MutexWrap(ds.NewMapDatastore()), quota{RecordEntries: 3, RecordBytes: 1 << 20,
		SignerEntries: 100, SignerBytes: 1 << 20, Retain: retain})
	aor := "sip:bob@biloxi.example"
	now := time.Now()
	// Five bindings, each in a long-lived version (olds) replaced by a
	// newer short-lived one.
	var olds []*entry
	for i := 0; i < 5; i++ {
		b := binding(fmt.Sprintf("sip:bob@192.0.2.%d", i), 2*time.Minute)
		b.Timestamp = now.Add(time.Duration(i) * time.Second)
		olds = append(olds, signed(t, biloxi, aor, b)[0])
	}
	apply := func(es []*entry) {
		t.Helper()
		if _, err := s.apply(ctx, es, chainsOf(biloxi), nil); err != nil {
			t.Fatal(err)
		}
	}
	usage := func() int {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if u := s.signers["biloxi.example"]; u != nil {
			return u.n
		}
		return 0
	}
	for i := 0; i < 5; i++ {
		if i == 3 {
			// The record quota counts live entries only: make room.
			if _, err := s.gc(ctx, now.Add(90*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		apply([]*entry{olds[i]})
		b := olds[i].B
		b.Timestamp = b.Timestamp.Add(time.Millisecond)
		b.Expires = now.Add(time.Minute)
		apply(signed(t, biloxi, aor, b))
	}
	if _, err := s.gc(ctx, now.Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	rec := s.recs[aor]
	ghosts, entries, floor := len(rec.ghosts), len(rec.entries), rec.floor
	s.mu.RUnlock()
	if entries != 0 || ghosts != 3 || floor.IsZero() {
		t.Fatalf("after gc: %d entries, %d ghosts (want 0, 3), floor %v", entries, ghosts, floor)
	}
	if u := usage(); u != 3 {
		t.Fatalf("domain usage %d, want the 3 ghosts", u)
	}
	// Every older version (long-lived) replayed: none comes back, whether
	// its binding has a ghost or gave way to the floor.
	for _, o := range olds {
		apply([]*entry{o})
	}
	if got := s.get(aor, now.Add(90*time.Second), map[[32]byte][][]byte{}); len(got) != 0 {
		t.Fatalf("replayed old versions came back: %d", len(got))
	}
	// A newer version does.
	b := olds[0].B
	b.Timestamp = now.Add(10 * time.Second)
	b.Expires = now.Add(time.Hour)
	apply(signed(t, biloxi, aor, b))
	if got := s.get(aor, now.Add(90*time.Second), map[[32]byte][][]byte{}); len(got) != 1 {
		t.Fatalf("a newer version: %d live, want 1", len(got))
	}
	if u := usage(); u != 4 {
		t.Fatalf("domain usage %d, want 4 (3 ghosts, 1 entry)", u)
	}
	// Past retention everything goes, the record too.
	if _, err := s.gc(ctx, now.Add(retain+time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	_, kept := s.recs[aor]
	s.mu.RUnlock()
	if kept || usage() != 0 {
		t.Fatalf("after retention: record kept %v, usage %d", kept, usage())
	}
	if has, _ := s.ds.Has(ctx, recordKey(aor)); has {
		t.Fatal("record still persisted")
	}
}

// TestWriteThroughOnlyOnDisk: a replica store writes its records through to
// the node's datastore when that is on disk (and reloads them: see
// TestHolderProofDisk), and not when the datastore is a map in memory,
// where a second copy would only cost memory and CPU.
func TestWriteThroughOnlyOnDisk(t *testing.T) {
	ca := newTestCA(t)
	cred := ca.issue(t, []string{"biloxi.example"}, nil, false)
	ctx := context.Background()
	for _, disk := range []bool{false, true} {
		c := startCluster(t, &cluster{ca: ca, disk: disk}, 3, []*Credential{cred})
		if _, err := c.svcs[0].Register(ctx, "sip:bob@biloxi.example", binding("sip:bob@192.0.2.1", time.Hour)); err != nil {
			t.Fatal(err)
		}
		held, written := 0, 0
		for i, ov := range c.ovs {
			held += c.svcs[i].Holds("sip:bob@biloxi.example")
			res, err := ov.Datastore().Query(ctx, query.Query{Prefix: dsRecords, KeysOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			all, err := res.Rest()
			if err != nil {
				t.Fatal(err)
			}
			written += len(all)
		}
		if held < 2 {
			t.Fatalf("disk %v: %d replicas hold the binding, want the write quorum (2) at least", disk, held)
		}
		if want := map[bool]int{false: 0, true: held}[disk]; written != want {
			t.Errorf("disk %v: %d records in the datastores of %d replicas holding one, want %d", disk, written, held, want)
		}
	}
}

// TestAddID: the ids a write adds to one record are counted once each,
// before and after the list becomes a set (a batch of thousands of
// bindings for one AOR must not cost a scan per binding under the lock).
func TestAddID(t *testing.T) {
	var z quotaSize
	for round := 0; round < 2; round++ {
		for i := 0; i < 20; i++ {
			id := fmt.Sprintf("sip:b%d@192.0.2.1", i)
			if got := z.addID(id); got != (round == 0) {
				t.Fatalf("round %d, id %d: addID = %v", round, i, got)
			}
		}
	}
	if z.addedSet == nil || len(z.addedSet) != 20 {
		t.Fatalf("set of %d ids, want 20", len(z.addedSet))
	}
}

// TestStoreKeysOwnTheirBytes: a decoded entry's strings share its wire
// bytes. The keys of the store's records and domains outlive the entry
// they came from, so they are copies; a binding's key is rewritten with
// each version (Go replaces a string key on assignment), so it shares the
// bytes of the entry it maps to and of no other. Bindings handed out
// (liveBindings) and tombstones built from decoded entries own their
// strings. Run with the entries of messages decoded from the wire, as a
// replica takes them: a binding, its next version, then its ghost.
func TestStoreKeysOwnTheirBytes(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	ctx := context.Background()
	s := newStore(dssync.MutexWrap(ds.NewMapDatastore()), quota{RecordEntries: 10, RecordBytes: 1 << 20,
		SignerEntries: 100, SignerBytes: 1 << 20, Retain: time.Hour})
	aor := "sip:bob@biloxi.example"
	now := time.Now()
	var wires [][]byte
	decoded := func(b Binding) []*entry {
		t.Helper()
		m, err := decodeMessage((&message{Type: msgStore, Entries: signed(t, biloxi, aor, b)}).encode())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range m.Entries {
			wires = append(wires, e.wire)
		}
		return m.Entries
	}
	apply := func(es []*entry) {
		t.Helper()
		if _, err := s.apply(ctx, es, chainsOf(biloxi), nil); err != nil {
			t.Fatal(err)
		}
	}
	owns := func(what, v string, e *entry) {
		t.Helper()
		if p := unsafe.StringData(v); inAny(p, wires) && (e == nil || !inAny(p, [][]byte{e.wire})) {
			t.Errorf("%s %q shares the bytes of a decoded entry it does not belong to", what, v)
		}
	}
	check := func() {
		t.Helper()
		s.mu.RLock()
		defer s.mu.RUnlock()
		n := 0
		for k, rec := range s.recs {
			owns("record key", k, nil)
			for id, e := range rec.entries {
				owns("binding key", id, e)
				n++
			}
			for id, e := range rec.ghosts {
				owns("ghost key", id, e)
				n++
			}
		}
		for d := range s.signers {
			owns("domain key", d, nil)
		}
		if len(s.recs) != 1 || len(s.signers) != 1 || n != 1 {
			t.Fatalf("%d records, %d domains, %d bindings and ghosts; want 1 each", len(s.recs), len(s.signers), n)
		}
	}
	b := binding("sip:bob@192.0.2.1", time.Minute)
	b.Instance, b.CallID, b.Path = "<urn:uuid:00000000-0000-0000-0000-000000000001>", "call-1", []string{"<sip:edge.biloxi.example;lr>"}
	b.Timestamp = now
	first := decoded(b)
	if p := unsafe.StringData(first[0].AOR); !inAny(p, wires) {
		t.Fatal("the decoded entry's AOR does not share its bytes: the test does not test anything")
	}
	apply(first)
	check()
	b.Timestamp = now.Add(time.Second)
	second := decoded(b)
	apply(second)
	check()
	bs := liveBindings(map[string]*entry{"x": second[0]}, func(*entry) string { return "" }, now)
	ts, err := tombstones(biloxi, &clock{}, aor, second, nil, nil)
	if err != nil || len(bs) != 1 || len(ts) != 1 {
		t.Fatalf("%d live bindings, %d tombstones (%v); want 1 each", len(bs), len(ts), err)
	}
	for _, x := range []Binding{bs[0], ts[0].B} {
		for _, v := range append([]string{x.Contact, x.Instance, x.CallID, x.Received}, x.Path...) {
			owns("a binding handed out: field", v, nil)
		}
	}
	if bs[0].Contact != b.Contact || bs[0].Instance != b.Instance || bs[0].CallID != b.CallID || !slices.Equal(bs[0].Path, b.Path) {
		t.Fatalf("liveBindings changed the binding: %+v, want %+v", bs[0], b)
	}
	if _, err := s.gc(ctx, now.Add(2*time.Minute)); err != nil { // the binding's ghost
		t.Fatal(err)
	}
	check()
}

// inAny reports whether p points into one of bufs.
func inAny(p *byte, bufs [][]byte) bool {
	for _, b := range bufs {
		if len(b) > 0 && uintptr(unsafe.Pointer(p)) >= uintptr(unsafe.Pointer(&b[0])) &&
			uintptr(unsafe.Pointer(p)) < uintptr(unsafe.Pointer(&b[0]))+uintptr(len(b)) {
			return true
		}
	}
	return false
}
