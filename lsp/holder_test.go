package lsp

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestHolderProof: once a front-end has proven to a replica that it holds
// its credential, the replica takes its REGISTER batches without checking
// each batch's signature (one check per replica, not one per batch), and
// checks what it took before handing it to anyone else. A proof is worth
// nothing to another peer: replayed by a member, or made up, the forged
// entries it comes with are refused. Holder proofs also work for an ECDSA
// credential.
func TestHolderProof(t *testing.T) {
	ca := newTestCA(t)
	fe := ca.issue(t, []string{"biloxi.example"}, nil, false)
	fe2 := ca.issue(t, []string{"biloxi.example"}, nil, true) // ECDSA
	atl := ca.issue(t, []string{"atlanta.example"}, nil, false)
	// No background checks (TestBackgroundChecks): what is counted here
	// and what the replicas hold until a read are the proofs' alone.
	c := newClusterWith(t, 6, []*Credential{fe, fe2, atl}, ca, func(_ int, cfg *Config) { cfg.BackgroundChecks = -1 })
	ctx := context.Background()
	checks := func() (n uint64) {
		for _, s := range c.svcs[1:] {
			n += s.verifier.sigChecks.Load()
		}
		return n
	}
	lookup := func(aor, contact string) {
		t.Helper()
		bs, err := c.svcs[5].Lookup(ctx, aor)
		if err != nil || len(bs) != 1 || bs[0].Contact != contact {
			t.Fatalf("lookup of %s = %+v, %v; want %s alone", aor, bs, err, contact)
		}
	}

	const n = 30
	before := checks()
	for i := range n {
		aor := fmt.Sprintf("sip:u%d@biloxi.example", i)
		if _, err := c.svcs[0].Register(ctx, aor, reg(fmt.Sprintf("sip:u%d@192.0.2.%d", i, i+1), "c", 1)); err != nil {
			t.Fatal(err)
		}
	}
	// Without the proof each REGISTER costs two or three replicas a check
	// (78 in one run); with it, each replica checks the proof once, and a
	// record its replica set changed under is pushed and checked again.
	if got := checks() - before; got > 10 {
		t.Fatalf("the replicas checked %d signatures for %d REGISTERs of one front-end; want about one holder proof each (5)", got, n)
	}
	for i := range n {
		lookup(fmt.Sprintf("sip:u%d@biloxi.example", i), fmt.Sprintf("sip:u%d@192.0.2.%d", i, i+1))
	}
	before = checks() - c.svcs[1].verifier.sigChecks.Load()
	for i := range 10 {
		aor := fmt.Sprintf("sip:e%d@biloxi.example", i)
		if _, err := c.svcs[1].Register(ctx, aor, reg("sip:e@192.0.2.99", "c", 1)); err != nil {
			t.Fatal(err)
		}
	}
	if got := checks() - c.svcs[1].verifier.sigChecks.Load() - before; got > 6 {
		t.Fatalf("the replicas checked %d signatures for 10 REGISTERs of the ECDSA front-end; want about one holder proof each", got)
	}
	for i := range 10 {
		lookup(fmt.Sprintf("sip:e%d@biloxi.example", i), "sip:e@192.0.2.99")
	}

	// A replica of the victim's AOR that is neither front-end 0, nor the
	// attacker (node 2, atlanta's front-end, a member), nor the reader.
	// The victim's first replica (any node: a node's message to itself
	// goes through its own handler, see deliver).
	const victim = "sip:victim@biloxi.example"
	var set []peer.ID
	if !waitUntil(10*time.Second, func() bool { set = c.svcs[0].closest(victim); return len(set) == 3 }) {
		t.Fatalf("front-end 0 places the victim's AOR on %d replicas, not 3", len(set))
	}
	r := c.index(set[0])
	const good = "sip:victim@192.0.2.200"
	if _, err := c.svcs[0].Register(ctx, victim, reg(good, "v", 1)); err != nil {
		t.Fatal(err)
	}
	// Register returns on its write quorum (two of three): the third
	// replica, which may be r, can take the binding a moment later.
	if !waitUntil(10*time.Second, func() bool { return c.svcs[r].Holds(victim) == 1 }) {
		t.Fatalf("replica %d holds %d bindings of the victim after the register, want 1", r, c.svcs[r].Holds(victim))
	}
	forged := func(contact string) []*entry { // signed by front-end 0's credential, then changed
		es := signed(t, fe, victim, reg("sip:victim@203.0.113.1", "v", 2))
		es[0].B.Contact = contact
		es[0].seal()
		return es
	}
	// A proof that node 2 holds biloxi's key, signed with key, valid until exp.
	proofFor := func(key *Credential, exp time.Time) []byte {
		msg := holderMessage(c.ovs[2].Name(), c.ovs[2].ID(), fe.fp, uint64(exp.Unix()))
		sig, err := key.key.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		return append(append(fe.fp[:len(fe.fp):len(fe.fp)], msg[len(msg)-8:]...), sig...)
	}
	own, err := c.svcs[0].holderProof()
	if err != nil {
		t.Fatal(err)
	}
	atlProof, err := c.svcs[2].holderProof()
	if err != nil {
		t.Fatal(err)
	}
	var clk clock
	atlEntries, err := build(fe, &clk, victim, []Binding{reg("sip:mallory@203.0.113.68", "m", 1)}, nil)
	if err == nil {
		err = atl.sign(atlEntries) // well signed, by the wrong domain
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what  string
		es    []*entry
		proof []byte
		want  string
	}{
		{"front-end 0's proof, replayed by node 2", forged("sip:mallory@203.0.113.66"), own, "holder proof"},
		{"node 2's own proof (atlanta's credential)", forged("sip:mallory@203.0.113.66"), atlProof, "bad signature"},
		{"a proof for biloxi's credential signed by atlanta's key", forged("sip:mallory@203.0.113.66"), proofFor(atl, time.Now().Add(time.Hour)), "holder proof"},
		{"biloxi's key, a proof expired", forged("sip:mallory@203.0.113.66"), proofFor(fe, time.Now().Add(-time.Hour)), "expired"},
		{"biloxi's key, a proof for a day", forged("sip:mallory@203.0.113.66"), proofFor(fe, time.Now().Add(24*time.Hour)), "longer than"},
		{"node 2's own proof, a biloxi AOR signed by atlanta", atlEntries, atlProof, "does not cover"},
	} {
		reply, err := c.deliver(2, r, &message{Type: msgRegister, Entries: tc.es,
			Certs: flatten(map[[32]byte][][]byte{fe.fp: fe.Chain, atl.fp: atl.Chain}), Holder: tc.proof})
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: reply %+v, %v; want ErrForbidden (%s)", tc.what, reply, err, tc.want)
		}
		if got := c.svcs[r].Holds(victim); got != 1 {
			t.Fatalf("%s: the replica holds %d bindings of the victim, want 1", tc.what, got)
		}
	}

	// Front-end 0 itself sends a binding whose signature does not match:
	// the replica takes it (its holder could sign anything of biloxi's)
	// but never hands it out, and drops it at the first read.
	if _, err := c.deliver(0, r, &message{Type: msgRegister, Entries: forged("sip:own@203.0.113.67"),
		Certs: flatten(chainsOf(fe)), Holder: own}); err != nil {
		t.Fatalf("the holder's own write: %v", err)
	}
	if got := c.svcs[r].Holds(victim); got != 2 {
		t.Fatalf("the replica holds %d bindings of the victim after the holder's write, want 2", got)
	}
	reply, err := c.deliver((r+1)%len(c.svcs), r, &message{Type: msgFetch, AORs: []string{victim}})
	if err != nil {
		t.Fatal(err)
	}
	if len(reply.Entries) != 1 || reply.Entries[0].B.Contact != good {
		t.Fatalf("the replica answered a fetch with %d entries (%v), want the good one alone", len(reply.Entries), reply.Entries)
	}
	if got := c.svcs[r].Holds(victim); got != 1 {
		t.Fatalf("the replica still holds %d bindings of the victim after the read, want 1", got)
	}
	lookup(victim, good)
	if c.svcs[5].distrust.has(c.ovs[r].ID()) {
		t.Fatal("the reader distrusts a replica that served nothing forged")
	}
}

// deliver sends m over the replica protocol from node from to node to, or
// hands it to the node's own handler when they are the same node.
func (c *cluster) deliver(from, to int, m *message) (*message, error) {
	if from != to {
		return c.raw(from, c.ovs[to].ID(), m)
	}
	reply := c.svcs[to].handleReplica(context.Background(), c.ovs[from].ID(), m)
	if reply.Status != statusOK {
		return reply, fmt.Errorf("%w: %s", errOfStatus(reply.Status), reply.Error)
	}
	return reply, nil
}

// index is the node of peer p, -1 if none.
func (c *cluster) index(p peer.ID) int {
	for i, ov := range c.ovs {
		if ov.ID() == p {
			return i
		}
	}
	return -1
}

// TestHolderProofDisk: what a replica loads from its datastore is checked
// again before it is handed out; an entry whose signature fails there is
// dropped, not served.
func TestHolderProofDisk(t *testing.T) {
	ca := newTestCA(t)
	fe := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newDiskCluster(t, 1, []*Credential{fe}, ca, nil)
	s := c.svcs[0]
	good := signed(t, fe, "sip:a@biloxi.example", binding("sip:a@192.0.2.1", time.Hour))
	bad := signed(t, fe, "sip:b@biloxi.example", binding("sip:b@192.0.2.2", time.Hour))
	bad[0].B.Contact = "sip:b@203.0.113.9"
	bad[0].seal()
	ctx := context.Background()
	chains := chainsOf(fe)
	if _, err := s.store.apply(ctx, append(good, bad...), chains, nil); err != nil { // as a tampered disk would hold them
		t.Fatal(err)
	}
	s.Close() // and again from what its datastore holds
	s, err := New(ctx, Config{Overlay: c.ovs[0], Credential: fe, TrustAnchors: ca.pool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.svcs[0] = s
	for aor, want := range map[string]int{"sip:a@biloxi.example": 1, "sip:b@biloxi.example": 0} {
		reply := s.handleFetch(&message{Type: msgFetch, AORs: []string{aor}})
		if len(reply.Entries) != want {
			t.Fatalf("%s: %d entries served after a reload, want %d", aor, len(reply.Entries), want)
		}
	}
	if got := s.Holds("sip:b@biloxi.example"); got != 0 {
		t.Fatalf("the tampered entry is still held (%d) after its failed check", got)
	}
}

// TestHolderProofRefusal: an entry a replica took unchecked is checked
// before it decides anything for another writer. Front-end 0 sends each
// replica of an AOR a newer CSeq of its binding under a signature that
// does not match; when front-end 1 (same domain, its own key) then
// registers that binding, each replica finds the forgery, buries it and
// does not refuse the write on its word, so front-end 1 takes none of them
// for a liar. (The binding is gone: its holder could have done as much
// with a good signature.)
func TestHolderProofRefusal(t *testing.T) {
	ca := newTestCA(t)
	fe := ca.issue(t, []string{"biloxi.example"}, nil, false)
	fe1 := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 6, []*Credential{fe, fe1}, ca)
	ctx := context.Background()
	const victim = "sip:victim@biloxi.example"
	var replicas []peer.ID
	if !waitUntil(10*time.Second, func() bool { replicas = c.svcs[0].closest(victim); return len(replicas) == 3 }) {
		t.Fatalf("front-end 0 places the victim's AOR on %d replicas, not 3", len(replicas))
	}
	const good = "sip:victim@192.0.2.200"
	if _, err := c.svcs[0].Register(ctx, victim, reg(good, "v", 1)); err != nil {
		t.Fatal(err)
	}
	es := signed(t, fe, victim, reg(good, "v", 9))
	es[0].B.Expires = es[0].B.Expires.Add(30 * time.Minute) // the signature no longer matches
	es[0].seal()
	own, err := c.svcs[0].holderProof()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range replicas {
		if _, err := c.deliver(0, c.index(p), &message{Type: msgRegister, Entries: es, Certs: flatten(chainsOf(fe)), Holder: own}); err != nil {
			t.Fatalf("the holder's own write: %v", err)
		}
	}
	_, err = c.svcs[1].Register(ctx, victim, reg(good, "v", 2))
	for _, p := range replicas {
		if c.svcs[1].distrust.has(p) {
			t.Fatalf("front-end 1 distrusts a replica that held the forgery (its register: %v)", err)
		}
	}
	if err != nil {
		t.Fatalf("front-end 1's register: %v", err)
	}
	bs, err := c.svcs[5].Lookup(ctx, victim)
	if err != nil || len(bs) > 1 || len(bs) == 1 && bs[0].Expires.After(time.Now().Add(61*time.Minute)) {
		t.Fatalf("lookup = %+v, %v; the forged version was served", bs, err)
	}
}

// TestBackgroundChecks: what replicas took unchecked from a proven holder
// is checked in the background, with nobody reading it: a good entry ends
// checked, and a forgery of the holder's own is buried before any read.
// With BackgroundChecks negative both wait for a read.
func TestBackgroundChecks(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			ca := newTestCA(t)
			fe := ca.issue(t, []string{"biloxi.example"}, nil, false)
			c := newClusterWith(t, 4, []*Credential{fe}, ca, func(_ int, cfg *Config) {
				if !on {
					cfg.BackgroundChecks = -1
				}
			})
			ctx := context.Background()
			const aor = "sip:bob@biloxi.example"
			var set []peer.ID
			if !waitUntil(10*time.Second, func() bool { set = c.svcs[0].closest(aor); return len(set) == 3 }) {
				t.Fatalf("front-end 0 places the AOR on %d replicas, not 3", len(set))
			}
			// held: the replicas holding a binding of aor; unchecked: of
			// them, those that took it without checking its signature.
			count := func() (held, unchecked int) {
				for _, s := range c.svcs {
					for _, e := range s.store.get(aor, time.Now(), map[[32]byte][][]byte{}) {
						held++
						if atomic.LoadUint32(&e.unchecked) == 1 {
							unchecked++
						}
					}
				}
				return held, unchecked
			}
			if _, err := c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.1", "c", 1)); err != nil {
				t.Fatal(err)
			}
			if !waitUntil(10*time.Second, func() bool { h, _ := count(); return h == 3 }) {
				h, _ := count()
				t.Fatalf("%d replicas hold the binding, want 3", h)
			}
			background := func() (n int64) {
				for _, s := range c.svcs {
					n += s.bgChecked.Load()
				}
				return n
			}
			if on {
				if !waitUntil(10*time.Second, func() bool { _, u := count(); return u == 0 }) {
					_, u := count()
					t.Fatalf("%d replicas still hold the binding unchecked, none read it: want every one checked in the background", u)
				}
				if n := background(); n < 2 {
					t.Fatalf("the background checked %d entries, want the remote replicas' (2 or 3)", n)
				}
			} else {
				time.Sleep(2 * time.Second)
				if _, u := count(); u < 2 {
					t.Fatalf("without background checks %d replicas hold the binding unchecked, want the remote ones (2 or 3)", u)
				}
			}

			// Front-end 0 writes a binding whose signature does not match,
			// to a remote replica, with its holder proof: taken unchecked.
			r := -1
			for _, p := range set {
				if i := c.index(p); i != 0 {
					r = i
					break
				}
			}
			es := signed(t, fe, aor, reg("sip:bob@203.0.113.1", "f", 1))
			es[0].B.Contact = "sip:mallory@203.0.113.66"
			es[0].seal()
			own, err := c.svcs[0].holderProof()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.deliver(0, r, &message{Type: msgRegister, Entries: es, Certs: flatten(chainsOf(fe)), Holder: own}); err != nil {
				t.Fatalf("the holder's own write: %v", err)
			}
			if on {
				if !waitUntil(10*time.Second, func() bool { return c.svcs[r].Holds(aor) == 1 }) {
					t.Fatalf("replica %d holds %d bindings of the AOR, none read it: want the forgery buried in the background", r, c.svcs[r].Holds(aor))
				}
			} else {
				time.Sleep(2 * time.Second)
				if got := c.svcs[r].Holds(aor); got != 2 {
					t.Fatalf("without background checks replica %d holds %d bindings before any read, want 2 (the forgery waits for its read)", r, got)
				}
			}
			bs, err := c.svcs[3].Lookup(ctx, aor)
			if err != nil || len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.1" {
				t.Fatalf("lookup = %+v, %v; want the good binding alone", bs, err)
			}
		})
	}
}
