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

// selfAddrs tells whether an IP is one of this host's own: a loopback
// address, an address of one of its interfaces, or one the relay was
// configured with (its relay
// and listener addresses, which a 1:1 NAT's public address may be). A
// relay that sent there would carry a TURN user's or an SDP's packets to
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
	if a.IsLoopback() { // all of 127/8 and ::1 reach this host
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); s.ips == nil || now.Sub(s.read) > selfRefresh {
		s.reload(now)
	}
	return s.ips[a]
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
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				ips[ip.Unmap()] = true
			}
		}
	}
	s.ips = ips
}
