package pki

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

// InitCA creates a federation CA in dir: a new CA named name valid for
// validity, a private-network key and an empty revocation list. It refuses
// a directory that already holds a CA.
func InitCA(dir, name string, validity time.Duration) error {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("%w: %s already holds a CA", ErrConfig, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := NewCA(name, "lsnode federation", validity)
	if err != nil {
		return err
	}
	crl, err := ca.CRL(1, nil, crlValidity)
	if err != nil {
		return err
	}
	if err := WriteKeyPEM(filepath.Join(dir, CAKeyFile), ca.Key); err != nil {
		return err
	}
	if err := WriteCertPEM(filepath.Join(dir, CACertFile), ca.Cert.Raw); err != nil {
		return err
	}
	if err := writeCRL(dir, crl); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, PSKFile), NewPSK(), 0o600)
}

// LoadCA reads the CA certificate and key of a CA directory.
func LoadCA(dir string) (*CA, error) {
	certs, err := ReadCerts(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s: no PEM key", ErrConfig, CAKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, CAKeyFile, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: not an Ed25519 key", ErrConfig, CAKeyFile)
	}
	return &CA{Cert: certs[0], Key: key}, nil
}

// SignMember issues a member certificate of overlay name for the node with
// identity key pub and peer ID peerID with the CA in dir, and writes it
// (PEM) to out.
func SignMember(dir string, pub ed25519.PublicKey, peerID, name string, validity time.Duration, out string) (*x509.Certificate, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	der, err := ca.IssueMember(pub, peerID, name, validity)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return nil, err
	}
	if err := WriteCertPEM(out, der); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// Revoke adds the serial of the member certificate in certFile to the
// revocation list of the CA in dir and re-signs it. Members refuse the
// certificate once they load the new list.
func Revoke(dir, certFile string) (*big.Int, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	certs, err := ReadCerts(certFile)
	if err != nil {
		return nil, err
	}
	if err := certs[0].CheckSignatureFrom(ca.Cert); err != nil {
		return nil, fmt.Errorf("%w: %s was not issued by this CA: %v", ErrConfig, certFile, err)
	}
	serial := certs[0].SerialNumber
	old, err := readCRL(dir)
	if err != nil {
		return nil, err
	}
	var serials []*big.Int
	number := int64(1)
	if old != nil {
		for _, e := range old.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(serial) == 0 {
				return serial, nil // already revoked
			}
			serials = append(serials, e.SerialNumber)
		}
		if old.Number != nil {
			number = old.Number.Int64() + 1
		}
	}
	crl, err := ca.CRL(number, append(serials, serial), crlValidity)
	if err != nil {
		return nil, err
	}
	return serial, writeCRL(dir, crl)
}

// readCRL reads the revocation list of the CA in dir; nil if it has none.
func readCRL(dir string) (*x509.RevocationList, error) {
	b, err := os.ReadFile(filepath.Join(dir, CRLFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s: no PEM", ErrConfig, CRLFile)
	}
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, CRLFile, err)
	}
	return crl, nil
}

func writeCRL(dir string, der []byte) error {
	return os.WriteFile(filepath.Join(dir, CRLFile), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)
}
