package relay

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestSelfAddrs: every address of this host's interfaces and its subnet's
// broadcast, every loopback, unspecified, multicast or broadcast address,
// the configured ones, and NAT64 or 6to4 forms of them are the host's own;
// another is not.
func TestSelfAddrs(t *testing.T) {
	s := newSelfAddrs(net.ParseIP("203.0.113.9"))
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if !s.has(n.IP) {
			t.Errorf("%s, an address of this host's interfaces, is not its own", n.IP)
		}
		if v4 := n.IP.To4(); v4 != nil {
			ones, bits := n.Mask.Size()
			ones -= bits - 32 // a 16-byte mask of an IPv4 address
			mask, bcast := net.CIDRMask(ones, 32), make(net.IP, 4)
			for i := range 4 {
				bcast[i] = v4[i] | ^mask[i]
			}
			if ones < 31 && !s.has(bcast) {
				t.Errorf("%s, the broadcast address of %s, is not this host's own", bcast, n)
			}
		}
	}
	for _, a := range []string{"127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1", "203.0.113.9", "::ffff:203.0.113.9",
		"0.0.0.0", "::", "224.0.0.1", "239.1.2.3", "ff02::1", "255.255.255.255", "64:ff9b::7f00:1", "64:ff9b::cb00:7109", "2002:cb00:7109::1"} {
		if !s.has(net.ParseIP(a)) {
			t.Errorf("%s is not this host's own", a)
		}
	}
	for _, a := range []string{"198.51.100.7", "2001:db8::7", "64:ff9b::c633:6407"} {
		if s.has(net.ParseIP(a)) {
			t.Errorf("%s is taken for this host's own", a)
		}
	}
}

// TestAttackTURNReachesOwnHost: a TURN user (any SIP user) relays to this
// host's own services (the node's SIP port here) from the host's own
// address, although Allow admits the address (an operator allowing the
// network the relay itself is on). Refused without AllowSelf; with it (a
// testnet on loopback) the same packets go through, so the test sees them.
func TestAttackTURNReachesOwnHost(t *testing.T) {
	svc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) // the node's SIP port
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	for _, self := range []bool{false, true} {
		s := startTURN(t, loopback(), func(c *Config) { c.AllowSelf = self })
		user, pass := s.Credentials("mallory@a.example", time.Hour)
		relayed, err := turnClient(t, s, "udp", user, pass).Allocate()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = relayed.WriteTo([]byte("OPTIONS sip:x SIP/2.0\r\n"), svc.LocalAddr())
		_, _ = relayed.WriteTo([]byte("OPTIONS sip:x SIP/2.0\r\n"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: svc.LocalAddr().(*net.UDPAddr).Port})
		buf := make([]byte, 1500)
		_ = svc.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := svc.ReadFromUDP(buf)
		switch {
		case !self && err == nil:
			t.Errorf("a TURN user reached this host's service %s: %q from %s", svc.LocalAddr(), buf[:n], from)
		case !self && s.Denied() < 2:
			t.Errorf("without AllowSelf: %d permissions to this host refused, want 2", s.Denied())
		case self && err != nil:
			t.Errorf("with AllowSelf the relay does not reach this host (the test sees nothing): %v", err)
		}
		relayed.Close()
	}
}

// TestAttackMediaToOwnHost: an SDP (any SIP sender's INVITE) naming this
// host's own address would point the RTP relay's stream at the node's own
// services: refused without AllowSelf although Allow admits loopback.
func TestAttackMediaToOwnHost(t *testing.T) {
	for _, self := range []bool{false, true} {
		m, err := NewMedia(MediaConfig{IP: "127.0.0.1", MinPort: 43400, MaxPort: 43499, Allow: loopback(), AllowSelf: self, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = m.Offer(context.Background(), "c1|t", net.IPv4(127, 0, 0, 1), 5060)
		if !self && !errors.Is(err, ErrTarget) {
			t.Errorf("an offer naming this host (127.0.0.1:5060): %v, want %v", err, ErrTarget)
		}
		if self && err != nil {
			t.Errorf("with AllowSelf: %v", err)
		}
		m.Close()
	}
}

// TestRestrictedSpecialPurpose: the special-purpose blocks no public peer
// is on, and IPv6 addresses that carry a restricted IPv4 one, are denied;
// public addresses, also carried in NAT64 and 6to4, are not.
func TestRestrictedSpecialPurpose(t *testing.T) {
	for _, a := range []string{
		"192.0.0.192", "198.18.0.1", "198.19.255.254", "240.0.0.1", "0.1.2.3", "255.255.255.255",
		"64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b:1::a00:1",
		"2002:a9fe:a9fe::1", "2002:7f00:1::1", "::7f00:1", "::1.2.3.4", "fec0::1", "100::1", "2001:0:4136:e378::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "fd00:ec2::254", "100.100.100.200",
	} {
		if !Restricted(net.ParseIP(a)) {
			t.Errorf("Restricted(%s) = false", a)
		}
	}
	for _, a := range []string{"198.51.100.7", "203.0.113.5", "8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2001:db8::1", "2606:4700::1111", "192.0.1.1", "198.20.0.1"} {
		if Restricted(net.ParseIP(a)) {
			t.Errorf("Restricted(%s) = true: a public peer", a)
		}
	}
}
