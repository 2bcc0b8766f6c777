package overlay

import (
	"bufio"
	"context"
	"fmt"
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/encoding/protowire"
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

// TestGossipUnconfirmed: a member gossips 60 self-signed identities that
// no one can reach. The node it tells holds at most its per-subnet share
// of MaxUnconfirmed of them, none live, and passes none on: a third node
// exchanging views with it learns none.
func TestGossipUnconfirmed(t *testing.T) {
	const limit = 20 // 5 per subnet: everyone here is on 127.0.0.0/24
	os := startWith(t, 3, "ov-sybil", func(_ int, c *Config) { c.MaxUnconfirmed = limit })
	victim, attacker, observer := os[0], os[1], os[2]
	waitMembers(t, os, 3)

	var msg []byte
	fakes := map[peer.ID]bool{}
	for i := 0; i < 60; i++ {
		key, err := GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(key)
		fakes[id] = true
		addr := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 1+i)) // nothing listens there
		body := memberBody(id, heartbeat{inc: 1, ctr: 1}, []ma.Multiaddr{addr}, false, nil)
		sig, err := key.Sign(victim.members.signed(body))
		if err != nil {
			t.Fatal(err)
		}
		body = appendSigned(body, sig)
		msg = appendRaw(msg, body)
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
	if _, err := ReadFrame(bufio.NewReader(s), maxGossipFrame); err != nil {
		t.Fatal(err)
	}
	s.Close()

	held := func(o *Overlay) (n, over int) {
		o.members.mu.Lock()
		defer o.members.mu.Unlock()
		for id := range o.members.byID {
			if fakes[id] {
				n++
			}
		}
		return n, o.members.overUnconfirmed
	}
	n, over := held(victim)
	if n == 0 || n > limit/4 || over < 60-limit/4 {
		t.Fatalf("the victim holds %d of 60 unreachable identities (refused %d), want 1..%d", n, over, limit/4)
	}
	if err := observer.members.exchange(ctx, victim.ID()); err != nil {
		t.Fatal(err)
	}
	if n, _ := held(observer); n != 0 {
		t.Fatalf("the victim passed %d unconfirmed identities on", n)
	}
	for _, o := range os {
		if got := len(o.Members()); got != 3 {
			t.Fatalf("%s sees %d live members, want 3", o.ID().ShortString(), got)
		}
	}
}

// appendSigned appends a member entry's signature field (as signEntry).
func appendSigned(body, sig []byte) []byte {
	body = protowire.AppendTag(body, 7, protowire.BytesType)
	return protowire.AppendBytes(body, sig)
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
