package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// InitDomainCA creates a CA that issues domain certificates in dir: ca.pem
// (the trust anchor every node of the overlay lists in trust_anchors) and
// ca.key. It refuses a directory that already holds a CA.
func InitDomainCA(dir, name string, validity time.Duration) error {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("%w: %s already holds a CA", ErrConfig, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := NewCA(name, "lsnode domain CA", validity)
	if err != nil {
		return err
	}
	if err := writeNewKey(filepath.Join(dir, CAKeyFile), ca.Key); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, CACertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644)
}

// writeNew creates path with data; it never replaces or follows what is
// there (O_EXCL), so a file or link another user placed first is an error,
// not a target.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s exists; move it away to write a new one", ErrConfig, path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeNewKey writes a private key (PKCS #8 PEM, 0600) with writeNew.
func writeNewKey(path string, key any) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// IssueDomainFiles issues a certificate for domain with the CA in caDir
// and writes it and its new key to outDir as DOMAIN.pem and DOMAIN.key
// (cert_file and key_file). It refuses to overwrite either.
func IssueDomainFiles(caDir, domain, outDir string, validity time.Duration) (certFile, keyFile string, err error) {
	if !ValidDNSName(domain) {
		return "", "", fmt.Errorf("%w: %q is not a domain name", ErrConfig, domain)
	}
	ca, err := LoadCA(caDir)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(outDir, domain+".pem"), filepath.Join(outDir, domain+".key")
	if _, err := os.Lstat(certFile); err == nil {
		return "", "", fmt.Errorf("%w: %s exists; move it away to issue a new one", ErrConfig, certFile)
	}
	der, key, err := ca.IssueDomain([]string{domain}, validity)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return "", "", err
	}
	if err := writeNewKey(keyFile, key); err != nil {
		return "", "", err
	}
	if err := writeNew(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyFile) // ours: written above
		return "", "", err
	}
	return certFile, keyFile, nil
}

// DomainCSR writes a certificate signing request for domain (the DNS SAN
// a node's credential must carry) to csrFile, for a CA that is not ours:
// a public one, an ACME client (certbot certonly --csr), or an operator's
// own. Its ECDSA P-256 key is keyFile, created if missing.
func DomainCSR(domain, keyFile, csrFile string) (created bool, err error) {
	if !ValidDNSName(domain) {
		return false, fmt.Errorf("%w: %q is not a domain name", ErrConfig, domain)
	}
	key, err := readECKey(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err == nil {
			err = writeNewKey(keyFile, key)
			created = true
		}
	}
	if err != nil {
		return false, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: domain}, DNSNames: []string{domain}}, key)
	if err != nil {
		return false, err
	}
	// A request may be made again: replaced, but never through a link.
	f, err := os.OpenFile(csrFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return created, err
	}
	if _, err := f.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})); err != nil {
		f.Close()
		return created, err
	}
	return created, f.Close()
}

func readECKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s: no PEM key", ErrConfig, path)
	}
	var k any
	if k, err = x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: not an ECDSA key (public CAs sign ECDSA or RSA, and nodes sign with ECDSA or Ed25519)", ErrConfig, path)
	}
	return ec, nil
}

// ValidDNSName reports whether d is a domain name: letters, digits and hyphens in dot-separated labels.
func ValidDNSName(d string) bool {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") ||
			strings.Trim(strings.ToLower(l), "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return true
}
