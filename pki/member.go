package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// memberScheme is the URI SAN scheme that names the overlay a member
// certificate is for: "lsnode:member:<overlay>".
const memberScheme = "lsnode"

// MemberURI returns the SAN a member certificate of overlay name carries.
func MemberURI(name string) string { return memberScheme + ":member:" + name }

// overlayNameRE is the overlay name rule of package overlay's Config: a
// member certificate is only issued for an overlay that can exist.
var overlayNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// IssueMember signs a member certificate of overlay name for the node whose
// identity key is pub and whose peer ID (text form, the certificate's
// common name) is peerID, valid from now for validity.
func (ca *CA) IssueMember(pub ed25519.PublicKey, peerID, name string, validity time.Duration) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: peer %s: member certificates need an Ed25519 identity", ErrConfig, peerID)
	}
	if !overlayNameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: overlay name %q", ErrConfig, name)
	}
	u, _ := url.Parse(MemberURI(name))
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: peerID, OrganizationalUnit: []string{name}},
		URIs:         []*url.URL{u},
		NotBefore:    time.Now().Add(-5 * time.Minute),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: issue member certificate: %w", err)
	}
	return der, nil
}
