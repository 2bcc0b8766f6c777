package sipnet

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// TLS, in a Config, also serves SIP over TLS (RFC 3261 §26.3.1).
type TLS struct {
	Addr   string      // host:port; "" serves no TLS (Client still applies)
	Config *tls.Config // server side, with the domain certificate
	// Client is used for TLS connections the stack opens (the proxy's
	// peering: client certificate and the peers it trusts).
	Client *tls.Config
}

// LoadTLS builds the SIP TLS configs of a node with a domain certificate
// (certFile and keyFile, PEM) serving TLS on addr: the server asks for a
// client certificate and refuses one that does not chain to anchors (a
// UA may still connect without one); the client side (peering) presents
// the domain certificate and accepts only peers whose certificate chains
// to anchors. Whose certificate it is, is checked per request (CheckPeer).
func LoadTLS(certFile, keyFile, addr string, anchors *x509.CertPool) (*TLS, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: SIP TLS certificate: %v", ErrConfig, err)
	}
	server := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: anchors}
	client := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
		// Peers are dialled by address, so the name check of the default
		// verification cannot apply; the chain check below replaces it.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		}}
	return &TLS{Addr: addr, Config: server, Client: client}, nil
}
