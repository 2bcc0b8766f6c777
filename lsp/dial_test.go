package lsp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/lsnode/lsnode/overlay"
)

// TestDial: Dial skips a candidate where nothing listens, talks to the
// next, and its client's Close closes the dialer; with no candidate
// reachable the error names them; a bad config is ErrConfig.
func TestDial(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 3, []*Credential{biloxi}, ca)
	ctx := context.Background()
	aor := "sip:bob@biloxi.example"
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.1", time.Hour)); err != nil {
		t.Fatal(err)
	}
	key, err := overlay.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	deadID, _ := peer.IDFromPrivateKey(key)
	dead := overlay.AddrInfo{ID: deadID, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}}
	live, err := peer.AddrInfoFromString(c.ovs[1].Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	cfg := DialConfig{ClientConfig: ClientConfig{Overlay: "lsp-test", TrustAnchors: ca.pool, Credential: biloxi}, Candidates: []overlay.AddrInfo{dead, *live}}
	cl, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := cl.Server().ID; got != live.ID {
		t.Fatalf("client of %s, want %s", got, live.ID)
	}
	if bs, err := cl.Lookup(ctx, aor); err != nil || len(bs) != 1 || bs[0].Contact != "sip:bob@192.0.2.1" {
		t.Fatalf("lookup through the dialled node: %+v, %v", bs, err)
	}
	if err := cl.Publish(ctx, "sip:alice@biloxi.example", binding("sip:alice@192.0.2.2", time.Hour)); err != nil {
		t.Fatalf("publish through the dialled node: %v", err)
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.Candidates = []overlay.AddrInfo{dead}
	_, err = Dial(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "cannot reach "+deadID.ShortString()+" (is it running?)") {
		t.Fatalf("no candidate reachable: %v", err)
	}
	for _, bad := range []DialConfig{
		{ClientConfig: ClientConfig{Overlay: "lsp-test", TrustAnchors: ca.pool}},
		{ClientConfig: ClientConfig{Overlay: "lsp-test"}, Candidates: []overlay.AddrInfo{*live}},
		{ClientConfig: ClientConfig{TrustAnchors: ca.pool}, Candidates: []overlay.AddrInfo{*live}},
		{ClientConfig: ClientConfig{Overlay: "lsp-test", TrustAnchors: ca.pool, RequestTimeout: -time.Second}, Candidates: []overlay.AddrInfo{*live}},
	} {
		if _, err := Dial(ctx, bad); !errors.Is(err, ErrConfig) {
			t.Errorf("Dial(%+v) = %v, want ErrConfig", bad, err)
		}
	}
}

// TestConfigErrors: a config missing what it needs, or with impossible
// values, is refused with ErrConfig; zero values take their defaults.
func TestConfigErrors(t *testing.T) {
	ca := newTestCA(t)
	c := newCluster(t, 1, nil, ca)
	ov := c.ovs[0]
	for _, bad := range []Config{
		{TrustAnchors: ca.pool},
		{Overlay: ov},
		{Overlay: ov, TrustAnchors: ca.pool, Replicas: 3, WriteQuorum: 4},
		{Overlay: ov, TrustAnchors: ca.pool, Replicas: -1},
	} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", bad, err)
		}
	}
	got, err := Config{Overlay: ov, TrustAnchors: ca.pool, Replicas: 5}.withDefaults()
	if err != nil || got.WriteQuorum != 3 || got.RequestTimeout != 5*time.Second || got.Logger == nil {
		t.Fatalf("defaults: W %d, timeout %v, %v", got.WriteQuorum, got.RequestTimeout, err)
	}
	if _, err := NewClient(ClientConfig{Overlay: "x", TrustAnchors: ca.pool}); !errors.Is(err, ErrConfig) {
		t.Errorf("client without streams: %v, want ErrConfig", err)
	}
}
