package lsp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"
)

func privateCluster(t *testing.T, n int, creds []*Credential, ca *testCA) *cluster {
	return newDiskCluster(t, n, creds, ca, func(_ int, cfg *Config) { cfg.PrivateRecords = true }) // a store on disk: what dump reads
}

// dump is everything a node's replica store holds: the records in its
// datastore and, in memory, each record's name and entries as sent.
func dump(t *testing.T, s *Service) []byte {
	t.Helper()
	var out bytes.Buffer
	res, err := s.store.ds.Query(context.Background(), query.Query{})
	if err != nil {
		t.Fatal(err)
	}
	for r := range res.Next() {
		out.WriteString(r.Key)
		out.Write(r.Value)
	}
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	for name, rec := range s.store.recs {
		out.WriteString(name)
		for _, e := range rec.entries {
			out.Write(e.encode())
		}
	}
	return out.Bytes()
}

// secretBinding is a binding with every field a replica must not see.
func secretBinding(cseq uint32) Binding {
	return Binding{Contact: "sip:bob@192.0.2.1;transport=tcp", Expires: time.Now().Add(time.Hour), Q: 0.5,
		Instance: "<urn:uuid:00000000-0000-0000-0000-00000000b0b1>", RegID: 1, Path: []string{"<sip:edge.biloxi.example;lr>"},
		CallID: "call-secret-1", CSeq: cseq, Received: "198.51.100.7:5060"}
}

// TestPrivateRecords: with private records, registrations, publishes,
// lookups from every member, the replicas' CSeq order, removals, a watch and
// a client all work, and no replica's store holds the AOR or anything of
// its bindings in clear (only the domain, which it checks the signer
// against).
func TestPrivateRecords(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := privateCluster(t, 6, []*Credential{biloxi}, ca)
	ctx := context.Background()
	aor := "sip:Bob@Biloxi.example"
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	watch, err := c.svcs[4].Watch(wctx, aor)
	if err != nil {
		t.Fatal(err)
	}
	next(t, watch, 5*time.Second)

	b1 := secretBinding(5)
	got, err := c.svcs[0].Register(ctx, aor, b1)
	if err != nil || len(got) != 1 || got[0].Contact != b1.Contact || got[0].Received != b1.Received {
		t.Fatalf("register: %+v, %v", got, err)
	}
	if _, err := c.svcs[0].Register(ctx, aor, secretBinding(4)); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("older CSeq of the Call-ID: %v, want ErrOutOfOrder", err)
	}
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.2", time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i, s := range c.svcs {
		bs, err := s.Lookup(ctx, aor)
		if err != nil || len(bs) != 2 || bs[0].Signer != "biloxi.example" {
			t.Fatalf("node %d: lookup = %+v, %v", i, bs, err)
		}
		b := bs[0]
		if b.Contact != b1.Contact || b.Instance != b1.Instance || b.RegID != 1 || b.Q != 0.5 || len(b.Path) != 1 ||
			b.Path[0] != b1.Path[0] || b.CallID != b1.CallID || b.CSeq != 5 || b.Received != b1.Received {
			t.Fatalf("node %d: opened binding %+v, want %+v", i, b, b1)
		}
	}
	if got := next(t, watch, 5*time.Second); len(got) == 0 {
		t.Fatal("watch: no binding")
	}

	// The write returned on its quorum; give the third replica its moment.
	waitUntil(5*time.Second, func() bool {
		n := 0
		for _, s := range c.svcs {
			n += s.Holds("sip:bob@biloxi.example")
		}
		return n >= 2*3
	})
	held := 0
	for i, s := range c.svcs {
		d := dump(t, s)
		held += s.Holds("sip:bob@biloxi.example")
		for _, secret := range []string{"sip:bob", "Bob@", "192.0.2.1", "192.0.2.2", "b0b1", "call-secret", "edge.biloxi", "198.51.100.7"} {
			if bytes.Contains(d, []byte(secret)) {
				t.Errorf("node %d's store holds %q in clear", i, secret)
			}
		}
		if s.Holds("sip:bob@biloxi.example") > 0 && !bytes.Contains(d, []byte("@biloxi.example")) {
			t.Errorf("node %d holds the record, but its dump lacks even the domain: the dump shows nothing", i)
		}
	}
	if held < 2*3 { // both bindings on each of R replicas (W at least)
		t.Fatalf("replicas hold %d live bindings, want 2 on each of at least 3", held)
	}

	if err := c.svcs[0].Remove(ctx, aor, b1.ID()); err != nil {
		t.Fatal(err)
	}
	for i, s := range c.svcs {
		if bs, err := s.Lookup(ctx, aor); err != nil || len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.2" {
			t.Fatalf("node %d after remove: %+v, %v", i, bs, err)
		}
	}

	live, err := peer.AddrInfoFromString(c.ovs[2].Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Dial(ctx, DialConfig{ClientConfig: ClientConfig{Overlay: "lsp-test", TrustAnchors: ca.pool, Credential: biloxi},
		Candidates: []peer.AddrInfo{*live}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Publish(ctx, aor, binding("sip:bob@192.0.2.3", time.Hour)); err != nil {
		t.Fatalf("client publish: %v", err)
	}
	if err := cl.Remove(ctx, aor, "sip:bob@192.0.2.2"); err != nil {
		t.Fatalf("client remove: %v", err)
	}
	if bs, err := cl.Lookup(ctx, aor); err != nil || len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.3" {
		t.Fatalf("client lookup: %+v, %v", bs, err)
	}
	if bs, err := c.svcs[5].Lookup(ctx, aor); err != nil || len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.3" {
		t.Fatalf("lookup of the client's writes: %+v, %v", bs, err)
	}
}

// storeAll sends a STORE of es to every replica of their record but node 0,
// from node 0, and returns each replica's error text ("" when it took them).
func storeAll(t *testing.T, c *cluster, es []*entry, cred *Credential) []string {
	t.Helper()
	var out []string
	for _, p := range c.svcs[0].closest(es[0].AOR) {
		if p == c.ovs[0].ID() {
			continue
		}
		_, err := c.raw(0, p, &message{Type: msgStore, Entries: es, Certs: cred.Chain})
		if err != nil {
			out = append(out, err.Error())
		} else {
			out = append(out, "")
		}
	}
	return out
}

// hiddenEntries builds entries of aor hidden by k, lets alter change them before
// they are signed by cred, and signs them.
func hiddenEntries(t *testing.T, cred *Credential, aor string, k *sealer, alter func(e *entry), bs ...Binding) []*entry {
	t.Helper()
	return sealedEntries(t, cred, aor, k, func(*entry) {}, alter, bs...)
}

// sealedEntries is hiddenEntries with before changing each entry before k
// hides it (what k seals) and after changing it after (its clear fields).
func sealedEntries(t *testing.T, cred *Credential, aor string, k *sealer, before, after func(e *entry), bs ...Binding) []*entry {
	t.Helper()
	var clk clock
	es, err := build(cred, &clk, aor, bs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		before(e)
		k.hide(e)
		after(e)
	}
	if err := cred.sign(es); err != nil {
		t.Fatal(err)
	}
	return es
}

// TestPrivateRecordsAttacked: what replicas can check they refuse (a
// record in clear in a private overlay, a private entry with a field in
// clear or without its sealed binding, a private record in an overlay in
// clear); what only a reader can check it drops (a sealed binding whose
// clear fields disagree with it, one moved from another AOR's record).
func TestPrivateRecordsAttacked(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := privateCluster(t, 5, []*Credential{biloxi}, ca)
	ctx := context.Background()
	aor, alice := "sip:bob@biloxi.example", "sip:alice@biloxi.example"
	k, ka := sealerFor(true, aor), sealerFor(true, alice)
	keep := func(*entry) {}

	refusals := []struct {
		name, want string
		es         []*entry
	}{
		{"a record in clear", "in clear, and this overlay keeps private records", signed(t, biloxi, aor, binding("sip:bob@192.0.2.9", time.Hour))},
		{"an instance in clear", "binding field in clear", hiddenEntries(t, biloxi, aor, k, func(e *entry) { e.B.Instance = "<urn:uuid:x>" }, binding("sip:bob@192.0.2.9", time.Hour))},
		{"a Contact in clear", "Contact or Call-ID in clear", hiddenEntries(t, biloxi, aor, k, func(e *entry) { e.B.Contact = "sip:bob@192.0.2.9" }, binding("sip:bob@192.0.2.9", time.Hour))},
		{"no sealed binding", "without a sealed binding", hiddenEntries(t, biloxi, aor, k, func(e *entry) { e.sealed = nil }, binding("sip:bob@192.0.2.9", time.Hour))},
	}
	for _, r := range refusals {
		for i, e := range storeAll(t, c, r.es, biloxi) {
			if !strings.Contains(e, r.want) {
				t.Errorf("%s: replica %d answered %q, want %q", r.name, i, e, r.want)
			}
		}
	}

	// A signer of the domain (a front-end gone bad) can write what no
	// replica can tell from a true binding; the reader drops it.
	withCall := func(contact string) Binding {
		b := binding(contact, time.Hour)
		b.CallID, b.CSeq = "c1", 2
		return b
	}
	dropped := map[string][]*entry{
		"an expiry unlike the sealed one":  hiddenEntries(t, biloxi, aor, k, func(e *entry) { e.B.Expires = e.B.Expires.Add(24 * time.Hour) }, binding("sip:bob@192.0.2.10", time.Hour)),
		"alice's binding under bob's name": hiddenEntries(t, biloxi, alice, ka, func(e *entry) { e.AOR = k.name }, binding("sip:alice@192.0.2.11", time.Hour)),
		"a CSeq unlike the sealed one":     hiddenEntries(t, biloxi, aor, k, func(e *entry) { e.B.CSeq++ }, withCall("sip:bob@192.0.2.12")),
		"a Call-ID unlike the sealed one":  hiddenEntries(t, biloxi, aor, k, func(e *entry) { e.B.CallID = k.hidden("call-id", "c2") }, withCall("sip:bob@192.0.2.13")),
		"a timestamp unlike the sealed one": hiddenEntries(t, biloxi, aor, k, func(e *entry) { e.B.Timestamp = e.B.Timestamp.Add(time.Millisecond) },
			binding("sip:bob@192.0.2.14", time.Hour)),
		"alice's binding sealed under bob's key": sealedEntries(t, biloxi, alice, k, func(*entry) {}, func(*entry) {}, binding("sip:alice@192.0.2.15", time.Hour)),
		"a live binding sealed in a removal": sealedEntries(t, biloxi, aor, k, func(*entry) {}, func(e *entry) { e.Removed = true },
			binding("sip:bob@192.0.2.16", time.Hour)),
	}
	for name, es := range dropped {
		for i, e := range storeAll(t, c, es, biloxi) {
			if e != "" {
				t.Fatalf("%s: replica %d refused it: %s", name, i, e)
			}
		}
	}
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.1", time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i, s := range c.svcs {
		if bs, err := s.Lookup(ctx, aor); err != nil || len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.1" {
			t.Fatalf("node %d: %+v, %v; want only the true binding", i, bs, err)
		}
	}

	// A UA's own certificate writes its AOR's private record; a Received
	// it seals (a registrar's field, which replicas check only in clear) is
	// dropped by the reader.
	aliceCred := aorCred(t, biloxi, alice)
	withReceived := binding("sip:alice@192.0.2.21", time.Hour)
	withReceived.Received = "127.0.0.1:6379"
	for _, b := range []Binding{binding("sip:alice@192.0.2.20", time.Hour), withReceived} {
		for i, e := range storeAll(t, c, hiddenEntries(t, aliceCred, alice, ka, keep, b), aliceCred) {
			if e != "" {
				t.Fatalf("alice's own write of %s: replica %d refused it: %s", b.Contact, i, e)
			}
		}
	}
	if bs, err := c.svcs[3].Lookup(ctx, alice); err != nil || len(bs) != 1 || bs[0].Contact != "sip:alice@192.0.2.20" {
		t.Fatalf("alice: %+v, %v; want only the binding without Received", bs, err)
	}

	// An overlay in clear refuses a private record.
	clear := newCluster(t, 3, []*Credential{biloxi}, ca)
	for i, e := range storeAll(t, clear, hiddenEntries(t, biloxi, aor, k, keep, binding("sip:bob@192.0.2.9", time.Hour)), biloxi) {
		if !strings.Contains(e, "this overlay keeps records in clear") {
			t.Errorf("clear overlay, replica %d: %q", i, e)
		}
	}
	// A global tel: number has no private form: only its own certificate
	// writes it, which the replica checks in clear.
	if sealerFor(true, "tel:+15551234567") != nil {
		t.Error("a global number has a private name")
	}
}

// TestPrivateNames: a record's name is canonical, keeps the AOR's domain
// and nothing else of it, and differs per AOR.
func TestPrivateNames(t *testing.T) {
	seen := map[string]string{}
	for _, aor := range []string{"sip:bob@biloxi.example", "sips:bob@biloxi.example", "sip:bob@[2001:db8::1]",
		"tel:5551234;phone-context=biloxi.example", "sip:alice@biloxi.example"} {
		name, ok := privateName(aor)
		if !ok {
			t.Fatalf("%s: no private name", aor)
		}
		if canon, err := Canonical(name); err != nil || canon != name {
			t.Errorf("%s: name %q is not canonical: %q, %v", aor, name, canon, err)
		}
		if Domain(name) != Domain(aor) || strings.Contains(name, "bob") || strings.Contains(name, "5551234") {
			t.Errorf("%s: name %q (domain %q)", aor, name, Domain(name))
		}
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share the name %s", aor, other, name)
		}
		seen[name] = aor
	}
	long := strings.Repeat(strings.Repeat("d", 60)+".", 3) + strings.Repeat("d", 50) // 233 characters
	if canon, err := Canonical("sip:a@" + long); err != nil {
		t.Fatal(err)
	} else if name, ok := privateName(canon); ok {
		t.Errorf("a name past MaxAORLength: %s", name)
	}
}

// FuzzOpen: whatever a sealed binding holds (a signer of the domain seals
// what it likes), open refuses it with a sentinel error or returns a
// binding of the record's AOR that validates and agrees with the entry's
// clear fields.
func FuzzOpen(f *testing.F) {
	k := sealerFor(true, "sip:bob@biloxi.example")
	for _, b := range []Binding{secretBinding(3), binding("sip:bob@192.0.2.1", time.Hour)} {
		b.Timestamp = time.Now()
		e := &entry{AOR: k.aor, B: b}
		f.Add(e.content(), true, false)
		e.Removed = true
		f.Add(e.content(), true, true)
	}
	f.Add([]byte{0x0a, 0x01, 'x'}, false, false)
	f.Fuzz(func(t *testing.T, plain []byte, agree, removed bool) {
		nonce := make([]byte, k.aead.NonceSize())
		e := &entry{AOR: k.name, B: Binding{Contact: "~x"}, Removed: removed, sealed: k.aead.Seal(nonce, nonce, plain, []byte(k.name))}
		if in := (&entry{}); agree && in.decodeContent(plain, false) == nil {
			e.B = Binding{Contact: k.hidden("id", in.B.ID()), Expires: in.B.Expires, CSeq: in.B.CSeq, Timestamp: in.B.Timestamp}
			if in.B.CallID != "" {
				e.B.CallID = k.hidden("call-id", in.B.CallID)
			}
		}
		o, err := k.open(e)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("open error without a sentinel: %v", err)
			}
			return
		}
		if o.AOR != k.aor || o.Removed != removed || o.B.validate() != nil || k.hidden("id", o.B.ID()) != e.B.Contact ||
			!o.B.Expires.Equal(e.B.Expires) || len(o.sealed) > 0 {
			t.Fatalf("opened %+v from %+v", o, e)
		}
	})
}

// BenchmarkPrivateBinding: the CPU a private record adds per binding: the
// keys of an AOR (each read or write derives them), hiding a binding (a
// writer; with its keys), opening it (a reader) and opening one of its own
// write (the writer, for the 200's Contacts).
func BenchmarkPrivateBinding(b *testing.B) {
	aor := "sip:bob@biloxi.example"
	bd := secretBinding(1)
	bd.Timestamp, bd.Expires = time.Now(), time.UnixMilli(bd.Expires.UnixMilli()) // as build leaves them
	b.Run("keys", func(b *testing.B) {
		for b.Loop() {
			sealerFor(true, aor)
		}
	})
	b.Run("hide", func(b *testing.B) {
		for b.Loop() {
			sealerFor(true, aor).hide(&entry{AOR: aor, B: bd}) // a sealer lives for one write
		}
	})
	e := &entry{AOR: aor, B: bd}
	w := sealerFor(true, aor)
	w.hide(e)
	r := sealerFor(true, aor) // a reader's (or a later write's): it did not hide e
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.open(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open-own", func(b *testing.B) { // the writer's, for the 200's Contacts
		for b.Loop() {
			if _, err := w.open(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRecordsModeMismatch: a writer configured in clear on an overlay of
// private records gets each write refused with ErrRecordsMode, and
// distrusts no replica for it (they are honest: its config is wrong).
func TestRecordsModeMismatch(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newClusterWith(t, 5, []*Credential{biloxi}, ca, func(i int, cfg *Config) { cfg.PrivateRecords = i > 0 })
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		err := c.svcs[0].Publish(ctx, fmt.Sprintf("sip:bob%d@biloxi.example", i), binding("sip:bob@192.0.2.1", time.Hour))
		if !errors.Is(err, ErrRecordsMode) || !strings.Contains(err.Error(), "this overlay keeps private records") {
			t.Fatalf("publish %d: %v, want ErrRecordsMode", i, err)
		}
	}
	if d := c.svcs[0].Distrusted(); len(d) > 0 {
		t.Fatalf("the misconfigured writer distrusts %d honest replicas", len(d))
	}
}

// TestRebalanceAfterModeChange: records a node stored in clear before its
// overlay kept private records (put in its store directly, as a restart
// with the other setting leaves them) are not re-replicated: every replica
// would refuse the STORE they went in, with the private records placed
// along with them. Joining nodes still get every private record that moves
// to them.
func TestRebalanceAfterModeChange(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := privateCluster(t, 4, []*Credential{biloxi}, ca)
	ctx := context.Background()
	var aors []string
	for i := 0; i < 30; i++ {
		aor := fmt.Sprintf("sip:user%d@biloxi.example", i)
		if err := c.svcs[0].Publish(ctx, aor, binding(fmt.Sprintf("sip:u%d@192.0.2.1", i), time.Hour)); err != nil {
			t.Fatal(err)
		}
		aors = append(aors, aor)
		stale := signed(t, biloxi, fmt.Sprintf("sip:old%d@biloxi.example", i), binding("sip:old@192.0.2.2", time.Hour))
		for _, s := range c.svcs {
			if _, err := s.store.apply(ctx, stale, chainsOf(biloxi), s.closest); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < 3; i++ {
		c.add(t, nil)
	}
	c.converge(t)
	byID := map[peer.ID]*Service{}
	for i, ov := range c.ovs {
		byID[ov.ID()] = c.svcs[i]
	}
	waitFor(t, 20*time.Second, "every private record sits on each of its R closest nodes", func() bool {
		for _, aor := range aors {
			for _, p := range c.ovs[0].Closest(Key(sealerFor(true, aor).name), 3) {
				if byID[p].Holds(aor) == 0 {
					return false
				}
			}
		}
		return true
	})
}

// TestSealerKnowsItsOwn: a sealer opens an entry it hid (a write's
// replies bring the record back) to what a fresh sealer opens it to,
// without decrypting it; the same sealed bytes with any clear field
// changed, or sealed bytes changed (a copy or the entry itself), are
// refused as before.
func TestSealerKnowsItsOwn(t *testing.T) {
	aor := "sip:bob@biloxi.example"
	b := secretBinding(7)
	b.Timestamp = time.UnixMilli(time.Now().UnixMilli())
	b.Expires = time.UnixMilli(b.Expires.UnixMilli())
	k := sealerFor(true, aor)
	e := &entry{AOR: aor, B: b}
	k.hide(e)
	e.CertFP, e.Sig = [32]byte{1}, []byte("sig")

	mine, err := k.open(e)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := sealerFor(true, aor).open(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mine.content(), fresh.content()) || mine.CertFP != fresh.CertFP || !bytes.Equal(mine.Sig, fresh.Sig) || mine.B.Contact != b.Contact {
		t.Fatalf("own entry opened to %+v, a fresh sealer's to %+v", mine, fresh)
	}

	changed := map[string]func(*entry){
		"expiry":    func(c *entry) { c.B.Expires = c.B.Expires.Add(time.Hour) },
		"CSeq":      func(c *entry) { c.B.CSeq++ },
		"timestamp": func(c *entry) { c.B.Timestamp = c.B.Timestamp.Add(time.Millisecond) },
		"Call-ID":   func(c *entry) { c.B.CallID = k.hidden("call-id", "other") },
		"identity":  func(c *entry) { c.B.Contact = k.hidden("id", "sip:eve@192.0.2.66") },
		"removal":   func(c *entry) { c.Removed = true },
		"sealed":    func(c *entry) { c.sealed = bytes.Clone(c.sealed); c.sealed[len(c.sealed)-1] ^= 1 },
	}
	for name, change := range changed {
		c := *e
		change(&c)
		if o, err := k.open(&c); err == nil {
			t.Errorf("%s changed: opened to %+v", name, o.B)
		}
	}
	e.sealed[len(e.sealed)-1] ^= 1 // the hidden entry itself, changed in place
	if o, err := k.open(e); err == nil {
		t.Errorf("sealed bytes changed in place: opened to %+v", o.B)
	}
}
