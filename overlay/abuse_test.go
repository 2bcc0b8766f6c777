package overlay

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lsnode/lsnode/overlay/membership"
)

// startWith starts n members of overlay name, each config edited by
// mutate, the first one the others' bootstrap peer.
func startWith(t *testing.T, n int, name string, mutate func(i int, c *Config)) []*Overlay {
	t.Helper()
	var out []*Overlay
	var boot []string
	for i := 0; i < n; i++ {
		key, err := GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Name: name, Identity: key, Bootstrap: boot, GossipInterval: 100 * time.Millisecond,
			DisableDHTRefresh: true, Logger: quiet()}
		if mutate != nil {
			mutate(i, &cfg)
		}
		o, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		if err := o.Join(context.Background()); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			boot = o.Addrs()
		}
		out = append(out, o)
	}
	return out
}

// TestGossipUnconfirmed: a member sends 60 self-signed identities that no
// one can reach, and one entry with a bad signature. The node it tells
// takes at most its per-subnet share of MaxUnconfirmed of them, none live
// at once (probation), and within a few seconds their observers' probes
// have them accused: no view lists any of them as live.
func TestGossipUnconfirmed(t *testing.T) {
	const limit = 20 // 5 per subnet: everyone here is on 127.0.0.0/24
	os := startWith(t, 3, "ov-sybil", func(_ int, c *Config) { c.MaxUnconfirmed = limit })
	victim, attacker := os[0], os[1]
	waitMembers(t, os, 3)

	var entries [][]byte
	fakes := map[peer.ID]bool{}
	for i := 0; i < 61; i++ {
		key, err := GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(key)
		addr := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 1+i)) // nothing listens there
		sign := key.Sign
		if i == 60 { // signed by someone else
			sign = attacker.cfg.Identity.Sign
		}
		raw, err := membership.SignEntry("ov-sybil", string(id), uint64(time.Now().UnixNano()), [][]byte{addr.Bytes()}, nil, false, 0, sign)
		if err != nil {
			t.Fatal(err)
		}
		fakes[id] = true
		entries = append(entries, raw)
	}
	msg := []byte{6} // updates
	for _, raw := range entries {
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendBytes(msg, raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := attacker.Host().NewStream(ctx, victim.ID(), attacker.membersProtocol())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(s, msg); err != nil {
		t.Fatal(err)
	}
	s.Close()

	deadline := time.Now().Add(3 * time.Second)
	for victim.members.stats().OverUnconfirmed < 60-limit/4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := victim.members.stats()
	if st.OverUnconfirmed < 60-limit/4 || st.BadSignatures == 0 {
		t.Fatalf("the victim refused %d of 60 unreachable identities (want ≥ %d) and %d bad signatures (want 1)",
			st.OverUnconfirmed, 60-limit/4, st.BadSignatures)
	}
	liveFakes := func() int {
		n := 0
		for _, o := range os {
			for _, id := range o.Members() {
				if fakes[id] {
					n++
				}
			}
		}
		return n
	}
	if n := liveFakes(); n != 0 {
		t.Fatalf("%d unreachable identities live at once", n)
	}
	deadline = time.Now().Add(10 * time.Second)
	for liveFakes() > 0 || len(victim.Members()) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("unreachable identities still live after 10 s: %d", liveFakes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, o := range os {
		if got := len(o.Members()); got != 3 {
			t.Fatalf("%s sees %d live members, want 3", o.ID().ShortString(), got)
		}
	}
}

// TestValuesOffByDefault: a node refuses kad-dht values (PUT_VALUE from a
// peer, PutValue of its own) unless BenchmarkValues is set; one with it
// stores them.
func TestValuesOffByDefault(t *testing.T) {
	os := startWith(t, 3, "ov-values", func(i int, c *Config) { c.BenchmarkValues = i > 0 })
	waitMembers(t, os, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pm, err := pb.NewProtocolMessenger(os[1].DHT().MessageSender())
	if err != nil {
		t.Fatal(err)
	}
	rec := record.MakePutRecord("/"+ValueNamespace+"/k", []byte("an unsigned value"))
	if err := pm.PutValue(ctx, os[2].ID(), rec); err != nil {
		t.Fatalf("a benchmark node refused the value: %v", err)
	}
	if err := pm.PutValue(ctx, os[0].ID(), rec); err == nil {
		t.Fatal("a default node stored a kad-dht value from a peer")
	}
	if err := os[0].DHT().PutValue(ctx, "/"+ValueNamespace+"/k", []byte("v")); err == nil {
		t.Fatal("a default node took a kad-dht value of its own")
	}
	if _, err := os[0].DHT().GetValue(ctx, "/"+ValueNamespace+"/k"); err == nil {
		t.Fatal("a default node served a kad-dht value")
	}
}
