package testnet_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/pki"
	"github.com/lsnode/lsnode/testnet"
	"github.com/lsnode/lsnode/ua"
)

// TestUAOwnRegistrar is p2p-ipcom §4's "pure" P2P: a UA holding an AOR
// certificate its domain issued (pki.IssueAORFiles, as 'lsnode domain aor')
// publishes and refreshes its own binding through an overlay-only member,
// with no registrar. A sipp call through b.example's proxy reaches it, and
// no node of a.example sees a request. Its certificate cannot publish
// another AOR, and the binding is gone once the UA stops.
func TestUAOwnRegistrar(t *testing.T) {
	dir := t.TempDir()
	m, nw := startCallNetOf(t, testnet.Spec{Dir: dir, Nodes: 6, PerDomain: 2}, nil)
	var dom testnet.DomainInfo
	for _, d := range m.Domains {
		if d.Name == "a.example" {
			dom = d
		}
	}
	carol := "sip:carol@a.example" // not a registrar user: no registrar knows her
	cert, key, err := pki.IssueAORFiles(filepath.Join(dir, dom.Cert), filepath.Join(dir, dom.Key), carol, t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := lsp.LoadCredential(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	var via []string // an overlay-only member
	for _, n := range m.Nodes {
		if n.Domain == "" {
			via = n.Multiaddrs
			break
		}
	}
	target, err := ua.Target(m.Overlay, via, []string{filepath.Join(dir, m.CA)}, "")
	if err != nil {
		t.Fatal(err)
	}
	uasPort := freeUDPPort(t)
	uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "1", "-timeout", "40s")
	cfg := target
	cfg.Credential, cfg.AOR, cfg.Contact, cfg.Expires = cred, carol, fmt.Sprintf("sip:carol@127.0.0.1:%d", uasPort), 4*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := ua.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "a refresh", func() error {
		if n, err := p.Refreshes(); n < 1 {
			return fmt.Errorf("%d refreshes (%v)", n, err)
		}
		return nil
	})

	b := domainNodes(nw, "b.example")[0]
	bs, err := nw.Node(b).Location().Lookup(ctx, carol)
	if err != nil || len(bs) != 1 || bs[0].Signer != carol || bs[0].Contact != cfg.Contact {
		t.Fatalf("b.example's lookup of %s: %+v %v, want the UA's binding signed by its AOR certificate", carol, bs, err)
	}
	bypassCall(t, nw, b, "carol", "a.example", domainNodes(nw, "a.example"), uas)

	bob := cfg
	bob.AOR = "sip:bob@a.example"
	if _, err := ua.Publish(ctx, bob); !errors.Is(err, ua.ErrConfig) {
		t.Errorf("carol's certificate publishing bob: %v, want refused", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if bs, err := nw.Node(b).Location().Lookup(ctx, carol); err != nil || len(bs) != 0 {
		t.Errorf("after the UA stopped: %+v %v, want no binding", bs, err)
	}

	// A certificate about to expire: refreshing stops, and says why.
	cert, key, err = pki.IssueAORFiles(filepath.Join(dir, dom.Cert), filepath.Join(dir, dom.Key), carol, t.TempDir(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Credential, err = lsp.LoadCredential(cert, key); err != nil {
		t.Fatal(err)
	}
	cfg.Expires = 2 * time.Second
	short, err := ua.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-short.Stopped():
		if _, err := short.Refreshes(); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Errorf("refreshing stopped with %v, want the credential's expiry", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("still refreshing 10 s after a 3 s certificate")
	}
}
