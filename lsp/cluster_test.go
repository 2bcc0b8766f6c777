package lsp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lsnode/lsnode/overlay"
)

type cluster struct {
	ca   *testCA
	svcs []*Service
	ovs  []*overlay.Overlay
	// tweak, if set, adjusts node i's config before it starts; ovTweak
	// its overlay's.
	tweak   func(i int, cfg *Config)
	ovTweak func(i int, cfg *overlay.Config)
	// disk: each overlay keeps its datastore in a directory of its own,
	// so its replica store writes through to it (in memory it does not).
	disk bool
}

// newCluster starts n overlay nodes with a location service each; node i
// holds creds[i] (nil: overlay-only).
func newCluster(t testing.TB, n int, creds []*Credential, ca *testCA) *cluster {
	return newClusterWith(t, n, creds, ca, nil)
}

func newClusterWith(t testing.TB, n int, creds []*Credential, ca *testCA, tweak func(i int, cfg *Config)) *cluster {
	t.Helper()
	return startCluster(t, &cluster{ca: ca, tweak: tweak}, n, creds)
}

// newDiskCluster is newClusterWith with each node's datastore on disk.
func newDiskCluster(t testing.TB, n int, creds []*Credential, ca *testCA, tweak func(i int, cfg *Config)) *cluster {
	t.Helper()
	return startCluster(t, &cluster{ca: ca, tweak: tweak, disk: true}, n, creds)
}

func startCluster(t testing.TB, c *cluster, n int, creds []*Credential) *cluster {
	t.Helper()
	t.Cleanup(func() {
		for i := range c.svcs {
			c.svcs[i].Close()
			c.ovs[i].Close()
		}
	})
	for i := 0; i < n; i++ {
		var cred *Credential
		if i < len(creds) {
			cred = creds[i]
		}
		c.add(t, cred)
	}
	c.converge(t)
	return c
}

// add starts one more node, joined through node 0.
func (c *cluster) add(t testing.TB, cred *Credential) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	key, err := overlay.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	var boot []string
	if len(c.ovs) > 0 {
		boot = c.ovs[0].Addrs()
	}
	ocfg := overlay.Config{Name: "lsp-test", Identity: key, Bootstrap: boot,
		GossipInterval: 100 * time.Millisecond, DisableDHTRefresh: true, Logger: log}
	if c.disk {
		ocfg.DataDir = t.TempDir()
	}
	if c.ovTweak != nil {
		c.ovTweak(len(c.ovs), &ocfg)
	}
	ov, err := overlay.New(ctx, ocfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Overlay: ov, Credential: cred, TrustAnchors: c.ca.pool, Logger: log,
		RebalanceDelay: 200 * time.Millisecond}
	if c.tweak != nil {
		c.tweak(len(c.svcs), &cfg)
	}
	svc, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ov.Join(ctx); err != nil {
		t.Fatal(err)
	}
	c.svcs, c.ovs = append(c.svcs, svc), append(c.ovs, ov)
}

func (c *cluster) converge(t testing.TB) {
	t.Helper()
	ok := waitUntil(20*time.Second, func() bool {
		for _, ov := range c.ovs {
			if len(ov.Members()) != len(c.ovs) {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("membership did not converge in 20s: %s", c.unseen(nil))
	}
}

// unseen describes, for up to 10 pairs, which node does not see which
// member live and why (only nodes and members not in skip).
func (c *cluster) unseen(skip map[int]bool) string {
	var out []string
	for i, ov := range c.ovs {
		for j, m := range c.ovs {
			if skip[i] || skip[j] || len(out) >= 10 {
				continue
			}
			if st := ov.MemberState(m.ID()); st != "live" {
				ms := m.MembershipStats()
				out = append(out, fmt.Sprintf("node %d sees node %d %s (node %d: refuted %d, accused %d, health %d, sees itself %s)",
					i, j, st, j, ms.Refutations, ms.Accusations, ms.Health, m.MemberState(m.ID())))
			}
		}
	}
	return strings.Join(out, "; ")
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// raw sends one message over the store protocol from node `from` to peer p.
func (c *cluster) raw(from int, p peer.ID, m *message) (*message, error) {
	s := c.svcs[from]
	// A direct dial, past the swarm's dial backoff: a dial between the two
	// that failed while the cluster formed (a loaded CI machine) left one
	// of 5 s, and the message would fail at once ("dial backoff") though
	// the peer is up (TestRegisterIdempotent, once in CI).
	ctx, cancel := context.WithTimeout(network.WithForceDirectDial(context.Background(), "lsp test"), 5*time.Second)
	defer cancel()
	return s.rpc.call(ctx, p, s.storeProto, m)
}

func TestPublishLookupRemove(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 6, []*Credential{biloxi}, ca)
	ctx := context.Background()
	aor := "sip:Bob@Biloxi.example"
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.1", time.Hour), binding("sip:bob@192.0.2.2", time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i, s := range c.svcs {
		bs, err := s.Lookup(ctx, aor)
		if err != nil || len(bs) != 2 || bs[0].Signer != "biloxi.example" {
			t.Fatalf("node %d: lookup = %+v, %v", i, bs, err)
		}
	}
	if err := c.svcs[0].Remove(ctx, aor, "sip:bob@192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	for i, s := range c.svcs {
		bs, err := s.Lookup(ctx, aor)
		if err != nil || len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.2" {
			t.Fatalf("node %d after remove: %+v, %v", i, bs, err)
		}
	}
	if err := c.svcs[3].Publish(ctx, aor, binding("sip:x@y", time.Hour)); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("overlay-only node published: %v", err)
	}
}

// TestForgedWritesRefused sends forged and broken STOREs straight to every
// replica of an AOR: each must answer with an error naming the problem and
// keep what it had.
func TestForgedWritesRefused(t *testing.T) {
	ca := newTestCA(t)
	rogueCA := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	atlanta := ca.issue(t, []string{"atlanta.example"}, nil, false)
	rogue := rogueCA.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 5, []*Credential{biloxi, atlanta}, ca)
	ctx := context.Background()
	aor := "sip:bob@biloxi.example"
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.1", time.Hour)); err != nil {
		t.Fatal(err)
	}
	replicas := c.ovs[1].Closest(Key(aor), 3)

	good := signed(t, biloxi, aor, binding("sip:mallory@203.0.113.9", time.Hour))[0]
	badSig := *good
	badSig.Sig = append([]byte{}, good.Sig...)
	badSig.Sig[5] ^= 0x40
	badSig.wire = nil // re-encode with the altered signature
	cross := &entry{AOR: aor, B: binding("sip:mallory@203.0.113.9", time.Hour)}
	cross.B.Timestamp = time.Now()
	if err := atlanta.sign([]*entry{cross}); err != nil {
		t.Fatal(err)
	}
	untrusted := signed(t, rogue, aor, binding("sip:mallory@203.0.113.9", time.Hour))[0]
	valid := signed(t, biloxi, aor, binding("sip:bob@192.0.2.50", time.Hour))[0]
	store := (&message{Type: msgStore, Entries: []*entry{good}, Certs: biloxi.Chain}).encode()

	cases := []struct {
		name string
		msg  *message
		raw  []byte
		want error
	}{
		{"bad signature", &message{Type: msgStore, Entries: []*entry{&badSig}, Certs: biloxi.Chain}, nil, ErrForbidden},
		{"certificate for another domain", &message{Type: msgStore, Entries: []*entry{cross}, Certs: atlanta.Chain}, nil, ErrForbidden},
		{"untrusted CA", &message{Type: msgStore, Entries: []*entry{untrusted}, Certs: rogue.Chain}, nil, ErrForbidden},
		{"one forged entry spoils the batch", &message{Type: msgStore, Entries: []*entry{valid, &badSig}, Certs: biloxi.Chain}, nil, ErrForbidden},
		{"bad signature in a REGISTER", &message{Type: msgRegister, Entries: []*entry{valid, &badSig}, Certs: biloxi.Chain}, nil, ErrForbidden},
		{"REGISTER for another domain", &message{Type: msgRegister, Entries: []*entry{cross}, Certs: atlanta.Chain}, nil, ErrForbidden},
		{"empty REGISTER", &message{Type: msgRegister}, nil, ErrMalformed},
		{"truncated", nil, store[:len(store)-7], ErrMalformed},
		{"oversized", nil, make([]byte, DefaultMaxMessage+1), ErrTooLarge},
	}
	for _, tc := range cases {
		for _, p := range replicas {
			from := 1
			if c.ovs[1].ID() == p {
				from = 2
			}
			var err error
			if tc.msg != nil {
				_, err = c.raw(from, p, tc.msg)
			} else {
				err = c.sendRaw(from, p, tc.raw)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("%s to %s: got %v, want %v", tc.name, p.ShortString(), err, tc.want)
			}
		}
	}
	// Every replica still holds exactly the authentic binding.
	for _, p := range replicas {
		for i, ov := range c.ovs {
			if ov.ID() != p {
				continue
			}
			chains := map[[32]byte][][]byte{}
			es := c.svcs[i].store.get(aor, time.Now(), chains)
			if len(es) != 1 || es[0].B.Contact != "sip:bob@192.0.2.1" {
				t.Fatalf("replica %d changed: %+v", i, es)
			}
		}
	}
	bs, err := c.svcs[4].Lookup(ctx, aor)
	if err != nil || len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.1" {
		t.Fatalf("lookup after forgeries: %+v, %v", bs, err)
	}
}

// sendRaw writes one frame of raw bytes and decodes the error reply.
func (c *cluster) sendRaw(from int, p peer.ID, b []byte) error {
	s := c.svcs[from]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.ov.Host().NewStream(ctx, p, s.storeProto)
	if err != nil {
		return err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	// Write concurrently: a server that refuses a frame by its length
	// replies without reading the rest.
	go func() { _ = overlay.WriteFrame(st, b) }()
	reply, err := overlay.ReadFrame(bufioReader(st), DefaultMaxMessage)
	if err != nil {
		return fmt.Errorf("no reply: %w", err)
	}
	m, err := decodeMessage(reply)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: %s", errOfStatus(m.Status), m.Error)
}

// TestReaderDiscardsForgedEntries: a replica that answers a FETCH with a
// forged entry (simulated by planting it in its store) does not get it past
// the reader's verification.
func TestReaderDiscardsForgedEntries(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 4, []*Credential{biloxi}, ca)
	ctx := context.Background()
	aor := "sip:bob@biloxi.example"
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.1", time.Hour)); err != nil {
		t.Fatal(err)
	}
	forged := signed(t, biloxi, aor, binding("sip:mallory@203.0.113.9", time.Hour))[0]
	forged.B.Contact = "sip:mallory@203.0.113.10" // content changed after signing
	forged.seal()
	for _, s := range c.svcs {
		s.store.mu.Lock()
		if rec := s.store.recs[aor]; rec != nil {
			rec.entries[forged.B.ID()] = forged
		}
		s.store.mu.Unlock()
	}
	for i, s := range c.svcs {
		bs, err := s.Lookup(ctx, aor)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.1" {
			t.Fatalf("node %d returned %+v, want only the authentic binding", i, bs)
		}
	}
}

func TestUnavailableWithoutQuorum(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 4, []*Credential{biloxi}, ca)
	// Crash three nodes: their hosts vanish without a leave announcement, so
	// node 0 still counts them as replicas.
	for i := 1; i < 4; i++ {
		c.ovs[i].Host().Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.svcs[0].Publish(ctx, "sip:bob@biloxi.example", binding("sip:bob@h", time.Hour))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write with W unreachable replicas: got %v, want ErrUnavailable", err)
	}
}

// TestRereplicationOnJoin: nodes that join and become one of an AOR's R
// closest peers receive its bindings from the replicas that hold them.
func TestRereplicationOnJoin(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 4, []*Credential{biloxi}, ca)
	ctx := context.Background()
	var aors []string
	for i := 0; i < 60; i++ {
		aor := fmt.Sprintf("sip:user%d@biloxi.example", i)
		if err := c.svcs[0].Publish(ctx, aor, binding(fmt.Sprintf("sip:u%d@192.0.2.1", i), time.Hour)); err != nil {
			t.Fatal(err)
		}
		aors = append(aors, aor)
	}
	for i := 0; i < 6; i++ {
		c.add(t, nil)
	}
	c.converge(t)
	byID := map[peer.ID]*Service{}
	for i, ov := range c.ovs {
		byID[ov.ID()] = c.svcs[i]
	}
	moved := 0
	for _, aor := range aors {
		for _, p := range c.ovs[0].Closest(Key(aor), 3) {
			if byID[p] != c.svcs[0] && byID[p] != c.svcs[1] && byID[p] != c.svcs[2] && byID[p] != c.svcs[3] {
				moved++
			}
		}
	}
	if moved == 0 {
		t.Fatal("no AOR gained a new replica: the test would prove nothing")
	}
	waitFor(t, 20*time.Second, "every AOR sits on each of its R closest nodes", func() bool {
		for _, aor := range aors {
			for _, p := range c.ovs[0].Closest(Key(aor), 3) {
				if byID[p].Holds(aor) == 0 {
					return false
				}
			}
		}
		return true
	})
	t.Logf("%d replica placements moved to joining nodes", moved)
}

// TestPeerRateLimit: a peer sending faster than the per-peer limit gets
// ErrRateLimited (without being suspected) and is served again once its
// bucket refills; other peers are not affected.
func TestPeerRateLimit(t *testing.T) {
	ca := newTestCA(t)
	c := newCluster(t, 3, nil, ca)
	c.svcs[0].limit = newLimiter(5, 5)
	fetch := &message{Type: msgFetch, AORs: []string{"sip:bob@biloxi.example"}}
	limited := 0
	for i := 0; i < 20; i++ {
		if _, err := c.raw(1, c.ovs[0].ID(), fetch); errors.Is(err, ErrUnavailable) {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited < 10 {
		t.Fatalf("%d of 20 rapid requests limited, want at least 10 (burst 5)", limited)
	}
	if _, err := c.raw(2, c.ovs[0].ID(), fetch); err != nil {
		t.Fatalf("another peer was limited too: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := c.raw(1, c.ovs[0].ID(), fetch); err != nil {
		t.Fatalf("after the bucket refilled: %v", err)
	}
}
