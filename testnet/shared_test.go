package testnet_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/testnet"
)

// TestSharedLocalLocation is p2p-ipcom §4's local location service reached
// through the LSP: a.example runs two local-mode front-ends that share a
// private domain overlay. A sipp UAS registers alice at the first; a sipp
// UAC calls alice through the second, and again after the first is
// stopped (the binding is replicated on both). alice's binding never
// enters the public overlay. A node holding another private-network key
// cannot join the domain overlay. A front-end restarted while the other is
// down takes REGISTERs alone. In hybrid mode the binding is in both
// overlays.
func TestSharedLocalLocation(t *testing.T) {
	for _, mode := range []string{"local", "hybrid"} {
		t.Run(mode, func(t *testing.T) { sharedLocation(t, mode) })
	}
}

func sharedLocation(t *testing.T, mode string) {
	ports := map[string]int{} // a.example node name → its domain-overlay port
	domainAddr := func(m *testnet.Manifest, name string) string {
		for _, n := range m.Nodes {
			if n.Name == name {
				return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", ports[name], n.PeerID)
			}
		}
		panic("no node " + name)
	}
	m, nw := startCallNet(t, func(m *testnet.Manifest, c *node.Config) {
		if len(ports) == 0 {
			for _, n := range m.Nodes {
				if n.Domain == "a.example" {
					ports[n.Name] = stablePort(t)
				}
			}
		}
		if c.Domain != "a.example" {
			return
		}
		c.Registrar.Mode = mode
		c.Registrar.DomainOverlay.Listen = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", ports[c.Name])}
		for name := range ports {
			if name != c.Name {
				c.Registrar.DomainOverlay.Bootstrap = append(c.Registrar.DomainOverlay.Bootstrap, domainAddr(m, name))
			}
		}
	})
	aNodes := domainNodes(nw, "a.example")
	if len(aNodes) != 2 {
		t.Fatalf("a.example has %d nodes, want 2", len(aNodes))
	}
	a0, a1 := aNodes[0], aNodes[1]
	waitFor(t, 30*time.Second, "the two front-ends in each other's domain overlay", func() error {
		for _, i := range aNodes {
			if _, ov := nw.Node(i).DomainLocation(); ov == nil || len(ov.Members()) != 2 {
				return fmt.Errorf("node %d: no domain overlay of 2", i)
			}
		}
		return nil
	})

	alice := domainUser(m, "a.example", 0)
	user := strings.TrimPrefix(strings.Split(alice.AOR, "@")[0], "sip:")
	uasPort := freeUDPPort(t)
	uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "2", "-timeout", "50s")
	register := func(at, port int) error { // alice's REGISTER at front-end at, Contact on port
		return sippRun{registrar: nw.Node(at).SIPAddr(), user: user, authUser: alice.Username, pass: alice.Password,
			domain: "a.example", contact: fmt.Sprintf("<sip:%s@127.0.0.1:%d>", user, port), expires: 600, final: 200}.run(t)
	}
	if err := register(a0, uasPort); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	public := 0 // bindings of alice in the public overlay: none in local mode
	if mode == "hybrid" {
		public = 1
	}
	if bs, err := nw.Node(domainNodes(nw, "b.example")[0]).Location().Lookup(ctx, alice.AOR); err != nil || len(bs) != public {
		t.Errorf("the public overlay's lookup of %s: %d bindings, %v; want %d", alice.AOR, len(bs), err, public)
	}
	shared, _ := nw.Node(a1).DomainLocation()
	if bs, err := shared.Lookup(ctx, alice.AOR); err != nil || len(bs) != 1 {
		t.Errorf("the domain overlay's lookup of %s at a1: %d bindings, %v; want 1", alice.AOR, len(bs), err)
	}
	call := func(via int) {
		t.Helper()
		uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(via).SIPAddr(),
			"-s", user, "-key", "domain", "a.example", "-m", "1", "-timeout", "30s")
		if err := uac.wait(45 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	call(a1)
	if st := nw.Node(a1).Proxy().Stats(); st.Lookups < 1 {
		t.Errorf("a1's proxy: %+v, want the call placed by a lookup", st)
	}

	// A node with another key is refused at the handshake.
	key, err := overlay.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	psk := make([]byte, 32)
	_, _ = rand.Read(psk)
	intruder, err := overlay.New(ctx, overlay.Config{Name: "domain.a.example", Identity: key, PrivateNetwork: psk,
		Bootstrap: []string{domainAddr(m, m.Nodes[a0].Name)}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	if err := intruder.Join(ctx); !errors.Is(err, overlay.ErrMembership) {
		t.Errorf("join with another private-network key: %v, want a membership error", err)
	}
	if _, ov := nw.Node(a0).DomainLocation(); len(ov.Members()) != 2 {
		t.Errorf("a0's domain overlay has %d members after the intruder, want 2", len(ov.Members()))
	}

	// The binding outlives the front-end that took it.
	if err := nw.StopNode(a0); err != nil {
		t.Fatal(err)
	}
	call(a1)
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	// A front-end that starts while the others are down serves alone.
	if err := nw.StopNode(a1); err != nil {
		t.Fatal(err)
	}
	if err := nw.StartNode(ctx, a1); err != nil {
		t.Fatal(err)
	}
	if err := register(a1, uasPort+1); err != nil {
		t.Fatalf("REGISTER at a front-end whose peers are down: %v", err)
	}
}

// stablePort returns a TCP port free on 127.0.0.1 below the ephemeral
// range (32768 up), so that no listener on port 0 (the testnet's nodes)
// takes it between this check and the node's own listen.
func stablePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + mrand.IntN(12000)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port in 20000-31999")
	return 0
}
