package lsp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func reg(contact string, callID string, cseq uint32) Binding {
	b := binding(contact, time.Hour)
	b.CallID, b.CSeq = callID, cseq
	return b
}

// TestRegister: two front-ends of one domain register two devices of one AOR;
// each answer lists what the quorum holds, the other front-end's write
// included, and an older CSeq of the same Call-ID is refused everywhere.
func TestRegister(t *testing.T) {
	ca := newTestCA(t)
	fe1 := ca.issue(t, []string{"biloxi.example"}, nil, false)
	fe2 := ca.issue(t, []string{"biloxi.example"}, nil, true)
	c := newCluster(t, 6, []*Credential{fe1, fe2}, ca)
	ctx := context.Background()
	aor := "sip:bob@biloxi.example"

	bs, err := c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.1", "call-a", 1))
	if err != nil || len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.1" || bs[0].Signer != "biloxi.example" {
		t.Fatalf("first register: %+v, %v", bs, err)
	}
	bs, err = c.svcs[1].Register(ctx, aor, reg("sip:bob@192.0.2.2", "call-b", 7))
	if err != nil || len(bs) != 2 {
		t.Fatalf("second front-end's register must list both devices: %+v, %v", bs, err)
	}
	// A delayed request of call-a (same CSeq, new content) loses.
	late := reg("sip:bob@192.0.2.1", "call-a", 1)
	late.Expires = time.Now().Add(10 * time.Minute)
	if _, err := c.svcs[1].Register(ctx, aor, late); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("older CSeq: got %v, want ErrOutOfOrder", err)
	}
	for i := range c.svcs {
		bs, err := c.svcs[i].Lookup(ctx, aor)
		if err != nil || len(bs) != 2 {
			t.Fatalf("node %d: %+v, %v", i, bs, err)
		}
		for _, b := range bs {
			if b.Contact == "sip:bob@192.0.2.1" && time.Until(b.Expires) < 50*time.Minute {
				t.Fatalf("node %d: the refused refresh changed the binding: %v", i, b.Expires)
			}
		}
	}
	// The next CSeq refreshes; a new Call-ID (a rebooted UA) may start low.
	if bs, err = c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.1", "call-a", 2)); err != nil || len(bs) != 2 {
		t.Fatalf("refresh: %+v, %v", bs, err)
	}
	if bs, err = c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.2", "call-c", 1)); err != nil || len(bs) != 2 {
		t.Fatalf("new Call-ID: %+v, %v", bs, err)
	}
	if _, err := c.svcs[3].Register(ctx, aor, reg("sip:x@y", "c", 1)); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("overlay-only node registered: %v", err)
	}
}

// TestRegisterIdempotent: the same REGISTER message delivered twice (a retry
// after a lost reply) is accepted both times and changes nothing the second.
func TestRegisterIdempotent(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 4, []*Credential{biloxi}, ca)
	aor := "sip:bob@biloxi.example"
	m := &message{Type: msgRegister, Entries: signed(t, biloxi, aor, reg("sip:bob@192.0.2.1", "c", 3)), Certs: biloxi.Chain}
	p := c.ovs[0].Closest(Key(aor), 3)[0]
	from := 1
	if c.ovs[1].ID() == p {
		from = 2
	}
	for i := 0; i < 2; i++ {
		reply, err := c.raw(from, p, m)
		if err != nil || len(reply.AORs) != 0 || len(reply.Entries) != 1 {
			t.Fatalf("delivery %d: %+v, %v", i, reply, err)
		}
	}
}

// TestRegisterConcurrent drives many registrations at once, so they are
// coalesced into batches, and checks every AOR got exactly its own binding.
func TestRegisterConcurrent(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 8, []*Credential{biloxi}, ca)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aor := fmt.Sprintf("sip:u%d@biloxi.example", i)
			contact := fmt.Sprintf("sip:u%d@192.0.2.%d", i, i%250+1)
			bs, err := c.svcs[0].Register(ctx, aor, reg(contact, "c", 1))
			if err == nil && !hasContact(bs, contact) {
				err = fmt.Errorf("%s: answer %+v", aor, bs)
			}
			errs <- err
		}()
		if i%20 == 0 { // a second device of the same AOR at the same moment
			wg.Add(1)
			go func() {
				defer wg.Done()
				aor := fmt.Sprintf("sip:u%d@biloxi.example", i)
				bs, err := c.svcs[0].Register(ctx, aor, reg("sip:second@192.0.2.254", "d", 1))
				if err == nil && !hasContact(bs, "sip:second@192.0.2.254") {
					err = fmt.Errorf("%s second device: answer %+v", aor, bs)
				}
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 5 {
		aor := fmt.Sprintf("sip:u%d@biloxi.example", i)
		bs, err := c.svcs[7].Lookup(ctx, aor)
		want := 1
		if i%20 == 0 {
			want = 2
		}
		if err != nil || len(bs) != want || !hasContact(bs, fmt.Sprintf("sip:u%d@192.0.2.%d", i, i%250+1)) {
			t.Fatalf("%s from node 7: %+v, %v", aor, bs, err)
		}
	}
}

func hasContact(bs []Binding, contact string) bool {
	for _, b := range bs {
		if b.Contact == contact {
			return true
		}
	}
	return false
}

// TestRecordQuota: replicas refuse a write that would give an AOR more
// bindings than their quota, by Publish and by Register; refreshing an
// existing binding still works, and the record keeps what it had.
func TestRecordQuota(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 4, []*Credential{biloxi}, ca)
	for _, s := range c.svcs {
		s.store.mu.Lock()
		s.store.maxEntries = 3
		s.store.mu.Unlock()
	}
	ctx := context.Background()
	aor := "sip:bob@biloxi.example"
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.1", time.Hour), binding("sip:bob@192.0.2.2", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.3", "c", 1)); err != nil {
		t.Fatalf("third binding: %v", err)
	}
	// A write returns after W acknowledgements: let every replica hold the
	// three, or one still short of the quota could take the next write
	// that the others refuse (quotas are per replica).
	waitFor(t, 5*time.Second, "every replica holds the 3 bindings", func() bool {
		for _, p := range c.ovs[0].Closest(Key(aor), 3) {
			for i, ov := range c.ovs {
				if ov.ID() == p && len(c.svcs[i].store.get(aor, time.Now(), map[[32]byte][][]byte{})) != 3 {
					return false
				}
			}
		}
		return true
	})
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.4", time.Hour)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("fourth binding by Publish: %v, want ErrTooLarge", err)
	}
	if _, err := c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.5", "d", 1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("fourth binding by Register: %v, want ErrTooLarge", err)
	}
	if _, err := c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.3", "c", 2)); err != nil {
		t.Fatalf("refresh within the quota: %v", err)
	}
	bs, err := c.svcs[3].Lookup(ctx, aor)
	if err != nil || len(bs) != 3 {
		t.Fatalf("lookup after refusals: %d bindings, %v", len(bs), err)
	}
}

// TestHintedHandoff: a replica that is unreachable when a write is
// acknowledged by the others receives it once it is reachable again.
func TestHintedHandoff(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 4, []*Credential{biloxi}, ca)
	aor := "sip:bob@biloxi.example"
	reps := c.ovs[0].Closest(Key(aor), 3)
	var victim int = -1
	for i, ov := range c.ovs {
		if i != 0 && ov.ID() == reps[len(reps)-1] {
			victim = i
		}
	}
	if victim < 0 {
		victim = func() int {
			for i, ov := range c.ovs {
				if i != 0 && (ov.ID() == reps[0] || ov.ID() == reps[1]) {
					return i
				}
			}
			return -1
		}()
	}
	// The victim refuses the LSP store protocol for a while (as if its
	// process hung); the others acknowledge the write.
	h := c.ovs[victim].Host()
	h.RemoveStreamHandler(c.svcs[victim].storeProto)
	ctx := context.Background()
	if _, err := c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.1", "c", 1)); err != nil {
		t.Fatal(err)
	}
	if n := c.svcs[victim].Holds(aor); n != 0 {
		t.Fatalf("victim holds %d before it is back", n)
	}
	h.SetStreamHandler(c.svcs[victim].storeProto, func(st network.Stream) { c.svcs[victim].handleStream(st, c.svcs[victim].handleReplica) })
	deadline := time.Now().Add(10 * time.Second)
	for c.svcs[victim].Holds(aor) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the replica never received the acknowledged write (hints %d)", c.svcs[0].hints.len())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRegisterUnavailable: with W replicas crashed the registration fails
// with ErrUnavailable instead of claiming success. (Its own cluster: a
// failed write leaves the crashed peers suspected, which changes quorum.)
func TestRegisterUnavailable(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 4, []*Credential{biloxi}, ca)
	for i := 1; i < 4; i++ {
		c.ovs[i].Host().Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.svcs[0].Register(ctx, "sip:bob@biloxi.example", reg("sip:bob@h", "c", 1)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

// TestDomainQuota: a signing domain holds at most its quota of bindings on
// a replica, over all its AORs; other domains are not affected, and
// updates within the quota still pass.
func TestDomainQuota(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	atlanta := ca.issue(t, []string{"atlanta.example"}, nil, false)
	// 3 nodes, R=3: every replica holds every AOR.
	c := newClusterWith(t, 3, []*Credential{biloxi, atlanta}, ca, func(_ int, cfg *Config) { cfg.MaxDomainBindings = 5 })
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := c.svcs[0].Publish(ctx, fmt.Sprintf("sip:u%d@biloxi.example", i), binding(fmt.Sprintf("sip:u%d@192.0.2.1", i), time.Hour)); err != nil {
			t.Fatalf("binding %d: %v", i, err)
		}
	}
	// A write returns after W acknowledgements: let the third land, or a
	// replica still short of the quota could take the next one.
	usage := func(i int) int {
		s := c.svcs[i].store
		s.mu.RLock()
		defer s.mu.RUnlock()
		if u := s.signers["biloxi.example"]; u != nil {
			return u.n
		}
		return 0
	}
	waitFor(t, 5*time.Second, "every replica holds the 5 bindings", func() bool { return usage(0) == 5 && usage(1) == 5 && usage(2) == 5 })
	if err := c.svcs[0].Publish(ctx, "sip:u5@biloxi.example", binding("sip:u5@192.0.2.1", time.Hour)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("sixth biloxi binding: %v, want ErrTooLarge", err)
	}
	if _, err := c.svcs[0].Register(ctx, "sip:u6@biloxi.example", reg("sip:u6@192.0.2.1", "x", 1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("sixth biloxi binding by Register: %v, want ErrTooLarge", err)
	}
	// A refresh replaces a binding: no growth, accepted.
	if err := c.svcs[0].Publish(ctx, "sip:u0@biloxi.example", binding("sip:u0@192.0.2.1", 2*time.Hour)); err != nil {
		t.Fatalf("refresh within the quota: %v", err)
	}
	if err := c.svcs[1].Publish(ctx, "sip:alice@atlanta.example", binding("sip:alice@192.0.2.9", time.Hour)); err != nil {
		t.Fatalf("another domain: %v", err)
	}
	if bs, err := c.svcs[2].Lookup(ctx, "sip:u5@biloxi.example"); err != nil || len(bs) != 0 {
		t.Fatalf("refused AOR stored anyway: %v, %v", bs, err)
	}
	for i := range c.svcs {
		if n := usage(i); n != 5 {
			t.Errorf("replica %d counts %d biloxi bindings, want 5", i, n)
		}
	}
}

// TestOutOfOrderProof: a genuine out-of-order REGISTER (the replicas hold
// a higher CSeq of the Call-ID) fails with ErrOutOfOrder; the refusing
// replica sends the newer signed entry, which verifies and beats the
// write; no honest replica is distrusted for it.
func TestOutOfOrderProof(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 4, []*Credential{biloxi}, ca)
	ctx := context.Background()
	aor := "sip:bob@biloxi.example"
	if _, err := c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.1", "call-a", 2)); err != nil {
		t.Fatal(err)
	}
	replicas := c.ovs[0].Closest(Key(aor), 3)
	svcOf := func(p peer.ID) *Service {
		for i, ov := range c.ovs {
			if ov.ID() == p {
				return c.svcs[i]
			}
		}
		t.Fatalf("no node %s", p)
		return nil
	}
	waitFor(t, 5*time.Second, "every replica holds CSeq 2", func() bool {
		for _, p := range replicas {
			if svcOf(p).Holds(aor) != 1 {
				return false
			}
		}
		return true
	})
	_, err := c.svcs[0].Register(ctx, aor, reg("sip:bob@192.0.2.1", "call-a", 1))
	if !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("older CSeq: got %v, want ErrOutOfOrder", err)
	}
	if d := c.svcs[0].Distrusted(); len(d) != 0 {
		t.Fatalf("honest replicas distrusted for a proven refusal: %v", d)
	}
	// The proof, as a replica sends it.
	stale := signed(t, biloxi, aor, reg("sip:bob@192.0.2.1", "call-a", 1))
	for _, p := range replicas {
		from := 0
		if c.ovs[0].ID() == p {
			from = 1
		}
		reply, err := c.raw(from, p, &message{Type: msgRegister, Entries: stale, Certs: biloxi.Chain})
		if err != nil {
			t.Fatal(err)
		}
		if len(reply.AORs) != 1 || reply.AORs[0] != aor || len(reply.Entries) != 1 {
			t.Fatalf("replica %s: refused %v with proof %d entries", p.ShortString(), reply.AORs, len(reply.Entries))
		}
		o := reply.Entries[0]
		if _, err := c.svcs[from].verifier.verify(o, reply.Certs); err != nil {
			t.Fatalf("proof fails verification: %v", err)
		}
		if o.B.CallID != "call-a" || o.B.CSeq != 2 || !beats(o, stale[0]) {
			t.Fatalf("proof %+v does not beat the write", o.B)
		}
		v, err := c.svcs[from].judge(aor, stale, writeReply{p: p, refused: map[string]bool{aor: true}, proof: reply.Entries, certs: reply.Certs}.about(aor))
		if v != voteFinal || !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("judged %v, %v; want a proven out-of-order", v, err)
		}
		// Tampered proof is a lie.
		f := *o
		f.B.CSeq = 3
		f.seal()
		f.wire = nil
		if v, _ := c.svcs[from].judge(aor, stale, writeReply{p: p, refused: map[string]bool{aor: true}, proof: []*entry{&f}, certs: reply.Certs}.about(aor)); v != voteLie {
			t.Fatalf("tampered proof judged %v, want a lie", v)
		}
	}
	bs, err := c.svcs[3].Lookup(ctx, aor)
	if err != nil || len(bs) != 1 || bs[0].CSeq != 2 {
		t.Fatalf("lookup: %+v, %v", bs, err)
	}
}
