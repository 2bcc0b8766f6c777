package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// TLS peer identity (RFC 5922). The SIP stack's TLS client checks only that
// a peer's certificate chains to the trust anchors (it dials addresses, not
// names); whose certificate it is, is checked here, where the proxy knows
// which domain it is sending to: before a request leaves on a TLS
// connection, the peer's certificate must name that domain. As a server,
// the domain of a peer's client certificate is the only one it may send
// requests from.

// ErrPeerIdentity: a TLS peer's certificate does not name the domain.
var ErrPeerIdentity = errors.New("proxy: TLS peer identity")

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

// certNames reports whether c is a certificate of domain.
func certNames(c *x509.Certificate, domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, d := range CertDomains(c) {
		if d == domain {
			return true
		}
	}
	return false
}

// peerCert is the certificate a TLS connection's peer presented (nil when
// conn is no TLS connection or the peer sent none).
func peerCert(conn sip.Connection) *x509.Certificate {
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

// transaction starts out's client transaction. For a TLS target whose
// domain is known, the connection's peer must present a certificate of
// that domain, or nothing is sent.
func (p *Proxy) transaction(ctx context.Context, out *sip.Request, t target) (sip.ClientTransaction, error) {
	if t.tr != "TLS" || t.peer == "" || p.txl == nil {
		return p.client.TransactionRequest(ctx, out, asIs)
	}
	tx, err := p.txl.NewClientTransaction(ctx, out)
	if err != nil {
		return nil, err
	}
	if c := peerCert(tx.Connection()); c == nil || !certNames(c, t.peer) {
		tx.Terminate()
		var names []string
		if c != nil {
			names = CertDomains(c)
		}
		return nil, fmt.Errorf("%w: %s presented a certificate for %v, not %s", ErrPeerIdentity, t.dest, names, t.peer)
	}
	if err := tx.Init(); err != nil {
		tx.Terminate()
		return nil, err
	}
	return tx, nil
}

// tlsPeerDomains returns the domains of the client certificate of the TLS
// connection req came on: nil when it came on no TLS connection or one
// without a client certificate; ok false when the connection is gone (the
// request is then refused: no identity, no benefit of the doubt).
func (p *Proxy) tlsPeerDomains(req *sip.Request) (domains []string, ok bool) {
	if p.tpl == nil || !strings.EqualFold(req.Transport(), "TLS") {
		return nil, true
	}
	conn, err := p.tpl.GetConnection("tls", req.Source())
	if err != nil || conn == nil {
		return nil, false
	}
	if c := peerCert(conn); c != nil {
		return CertDomains(c), true
	}
	return nil, true
}

// writeStateless sends out (an ACK) to t without a transaction; on a TLS
// connection only to a peer of t.peer, as transaction does.
func (p *Proxy) writeStateless(ctx context.Context, out *sip.Request, t target) error {
	if t.tr != "TLS" || t.peer == "" || p.tpl == nil {
		return p.client.WriteRequest(out, asIs)
	}
	conn, err := p.tpl.ClientRequestConnection(ctx, out)
	if err != nil {
		return err
	}
	defer conn.TryClose() // as sipgo's own WriteRequest does
	if c := peerCert(conn); c == nil || !certNames(c, t.peer) {
		return fmt.Errorf("%w: %s is not %s", ErrPeerIdentity, t.dest, t.peer)
	}
	return conn.WriteMsg(out)
}

// nameOf is the domain a TLS connection to host must be for: host itself
// when it is a name, "" for an address (the chain check alone applies).
func nameOf(host string) string {
	if host == "" || net.ParseIP(strings.Trim(host, "[]")) != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
