package overlay

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

// TestRedial: a peer whose dial failed is backed off by the host (a dial
// to it fails at once, without trying), also once it is back on the same
// address; Redial drops the backoff, and the next dial reaches it. A read
// asking the replicas it suspects relies on this (lsp): a replica killed
// and restarted is back within a second, the backoff lasts 5 s.
func TestRedial(t *testing.T) {
	os := startN(t, 1, "ov-redial")
	a := os[0]
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	peerOn := func(addr string) host.Host {
		h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings(addr), libp2p.PrivateNetwork(a.PrivateNetwork()),
			libp2p.DisableMetrics(), libp2p.DisableRelay())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	b := peerOn("/ip4/127.0.0.1/tcp/0")
	addr := b.Addrs()[0]
	id := b.ID()
	b.Close()
	a.host.Peerstore().AddAddrs(id, []ma.Multiaddr{addr}, peerstore.PermanentAddrTTL)
	dial := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return a.host.Connect(ctx, peer.AddrInfo{ID: id})
	}
	if err := dial(); err == nil {
		t.Fatal("dialled a peer that is down")
	}
	b = peerOn(addr.String()) // back, on its address
	defer b.Close()
	if err := dial(); err == nil || !strings.Contains(err.Error(), "backoff") {
		t.Fatalf("dial to the peer back within the backoff: %v, want a dial backoff", err)
	}
	if !a.Redial(id) {
		t.Fatal("first Redial refused")
	}
	if err := dial(); err != nil {
		t.Fatalf("dial after Redial: %v", err)
	}
	if a.Redial(id) {
		t.Fatal("a second Redial within redialEvery dropped the backoff again")
	}
}

// TestRedialsBounded: Redial drops one peer's backoff at most once per
// redialEvery, and remembers at most maxRedials peers (refusing more until
// some are older than redialEvery).
func TestRedialsBounded(t *testing.T) {
	var r redials
	now := time.Now()
	if !r.allow("p", now) || r.allow("p", now.Add(redialEvery/2)) || !r.allow("p", now.Add(redialEvery)) {
		t.Fatal("one peer: want allowed, refused within redialEvery, allowed after")
	}
	for i := range maxRedials - 1 {
		if !r.allow(peer.ID(fmt.Sprint(i)), now.Add(redialEvery)) {
			t.Fatalf("peer %d of %d refused", i, maxRedials)
		}
	}
	if r.allow("one more", now.Add(redialEvery)) {
		t.Fatal("a peer past maxRedials allowed")
	}
	if !r.allow("one more", now.Add(2*redialEvery)) || len(r.last) > maxRedials {
		t.Fatalf("after redialEvery: refused, or %d remembered", len(r.last))
	}
}
