package lsp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/lsnode/lsnode/overlay"
)

// TestNotJoined: a node whose bootstrap peer has not answered yet says
// "unavailable", not "no binding", to a lookup, and refuses a write rather
// than keep it on itself alone; once the peer is up and the node has
// joined in the background, both work.
func TestNotJoined(t *testing.T) {
	ca := newTestCA(t)
	cred := ca.issue(t, []string{"a.example"}, nil, false)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	// The bootstrap peer's identity and address, before it runs.
	bootKey, err := overlay.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	bootID, err := overlay.PeerIDOf(bootKey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bootAddr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)
	l.Close()

	start := func(k crypto.PrivKey, listen, boot []string) (*overlay.Overlay, *Service) {
		t.Helper()
		if k == nil {
			if k, err = overlay.GenerateIdentity(); err != nil {
				t.Fatal(err)
			}
		}
		ov, err := overlay.New(ctx, overlay.Config{Name: "lsp-joined", Identity: k, Bootstrap: boot, ListenAddrs: listen,
			GossipInterval: 100 * time.Millisecond, DisableDHTRefresh: true, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := New(ctx, Config{Overlay: ov, Credential: cred, TrustAnchors: ca.pool, Logger: log, RequestTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close(); ov.Close() })
		return ov, svc
	}
	ov, svc := start(nil, nil, []string{bootAddr + "/p2p/" + bootID.String()})
	if err := ov.Join(ctx); !errors.Is(err, overlay.ErrBootstrap) {
		t.Fatalf("join with the bootstrap peer down: %v", err)
	}
	if ov.Joined() {
		t.Fatal("joined with no peer up")
	}
	aor := "sip:alice@a.example"
	if bs, err := svc.Lookup(ctx, aor); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not joined") {
		t.Fatalf("lookup before joining: %v %v, want unavailable: not joined", bs, err)
	}
	if err := svc.Publish(ctx, aor, binding("sip:alice@192.0.2.1:5060", time.Hour)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish before joining: %v, want unavailable", err)
	}
	if n := svc.StoreStats().Entries; n != 0 {
		t.Fatalf("the refused write left %d entries in the store", n)
	}

	bootOv, _ := start(bootKey, []string{bootAddr}, nil)
	if !bootOv.Joined() {
		t.Fatal("the overlay's first node does not count as joined")
	}
	if !waitUntil(20*time.Second, ov.Joined) {
		t.Fatal("did not join once the bootstrap peer was up")
	}
	if err := svc.Publish(ctx, aor, binding("sip:alice@192.0.2.1:5060", time.Hour)); err != nil {
		t.Fatalf("publish after joining: %v", err)
	}
	if bs, err := svc.Lookup(ctx, aor); err != nil || len(bs) != 1 {
		t.Fatalf("lookup after joining: %v %v", bs, err)
	}
}
