package pki

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MaxAORValidity bounds an AOR certificate's life: nothing revokes one
// before it expires (the domain stops renewing it instead).
const MaxAORValidity = 90 * 24 * time.Hour

// IssueAOR issues an AOR certificate (p2p-ipcom §4's UA that is its own
// registrar): its one URI SAN is aor, a SIP URI of a domain the domain
// certificate covers, for a new Ed25519 key, signed by the domain's own
// credential (domainCert and its key), not by a CA. The location service
// accepts it for writes of that AOR alone, and only while the domain
// certificate verifies; it carries no DNS name, so it speaks for no other
// AOR of the domain. aor must be canonical (lsp.Canonical).
func IssueAOR(domainCert *x509.Certificate, domainKey crypto.Signer, aor string, validity time.Duration) (der []byte, key ed25519.PrivateKey, err error) {
	if validity <= 0 || validity > MaxAORValidity {
		return nil, nil, fmt.Errorf("%w: validity %v: want up to %v", ErrConfig, validity, MaxAORValidity)
	}
	u, err := aorURI(aor)
	if err != nil {
		return nil, nil, err
	}
	host := u.Opaque[strings.LastIndexByte(u.Opaque, '@')+1:]
	if err := domainCert.VerifyHostname(host); err != nil {
		return nil, nil, fmt.Errorf("%w: the domain certificate %q does not cover %s: %v", ErrConfig, domainCert.Subject.CommonName, aor, err)
	}
	if domainCert.IsCA {
		return nil, nil, fmt.Errorf("%w: %q is a CA certificate: an AOR certificate is signed by a domain's credential", ErrConfig, domainCert.Subject.CommonName)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: aor},
		URIs:         []*url.URL{u},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if der, err = x509.CreateCertificate(rand.Reader, tmpl, domainCert, pub, domainKey); err != nil {
		return nil, nil, fmt.Errorf("pki: issue %s: %w", aor, err)
	}
	return der, key, nil
}

// aorURI parses a sip: or sips: AOR of the form scheme:user@host, nothing
// more (no port, parameters or headers).
func aorURI(aor string) (*url.URL, error) {
	u, err := url.Parse(aor)
	if err != nil || (u.Scheme != "sip" && u.Scheme != "sips") || u.Opaque == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: %q is not an AOR (want sip:USER@DOMAIN)", ErrConfig, aor)
	}
	user, host, ok := strings.Cut(u.Opaque, "@")
	if !ok || user == "" || !ValidDNSName(host) || strings.ContainsAny(u.Opaque, ";?:/") {
		return nil, fmt.Errorf("%w: %q is not an AOR (want sip:USER@DOMAIN)", ErrConfig, aor)
	}
	if u.String() != aor {
		return nil, fmt.Errorf("%w: %q is not in its canonical form %q", ErrConfig, aor, u.String())
	}
	return u, nil
}

// IssueAORFiles issues an AOR certificate with the domain credential in
// certFile and keyFile (the node's cert_file and key_file) and writes it,
// followed by the domain's chain, and its new key to outDir as
// USER@DOMAIN.pem and USER@DOMAIN.key. It refuses to overwrite either.
func IssueAORFiles(certFile, keyFile, aor, outDir string, validity time.Duration) (cert, key string, err error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return "", "", fmt.Errorf("%w: domain credential: %v", ErrConfig, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return "", "", fmt.Errorf("%w: %s cannot sign", ErrConfig, keyFile)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return "", "", err
	}
	der, k, err := IssueAOR(leaf, signer, aor, validity)
	if err != nil {
		return "", "", err
	}
	name := aor[strings.IndexByte(aor, ':')+1:]
	cert, key = filepath.Join(outDir, name+".pem"), filepath.Join(outDir, name+".key")
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return "", "", err
	}
	if err := writeNewKey(key, k); err != nil {
		return "", "", err
	}
	var chain []byte
	for _, d := range append([][]byte{der}, pair.Certificate...) {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	if err := writeNew(cert, chain, 0o644); err != nil {
		os.Remove(key) // ours: written above
		return "", "", err
	}
	return cert, key, nil
}
