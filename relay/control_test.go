package relay

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lsnode/lsnode/overlay"
)

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mediaNet starts three overlay members on loopback: the first runs a
// media relay configured by mc and serves the control protocol; the
// other two anchor calls on it (Remote).
func mediaNet(t *testing.T, mc MediaConfig) (*Media, peer.ID, *Remote, *Remote) {
	t.Helper()
	var ovs []*overlay.Overlay
	var boot []string
	for i := 0; i < 3; i++ {
		key, err := overlay.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		ov, err := overlay.New(context.Background(), overlay.Config{Name: "relay-test", Identity: key, Bootstrap: boot,
			GossipInterval: 100 * time.Millisecond, DisableDHTRefresh: true, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ov.Close() })
		if err := ov.Join(context.Background()); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			boot = ov.Addrs()
		}
		ovs = append(ovs, ov)
	}
	mc.IP, mc.Logger, mc.AllowSelf = "127.0.0.1", quiet(), true // every party is on loopback, this host
	m, err := NewMedia(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	proto := ovs[0].Protocol("media", "1.0.0")
	stop := ServeControl(ovs[0], proto, m)
	t.Cleanup(stop)
	ovs[0].Announce(MediaService, m.Endpoint())
	for _, ov := range ovs[1:] {
		waitUntil(t, 10*time.Second, "the relay's announcement", func() bool {
			return slices.Contains(ov.Services()[ovs[0].ID()], MediaService)
		})
	}
	return m, ovs[0].ID(), NewRemote(ovs[1], proto), NewRemote(ovs[2], proto)
}

func sessionOf(m *Media, owner, id string) *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byID[sessionKey{owner: owner, id: id}]
}

// udpOn binds a UDP socket on ip.
func udpOn(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func portOf(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

// received reports whether c receives a datagram while send runs every
// 20 ms, within d.
func received(c *net.UDPConn, d time.Duration, send func()) bool {
	deadline := time.Now().Add(d)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		send()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, _, err := c.ReadFromUDP(buf); err == nil {
			return true
		}
	}
	return false
}

// TestControlPeerPolicy: an overlay member's offer or answer naming
// loopback, private, CGNAT or link-local (cloud metadata) addresses is
// refused with ErrTarget and opens no session; with the relay's allow
// list covering loopback, the same offer is accepted and media flows.
func TestControlPeerPolicy(t *testing.T) {
	ctx := context.Background()
	m, _, a, _ := mediaNet(t, MediaConfig{MinPort: 45000, MaxPort: 45099, Allow: []*net.IPNet{{IP: net.IPv4(127, 0, 0, 2), Mask: net.CIDRMask(32, 32)}}, AllowSelf: true})
	target := udpOn(t, "127.0.0.1") // what an attacker aims the relay at
	for _, ip := range []string{"127.0.0.1", "10.1.2.3", "192.168.1.1", "100.64.0.1", "169.254.169.254", "::1", "fe80::1", "0.0.0.0", "224.0.0.1"} {
		if _, _, err := a.Offer(ctx, "call-"+ip, net.ParseIP(ip), 4000); !errors.Is(err, ErrTarget) {
			t.Errorf("offer naming %s: %v, want ErrTarget", ip, err)
		}
	}
	if n := m.Sessions(); n != 0 {
		t.Fatalf("%d sessions after refused offers", n)
	}

	// A call between an allowed party (127.0.0.2) and the target: the
	// answer naming the target is refused, and nothing the allowed party
	// sends reaches it.
	party := udpOn(t, "127.0.0.2")
	rip, rport, err := a.Offer(ctx, "call", net.ParseIP("127.0.0.2"), portOf(party))
	if err != nil {
		t.Fatalf("offer from an allowed address: %v", err)
	}
	if _, _, err := a.Answer(ctx, "call", net.ParseIP("127.0.0.1"), portOf(target)); !errors.Is(err, ErrTarget) {
		t.Fatalf("answer naming 127.0.0.1: %v, want ErrTarget", err)
	}
	sess := sessionOf(m, a.ov.ID().String(), "call")
	if rip != "127.0.0.1" || rport != sess.Port(1) {
		t.Fatalf("offer answered %s:%d, want the callee's leg %d", rip, rport, sess.Port(1))
	}
	toRelay := &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: sess.Port(0)} // where the caller sends
	if received(target, 500*time.Millisecond, func() { _, _ = party.WriteToUDP([]byte("rtp"), toRelay) }) {
		t.Fatal("the relay sent media to a refused address")
	}
	// The target sending to the callee's leg cannot latch it either.
	if received(target, 300*time.Millisecond, func() {
		_, _ = target.WriteToUDP([]byte("latch"), &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: sess.Port(1)})
		_, _ = party.WriteToUDP([]byte("rtp"), toRelay)
	}) {
		t.Fatal("the relay latched a refused address")
	}

	// Allowed: the whole of loopback.
	m2, _, b, _ := mediaNet(t, MediaConfig{MinPort: 45100, MaxPort: 45199, Allow: loopback()})
	if _, _, err := b.Offer(ctx, "call", net.ParseIP("127.0.0.2"), portOf(party)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Answer(ctx, "call", net.ParseIP("127.0.0.1"), portOf(target)); err != nil {
		t.Fatalf("answer naming allowed 127.0.0.1: %v", err)
	}
	sess2 := sessionOf(m2, b.ov.ID().String(), "call")
	toRelay2 := &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: sess2.Port(0)}
	_, _ = target.WriteToUDP([]byte("rtp"), &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: sess2.Port(1)}) // the callee speaks first: nothing goes to it before
	if !received(target, 3*time.Second, func() { _, _ = party.WriteToUDP([]byte("rtp"), toRelay2) }) {
		t.Fatal("with loopback allowed, media did not reach the callee")
	}
}

// TestMediaLatchPolicy: this node's proxy may anchor a NAT'd party whose
// SDP names a private address; the relay sends it nothing until its
// packets latch an address the policy allows, and a party at a
// restricted source never latches (unless allowed).
func TestMediaLatchPolicy(t *testing.T) {
	ctx := context.Background()
	for _, allow := range []bool{false, true} {
		mc := MediaConfig{IP: "127.0.0.1", MinPort: 45200, MaxPort: 45299, Logger: quiet(),
			Allow: []*net.IPNet{{IP: net.IPv4(127, 0, 0, 2), Mask: net.CIDRMask(32, 32)}}, AllowSelf: true}
		if allow {
			mc.Allow = loopback()
		}
		m, err := NewMedia(mc)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Offer(ctx, "c", net.ParseIP("169.254.169.254"), 80); !errors.Is(err, ErrTarget) {
			t.Fatalf("a local offer naming the metadata address: %v", err)
		}
		caller, natted := udpOn(t, "127.0.0.2"), udpOn(t, "127.0.0.1")
		if _, _, err := m.Offer(ctx, "c", net.ParseIP("127.0.0.2"), portOf(caller)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Answer(ctx, "c", net.ParseIP("10.0.0.5"), 5004); err != nil {
			t.Fatalf("a NAT'd callee's private address: %v", err)
		}
		s := sessionOf(m, "", "c")
		toCaller := &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: s.Port(0)}
		toCallee := &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: s.Port(1)}
		got := received(natted, time.Second, func() {
			_, _ = natted.WriteToUDP([]byte("latch"), toCallee) // the callee's first packet, from 127.0.0.1
			_, _ = caller.WriteToUDP([]byte("rtp"), toCaller)
		})
		if got != allow {
			t.Fatalf("loopback allowed %v: media reached the latched 127.0.0.1: %v", allow, got)
		}
		m.Close()
	}
}

// TestControlOwnership: a second member cannot end, answer (redirect) or
// take over the first one's session; its own session of the same call ID
// is apart.
func TestControlOwnership(t *testing.T) {
	ctx := context.Background()
	m, relayID, a, b := mediaNet(t, MediaConfig{MinPort: 45300, MaxPort: 45399, Allow: loopback()})
	caller, callee, evil := udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1")
	if _, _, err := a.Offer(ctx, "call", net.ParseIP("127.0.0.1"), portOf(caller)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Answer(ctx, "call", net.ParseIP("127.0.0.1"), portOf(callee)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.call(ctx, relayID, opEnd, "call", nil, 0); !errors.Is(err, ErrNoSession) {
		t.Fatalf("another member ended the call: %v", err)
	}
	if _, _, err := b.call(ctx, relayID, opAnswer, "call", net.ParseIP("127.0.0.1"), portOf(evil)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("another member redirected the call: %v", err)
	}
	if _, _, err := b.call(ctx, relayID, opOffer, "call", net.ParseIP("127.0.0.1"), portOf(evil)); err != nil {
		t.Fatalf("another member's own session of the same call ID: %v", err)
	}
	if n := m.Sessions(); n != 2 {
		t.Fatalf("%d sessions, want a's and b's", n)
	}
	s := sessionOf(m, a.ov.ID().String(), "call")
	toRelay := &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: s.Port(0)}
	_, _ = callee.WriteToUDP([]byte("rtp"), &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: s.Port(1)}) // the callee speaks first
	if !received(callee, 3*time.Second, func() { _, _ = caller.WriteToUDP([]byte("rtp"), toRelay) }) {
		t.Fatal("a's call lost its media")
	}
	if received(evil, 300*time.Millisecond, func() { _, _ = caller.WriteToUDP([]byte("rtp"), toRelay) }) {
		t.Fatal("a's media went to b's address")
	}
	a.End("call")
	waitUntil(t, 3*time.Second, "a's session to end", func() bool { return m.Sessions() == 1 })
	if m.Has("call") {
		t.Fatal("a remote session shows as this node's proxy's")
	}
}

// TestControlQuotas: a member holds at most MaxPerPeer sessions, and
// the relay at most what its port range holds: the next offer is
// refused with a clear error, never given a session on used ports.
func TestControlQuotas(t *testing.T) {
	ctx := context.Background()
	// 16 ports: four sessions at most.
	m, relayID, a, b := mediaNet(t, MediaConfig{MinPort: 45400, MaxPort: 45415, MaxPerPeer: 3, Allow: loopback()})
	for i := 0; i < 3; i++ {
		if _, _, err := a.Offer(ctx, string(rune('a'+i)), net.ParseIP("127.0.0.1"), 4000); err != nil {
			t.Fatalf("a's session %d: %v", i+1, err)
		}
	}
	if _, _, err := a.Offer(ctx, "d", net.ParseIP("127.0.0.1"), 4000); !errors.Is(err, ErrQuota) {
		t.Fatalf("a's fourth session: %v, want ErrQuota", err)
	}
	if _, _, err := b.Offer(ctx, "x", net.ParseIP("127.0.0.1"), 4000); err != nil {
		t.Fatalf("b within its own quota: %v", err)
	}
	if _, _, err := b.call(ctx, relayID, opOffer, "y", net.ParseIP("127.0.0.1"), 4000); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("a fifth session in a range of four: %v, want ErrNoPorts", err)
	}
	if _, err := m.Session("local"); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("the proxy's session past the range: %v, want ErrNoPorts", err)
	}
	ports := map[int]bool{}
	m.mu.Lock()
	for _, s := range m.byID {
		for i := range s.legs {
			ports[s.Port(i)] = true
		}
	}
	n := len(m.byID)
	m.mu.Unlock()
	if n != 4 || len(ports) != 8 {
		t.Fatalf("%d sessions on %d RTP ports, want 4 on 8", n, len(ports))
	}
	a.End("a")
	waitUntil(t, 3*time.Second, "a's session to end", func() bool { return m.Sessions() == 3 })
	if _, _, err := b.Offer(ctx, "y", net.ParseIP("127.0.0.1"), 4000); err != nil {
		t.Fatalf("an offer once a session ended: %v", err)
	}
}
