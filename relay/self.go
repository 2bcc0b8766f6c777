package relay

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// selfRefresh: how often the host's interface addresses are read again
// (an address a DHCP lease or an operator adds is refused within it).
const selfRefresh = 10 * time.Second

// selfAddrs tells whether an IP is one of this host's own: a loopback,
// unspecified, multicast or broadcast address, an address of one of its
// interfaces or its subnet's broadcast or network address, one the relay
// was configured with (its relay and listener addresses), or a NAT64 or
// 6to4 form of any of these. A relay that sent there would carry a TURN user's or an SDP's packets to
// the node's own SIP, TURN and media ports (and any other service on the
// host) from the node's own address, which the node may trust.
type selfAddrs struct {
	extra []netip.Addr

	mu   sync.Mutex
	read time.Time
	ips  map[netip.Addr]bool
}

func newSelfAddrs(extra ...net.IP) *selfAddrs {
	s := &selfAddrs{}
	for _, ip := range extra {
		if a, ok := netip.AddrFromSlice(ip); ok {
			s.extra = append(s.extra, a.Unmap())
		}
	}
	return s
}

// has reports whether ip is one of the host's own addresses.
func (s *selfAddrs) has(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	// All of 127/8 and ::1, the unspecified address, multicast and the
	// limited broadcast reach this host's own services too.
	if a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	if v4, ok := embeddedIPv4(a); ok && s.has(v4.AsSlice()) { // NAT64 or 6to4 of one of ours
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); s.ips == nil || now.Sub(s.read) > selfRefresh {
		s.reload(now)
	}
	return s.ips[a]
}

// embeddedIPv4 is the IPv4 address a NAT64 (64:ff9b::/96) or 6to4
// (2002::/16) address carries.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case a.Is4():
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// reload reads the interfaces' addresses; when they cannot be read, the
// last ones read stay (and the configured ones always count).
func (s *selfAddrs) reload(now time.Time) {
	s.read = now
	addrs, err := net.InterfaceAddrs()
	if err != nil && s.ips != nil {
		return
	}
	ips := make(map[netip.Addr]bool, len(addrs)+len(s.extra))
	for _, a := range s.extra {
		ips[a] = true
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			ips[ip.Unmap()] = true
		}
		// An IPv4 subnet's broadcast (and network) address reaches this
		// host's services on 0.0.0.0 too (and its neighbours').
		mask := n.Mask
		if len(mask) == net.IPv6len && n.IP.To4() != nil {
			mask = mask[12:]
		}
		if v4 := n.IP.To4(); v4 != nil && len(mask) == net.IPv4len {
			var bcast, network [4]byte
			for i := range 4 {
				bcast[i], network[i] = v4[i]|^mask[i], v4[i]&mask[i]
			}
			ips[netip.AddrFrom4(bcast)], ips[netip.AddrFrom4(network)] = true, true
		}
	}
	s.ips = ips
}
