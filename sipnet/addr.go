package sipnet

import (
	"net"
	"strings"
)

// BehindNAT reports whether a Contact host is a private address other than
// the source ("ip:port") its request came from: its UA is behind a NAT
// (RFC 3581: reach it at the source instead).
func BehindNAT(contactHost, source string) bool {
	src, _, err := net.SplitHostPort(source)
	ip := net.ParseIP(strings.Trim(contactHost, "[]"))
	if err != nil || ip == nil || !PrivateAddr(ip) {
		return false
	}
	return !ip.Equal(net.ParseIP(src))
}

// NeedsFlow reports whether a UA whose Contact host is contactHost, whose
// request came from source over transport, is reached only through the
// connection or NAT mapping its request came by: behind a NAT, or on a
// WebSocket (RFC 7118 §5: a WebSocket client cannot be connected to; its
// Contact host is often a made-up ".invalid" name).
func NeedsFlow(contactHost, source, transport string) bool {
	return IsWS(transport) || BehindNAT(contactHost, source)
}

// IsWS reports whether transport is SIP over WebSocket (WS or WSS).
func IsWS(transport string) bool {
	return strings.EqualFold(transport, "WS") || strings.EqualFold(transport, "WSS")
}

// PrivateAddr: RFC 1918, IPv6 ULA or RFC 6598 shared (carrier NAT) space.
func PrivateAddr(ip net.IP) bool {
	v4 := ip.To4()
	return ip.IsPrivate() || v4 != nil && v4[0] == 100 && v4[1]&0xc0 == 64
}

// InNetworks reports whether source ("ip:port") is in one of nets.
func InNetworks(source string, nets []*net.IPNet) bool {
	host, _, err := net.SplitHostPort(source)
	ip := net.ParseIP(host)
	if err != nil || ip == nil {
		return false
	}
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// HostOrLink: an address on this host or its link (loopback, unspecified,
// link-local, multicast), where the node's own services and cloud metadata
// endpoints are.
func HostOrLink(ip net.IP) bool {
	return ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsMulticast()
}

// Loopback is the default trusted network list of both SIP roles: this
// host.
func Loopback() []*net.IPNet {
	return []*net.IPNet{{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)},
		{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)}}
}
