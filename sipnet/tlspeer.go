package sipnet

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// TLS peer identity (RFC 5922). The stack's TLS client checks only that a
// peer's certificate chains to the trust anchors (it dials addresses, not
// names); whose certificate it is, is checked by the role that knows which
// domain it is sending to: before a request leaves on a TLS connection,
// CheckPeer must find that domain in the peer's certificate. As a server,
// the domains of a peer's client certificate (PeerCert, CertDomains) are
// the only ones it may send requests from.

// CertDomains returns the SIP domains a certificate is for (RFC 5922 §7.1):
// the hosts of its sip: URI SANs if it has any, else its DNS SANs, else
// its subject's common name. Wildcard names are never a SIP domain (§7.2).
func CertDomains(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "sip") && u.Opaque != "" && !strings.Contains(u.Opaque, "@") {
			out = append(out, strings.ToLower(u.Opaque))
		}
	}
	if len(out) > 0 {
		return out
	}
	names := c.DNSNames
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = []string{c.Subject.CommonName}
	}
	for _, n := range names {
		if !strings.Contains(n, "*") {
			out = append(out, strings.ToLower(strings.TrimSuffix(n, ".")))
		}
	}
	return out
}

// CertNames reports whether c is a certificate of domain.
func CertNames(c *x509.Certificate, domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, d := range CertDomains(c) {
		if d == domain {
			return true
		}
	}
	return false
}

// PeerCert is the certificate a TLS connection's peer presented (nil when
// conn is no TLS connection or the peer sent none).
func PeerCert(conn sip.Connection) *x509.Certificate {
	tc, ok := conn.(*sip.TCPConnection)
	if !ok {
		return nil
	}
	c, ok := tc.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := c.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0]
}

// CheckPeer returns nil when the peer of conn presented a certificate of
// domain, else an ErrPeerIdentity naming what it presented.
func CheckPeer(conn sip.Connection, domain string) error {
	c := PeerCert(conn)
	if c != nil && CertNames(c, domain) {
		return nil
	}
	var names []string
	if c != nil {
		names = CertDomains(c)
	}
	return fmt.Errorf("%w: certificate for %v, not %s", ErrPeerIdentity, names, domain)
}

// PeerName is the domain a TLS connection to host must be for: host itself
// when it is a name, "" for an address (the chain check alone applies).
func PeerName(host string) string {
	if host == "" || net.ParseIP(strings.Trim(host, "[]")) != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
