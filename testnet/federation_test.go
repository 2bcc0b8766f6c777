package testnet_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/pki"
	"github.com/lsnode/lsnode/testnet"
)

// TestFederation: a federation testnet (private-network key and member
// certificates) works end to end; in one process, a node of an open overlay
// keeps its own store beside it; a member cannot write another member's
// domain; a node with the wrong key or without a member certificate fails
// at start, saying why.
func TestFederation(t *testing.T) {
	fed := startNet(t, testnet.Spec{Nodes: 5, Federation: true, Overlay: "fed"}, testnet.RunOptions{})
	open := startNet(t, testnet.Spec{Nodes: 4}, testnet.RunOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	aNode := fed.Node(domainNodes(fed, "a.example")[0]).Location()
	openA := open.Node(domainNodes(open, "a.example")[0]).Location()
	aor := "sip:alice@a.example"
	if err := aNode.Publish(ctx, aor, lsp.Binding{Contact: "sip:alice@192.0.2.10", Expires: time.Now().Add(time.Hour), Q: 1}); err != nil {
		t.Fatal(err)
	}
	if err := openA.Publish(ctx, aor, lsp.Binding{Contact: "sip:alice@198.51.100.10", Expires: time.Now().Add(time.Hour), Q: 1}); err != nil {
		t.Fatal(err)
	}
	// Every member reads the federation's binding; the open overlay's nodes
	// read theirs: the stores are separate although they share a process.
	for i := range fed.Manifest.Nodes {
		bs, err := fed.Node(i).Location().Lookup(ctx, aor)
		if err != nil || len(bs) != 1 || bs[0].Contact != "sip:alice@192.0.2.10" {
			t.Fatalf("federation node %d: %+v, %v", i, bs, err)
		}
	}
	for i := range open.Manifest.Nodes {
		bs, err := open.Node(i).Location().Lookup(ctx, aor)
		if err != nil || len(bs) != 1 || bs[0].Contact != "sip:alice@198.51.100.10" {
			t.Fatalf("open node %d: %+v, %v", i, bs, err)
		}
	}
	// Each member exports its member certificate's expiry (lsnode ca sign
	// issues them for a year here).
	for i := range fed.Manifest.Nodes {
		mf := gather(t, fed.Node(i))["lsnode_overlay_member_certificate_expiry_timestamp_seconds"]
		if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() < float64(time.Now().Add(300*24*time.Hour).Unix()) {
			t.Fatalf("federation node %d: member certificate expiry %v", i, mf)
		}
	}
	// a.example's member cannot write b.example.
	bob := "sip:bob@b.example"
	if err := aNode.Publish(ctx, bob, lsp.Binding{Contact: "sip:mallory@203.0.113.9", Expires: time.Now().Add(time.Hour), Q: 1}); !errors.Is(err, lsp.ErrForbidden) {
		t.Fatalf("a.example writing %s: %v, want ErrForbidden", bob, err)
	}
	if bs, err := fed.Node(domainNodes(fed, "b.example")[0]).Location().Lookup(ctx, bob); len(bs) != 0 {
		t.Fatalf("%s after the refused write: %+v, %v", bob, bs, err)
	}

	// A sixth node: the open testnet's config of node 3 pointed at the
	// federation (its bootstrap, its overlay name), as an outsider would.
	outsider := func(t *testing.T, tweak func(c *node.Config)) error {
		cfg, err := node.LoadConfig(filepath.Join(open.Dir, open.Manifest.Nodes[3].Config))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Overlay.Name = "fed"
		cfg.Overlay.Bootstrap = fed.Manifest.Nodes[0].Multiaddrs
		cfg.Overlay.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		tweak(cfg)
		n, err := node.New(ctx, cfg, node.Options{InMemory: true, Logger: quiet(), JoinTimeout: 5 * time.Second})
		if err == nil {
			n.Close()
		}
		return err
	}
	fedDir := filepath.Join(fed.Dir, testnet.FederationDir)
	wrongKey := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(wrongKey, pki.NewPSK(), 0o600); err != nil {
		t.Fatal(err)
	}
	member := func(c *node.Config) {
		c.Overlay.MemberCA = []string{filepath.Join(fedDir, pki.CACertFile)}
		c.Overlay.PSKFile = filepath.Join(fedDir, pki.PSKFile)
		c.Overlay.MemberCert = filepath.Join(t.TempDir(), "member.pem")
		id, err := overlay.LoadIdentity(c.Path(c.Overlay.IdentityKey))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := overlay.PeerIDOf(id)
		if _, err := overlay.SignMember(fedDir, pid, "fed", time.Hour, c.Overlay.MemberCert); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		what  string
		tweak func(c *node.Config)
		want  string
	}{
		{"no key, no certificate", func(c *node.Config) {}, "its members need its key"},
		{"wrong key", func(c *node.Config) { member(c); c.Overlay.PSKFile = wrongKey }, "is not the overlay's"},
		{"key but no certificate", func(c *node.Config) {
			c.Overlay.MemberCA = []string{filepath.Join(fedDir, pki.CACertFile)}
			c.Overlay.PSKFile = filepath.Join(fedDir, pki.PSKFile)
		}, "no member certificate"},
	} {
		start := time.Now()
		err := outsider(t, c.tweak)
		t.Logf("%s: %v (%v)", c.what, err, time.Since(start).Round(time.Millisecond))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: node.New = %v, want an error containing %q", c.what, err, c.want)
		}
	}
	// With a member certificate and the key, the same node joins.
	if err := outsider(t, member); err != nil {
		t.Fatalf("enrolled node: %v", err)
	}
}
