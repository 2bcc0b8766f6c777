package testnet

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  ed25519.PrivateKey
}

// NewCA creates a self-signed Ed25519 CA valid for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	cert, key, err := overlay.NewCA(name, "lsnode testnet", validity)
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Issue signs an Ed25519 domain certificate whose SANs are dnsNames.
func (ca *CA) Issue(dnsNames []string, validity time.Duration) (der []byte, key ed25519.PrivateKey, err error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("testnet: issue %v: %w", dnsNames, err)
	}
	return der, key, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// WriteCertPEM writes DER certificates as PEM.
func WriteCertPEM(path string, ders ...[]byte) error {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return os.WriteFile(path, out, 0o644)
}

// WriteKeyPEM writes a private key as PKCS#8 PEM (mode 0600).
func WriteKeyPEM(path string, key any) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
