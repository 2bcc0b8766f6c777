package overlay

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A federation CA directory (lsnode ca): the CA certificate and key, the
// overlay's private-network key and the CA's revocation list.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
	PSKFile    = "swarm.key"
	CRLFile    = "crl.pem"
	// crlValidity: a CRL is re-signed on every revocation; members reload
	// it on restart.
	crlValidity = 365 * 24 * time.Hour
)

// InitCA creates a federation CA in dir: a new CA valid for validity, a
// private-network key and an empty revocation list. It refuses a directory
// that already holds a CA.
func InitCA(dir, name string, validity time.Duration) error {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("%w: %s already holds a CA", ErrConfig, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cert, key, err := NewCA(name, "lsnode federation", validity)
	if err != nil {
		return err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	crl, err := CreateCRL(cert, key, 1, nil, crlValidity)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{CAKeyFile, "PRIVATE KEY", pk, 0o600},
		{CACertFile, "CERTIFICATE", cert.Raw, 0o644},
		{CRLFile, "X509 CRL", crl, 0o644},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, PSKFile), NewPSK(), 0o600)
}

// LoadCA reads the CA certificate and key of a CA directory.
func LoadCA(dir string) (*x509.Certificate, ed25519.PrivateKey, error) {
	certs, err := readCerts(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, nil, fmt.Errorf("%w: %s: no PEM key", ErrConfig, CAKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrConfig, CAKeyFile, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s: not an Ed25519 key", ErrConfig, CAKeyFile)
	}
	return certs[0], key, nil
}

// SignMember issues a member certificate of overlay name for peer id with
// the CA in dir and writes it (PEM) to out.
func SignMember(dir string, id peer.ID, name string, validity time.Duration, out string) (*x509.Certificate, error) {
	ca, key, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	der, err := IssueMember(ca, key, id, name, validity)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// Revoke adds the serial of the member certificate in certFile to the CA's
// revocation list and re-signs it. Members refuse the certificate once they
// load the new list.
func Revoke(dir, certFile string) (*big.Int, error) {
	ca, key, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	certs, err := readCerts(certFile)
	if err != nil {
		return nil, err
	}
	if err := certs[0].CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("%w: %s was not issued by this CA: %v", ErrConfig, certFile, err)
	}
	serial := certs[0].SerialNumber
	var serials []*big.Int
	number := int64(1)
	b, err := os.ReadFile(filepath.Join(dir, CRLFile))
	switch {
	case err == nil:
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w: %s: no PEM", ErrConfig, CRLFile)
		}
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrConfig, CRLFile, err)
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(serial) == 0 {
				return serial, nil // already revoked
			}
			serials = append(serials, e.SerialNumber)
		}
		if crl.Number != nil {
			number = crl.Number.Int64() + 1
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	crl, err := CreateCRL(ca, key, number, append(serials, serial), crlValidity)
	if err != nil {
		return nil, err
	}
	return serial, os.WriteFile(filepath.Join(dir, CRLFile), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}), 0o644)
}
