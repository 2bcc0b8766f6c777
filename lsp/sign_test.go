package lsp

import (
	"errors"
	"testing"
	"time"
)

func TestMerkleProofs(t *testing.T) {
	for n := 1; n <= 17; n++ {
		leaves := make([][32]byte, n)
		for i := range leaves {
			leaves[i] = leafHash([]byte{byte(i), byte(n)})
		}
		root, proofs := merkle(leaves)
		for i := range leaves {
			e := &entry{leaf: leaves[i], Proof: proofs[i], Index: uint64(i)}
			if rootOf(e) != root {
				t.Fatalf("n=%d leaf %d: proof does not reach root", n, i)
			}
			e.Index ^= 1
			if i^1 < n && rootOf(e) == root && leaves[i] != leaves[i^1] {
				t.Fatalf("n=%d leaf %d: proof valid at the wrong index", n, i)
			}
		}
	}
}

func TestVerify(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	biloxiEC := ca.issue(t, []string{"*.biloxi.example", "biloxi.example"}, nil, true)
	atlanta := ca.issue(t, []string{"atlanta.example"}, nil, false)
	rogue := other.issue(t, []string{"biloxi.example"}, nil, false)
	telCred := ca.issue(t, nil, []string{"tel:+12015550123"}, false)
	v := NewVerifier(ca.pool, 30*time.Second, 24*time.Hour)
	bob := "sip:bob@biloxi.example"

	ok := func(name string, cred *Credential, aor string) {
		t.Helper()
		for _, e := range signed(t, cred, aor, binding("sip:bob@h1", time.Hour), binding("sip:bob@h2", time.Hour), binding("sip:bob@h3", time.Hour)) {
			if _, err := v.verify(e, cred.Chain); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	ok("ed25519", biloxi, bob)
	ok("ecdsa wildcard", biloxiEC, "sip:carol@pbx.biloxi.example")
	ok("tel URI SAN", telCred, "tel:+12015550123")

	refused := func(name string, want error, e *entry, certs [][]byte) {
		t.Helper()
		if _, err := v.verify(e, certs); !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
	}
	e := signed(t, biloxi, bob, binding("sip:bob@h", time.Hour))[0]
	bad := *e
	bad.Sig = append([]byte{}, e.Sig...)
	bad.Sig[0] ^= 1
	refused("bad signature", ErrForbidden, &bad, biloxi.Chain)

	tampered := *e
	tampered.B.Contact = "sip:mallory@evil"
	tampered.seal()
	tampered.Sig = e.Sig
	refused("tampered contact", ErrForbidden, &tampered, biloxi.Chain)

	// atlanta's credential may not write biloxi's AOR: prepare refuses, and
	// an entry crafted anyway is refused by the verifier.
	if _, err := prepare(atlanta, &clock{}, bob, []Binding{binding("sip:x@y", time.Hour)}, nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("prepare with another domain's credential: %v", err)
	}
	cross := &entry{AOR: bob, B: binding("sip:x@y", time.Hour)}
	cross.B.Timestamp = time.Now()
	if err := atlanta.sign([]*entry{cross}); err != nil {
		t.Fatal(err)
	}
	refused("other domain's certificate", ErrForbidden, cross, atlanta.Chain)
	refused("untrusted CA", ErrForbidden, signed(t, rogue, bob, binding("sip:x@y", time.Hour))[0], rogue.Chain)
	fresh := NewVerifier(ca.pool, 30*time.Second, 24*time.Hour)
	if _, err := fresh.verify(signed(t, biloxiEC, bob, binding("sip:x@y", time.Hour))[0], nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("certificate not supplied to a fresh verifier: %v", err)
	}

	future := signed(t, biloxi, bob, Binding{Contact: "sip:x@y", Expires: time.Now().Add(2 * time.Hour), Timestamp: time.Now().Add(time.Hour)})[0]
	refused("timestamp beyond skew", ErrInvalid, future, biloxi.Chain)
	long := signed(t, biloxi, bob, binding("sip:x@y", 48*time.Hour))[0]
	refused("expiry beyond max TTL", ErrInvalid, long, biloxi.Chain)

	nc := &entry{AOR: "sip:Bob@biloxi.example", B: binding("sip:x@y", time.Hour)}
	nc.B.Timestamp = time.Now()
	_ = biloxi.sign([]*entry{nc})
	refused("non-canonical AOR", ErrInvalid, nc, biloxi.Chain)

	// A Path or Contact with CR LF, signed by its own domain, is refused:
	// a proxy would copy it into a Route or Request-URI of other domains'
	// requests, a header of the signer's choosing after it.
	for name, b := range map[string]Binding{
		"CRLF in Path":    {Contact: "sip:x@y", Path: []string{"<sip:edge;lr>\r\nP-Asserted-Identity: <sip:boss@a.example>"}},
		"CRLF in Contact": {Contact: "sip:x@y\r\nX: 1"},
		"NUL in Call-ID":  {Contact: "sip:x@y", CallID: "a\x00b"},
	} {
		b.Expires, b.Timestamp = time.Now().Add(time.Hour), time.Now()
		ev := &entry{AOR: bob, B: b}
		if err := biloxi.sign([]*entry{ev}); err != nil {
			t.Fatal(err)
		}
		refused(name, ErrInvalid, ev, biloxi.Chain)
		if _, err := prepare(biloxi, &clock{}, bob, []Binding{b}, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("prepare with %s: %v", name, err)
		}
	}
}

func TestMergeLastWriterWins(t *testing.T) {
	ca := newTestCA(t)
	cred := ca.issue(t, []string{"biloxi.example"}, nil, false)
	aor := "sip:bob@biloxi.example"
	t0 := time.Now()
	mk := func(contact string, ts time.Time, cseq uint32, removed bool) *entry {
		e := &entry{AOR: aor, B: Binding{Contact: contact, Expires: t0.Add(time.Hour), Timestamp: ts, CSeq: cseq}, Removed: removed}
		if err := cred.sign([]*entry{e}); err != nil {
			t.Fatal(err)
		}
		return e
	}
	old := mk("sip:bob@h1", t0, 1, false)
	newer := mk("sip:bob@h1", t0.Add(time.Millisecond), 1, false)
	sameTSHigherCSeq := mk("sip:bob@h1", t0.Add(time.Millisecond), 2, false)
	tomb := mk("sip:bob@h1", t0.Add(2*time.Millisecond), 2, true)
	other := mk("sip:bob@h2", t0, 1, false)

	m := map[string]*entry{}
	merge(m, []*entry{newer, old, other})
	if m["sip:bob@h1"] != newer || m["sip:bob@h2"] != other {
		t.Fatal("newer timestamp must win, other identity must stay")
	}
	merge(m, []*entry{sameTSHigherCSeq})
	if m["sip:bob@h1"] != sameTSHigherCSeq {
		t.Fatal("same timestamp: higher CSeq must win")
	}
	merge(m, []*entry{tomb, old})
	if got := liveBindings(m, func(*entry) string { return "" }, time.Now()); len(got) != 1 || got[0].Contact != "sip:bob@h2" {
		t.Fatalf("tombstone must hide h1 and keep h2, got %+v", got)
	}
	// Order of arrival does not matter.
	m2 := map[string]*entry{}
	merge(m2, []*entry{tomb, other, old, sameTSHigherCSeq, newer})
	if m2["sip:bob@h1"] != tomb {
		t.Fatal("merge is not order independent")
	}
	// Expired bindings are never live.
	exp := &entry{AOR: aor, B: Binding{Contact: "sip:bob@h3", Expires: time.Now().Add(-time.Second)}}
	if exp.live(time.Now()) {
		t.Fatal("expired binding reported live")
	}
}

// TestSignedHereTrustsOnlyWhatWasSigned: remembering our own batches skips
// re-verifying them, but a copy altered after signing is still refused.
func TestSignedHereTrustsOnlyWhatWasSigned(t *testing.T) {
	ca := newTestCA(t)
	cred := ca.issue(t, []string{"biloxi.example"}, nil, false)
	v := NewVerifier(ca.pool, 30*time.Second, 24*time.Hour)
	es := signed(t, cred, "sip:bob@biloxi.example", binding("sip:bob@h1", time.Hour), binding("sip:bob@h2", time.Hour))
	v.signedHere(es)
	for _, e := range es {
		if _, err := v.verify(e, cred.Chain); err != nil {
			t.Fatal(err)
		}
	}
	altered := *es[1]
	altered.B.Contact = "sip:mallory@evil"
	altered.seal()
	if _, err := v.verify(&altered, cred.Chain); !errors.Is(err, ErrForbidden) {
		t.Fatalf("altered entry: %v", err)
	}
}

// TestAuthorizesCached: a credential asks x509 once per domain, so a
// front-end signing a binding does not pay x509's hostname match (a dozen
// allocations) each time; what it does not cover is still refused.
func TestAuthorizesCached(t *testing.T) {
	ca := newTestCA(t)
	cred := ca.issue(t, []string{"biloxi.example", "*.atlanta.example"}, nil, false)
	for _, aor := range []string{"sip:bob@biloxi.example", "sip:alice@pc.atlanta.example"} {
		if !cred.Authorizes(aor) {
			t.Fatalf("%s not authorized", aor)
		}
		if n := testing.AllocsPerRun(100, func() { cred.Authorizes(aor) }); n != 0 {
			t.Errorf("Authorizes(%q): %.0f allocations after the first, want 0", aor, n)
		}
	}
	for _, aor := range []string{"sip:eve@evil.example", "sip:bob@biloxi.example.evil", "sip:x@atlanta.example"} {
		if cred.Authorizes(aor) {
			t.Errorf("%s authorized", aor)
		}
	}
}
