package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCADirectory: a CA directory is created once, signs member
// certificates that chain to it and carry the overlay's member URI, and
// revokes them on its CRL (each serial once, the CRL number rising).
func TestCADirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := InitCA(dir, "test federation CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := InitCA(dir, "again", time.Hour); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "already holds a CA") {
		t.Fatalf("second InitCA: %v", err)
	}
	for _, f := range []string{CACertFile, CAKeyFile, PSKFile, CRLFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, CAKeyFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %v, want 0600", st.Mode().Perm())
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	out := filepath.Join(t.TempDir(), "sub", "member.pem")
	cert, err := SignMember(dir, pub, "12D3KooWtest", "fed", time.Hour, out)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cert.URIs, func(u *url.URL) bool { return u.String() == MemberURI("fed") }) ||
		cert.Subject.CommonName != "12D3KooWtest" || !pub.Equal(cert.PublicKey) {
		t.Fatalf("member certificate: %v %v %v", cert.URIs, cert.Subject, cert.PublicKey)
	}
	if certs, err := ReadCerts(out); err != nil || !certs[0].Equal(cert) {
		t.Fatalf("written certificate: %v", err)
	}
	for i := 0; i < 2; i++ { // the second revocation changes nothing
		serial, err := Revoke(dir, out)
		if err != nil || serial.Cmp(cert.SerialNumber) != 0 {
			t.Fatalf("revoke: %v %v", serial, err)
		}
	}
	crl, err := readCRL(dir)
	if err != nil || len(crl.RevokedCertificateEntries) != 1 || crl.Number.Int64() != 2 || crl.CheckSignatureFrom(ca.Cert) != nil {
		t.Fatalf("CRL after revoking: %+v %v", crl, err)
	}
	other, _ := NewCA("other", "x", time.Hour)
	der, _ := other.IssueMember(pub, "p", "fed", time.Hour)
	foreign := filepath.Join(t.TempDir(), "foreign.pem")
	if err := WriteCertPEM(foreign, der); err != nil {
		t.Fatal(err)
	}
	if _, err := Revoke(dir, foreign); !errors.Is(err, ErrConfig) {
		t.Fatalf("revoking another CA's certificate: %v", err)
	}
}

func TestIssue(t *testing.T) {
	ca, err := NewCA("test CA", "lsnode test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der, key, err := ca.IssueDomain([]string{"a.example", "sip.a.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil || c.VerifyHostname("sip.a.example") != nil || !key.Public().(ed25519.PublicKey).Equal(c.PublicKey) {
		t.Fatalf("domain certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.IssueDomain(nil, time.Hour); !errors.Is(err, ErrConfig) {
		t.Fatalf("no DNS name: %v", err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, bad := range []struct {
		pub  ed25519.PublicKey
		name string
	}{{pub, "Bad Name"}, {pub, ""}, {pub[:5], "fed"}} {
		if _, err := ca.IssueMember(bad.pub, "p", bad.name, time.Hour); !errors.Is(err, ErrConfig) {
			t.Errorf("IssueMember(%d-byte key, %q): %v, want ErrConfig", len(bad.pub), bad.name, err)
		}
	}
}

func TestPSK(t *testing.T) {
	a, b := NewPSK(), NewPSK()
	if string(a) == string(b) || !strings.HasPrefix(string(a), "/key/swarm/psk/1.0.0/\n/base16/\n") || len(a) != 22+9+64+1 {
		t.Fatalf("PSK file %q", a)
	}
	if f := PSKFingerprint(a); len(f) != 12 || f == PSKFingerprint(b) {
		t.Fatalf("fingerprint %q", f)
	}
}

func TestReadCertsErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	_ = os.WriteFile(empty, []byte("nothing here"), 0o644)
	for _, p := range []string{filepath.Join(dir, "missing.pem"), empty} {
		if _, err := ReadCerts(p); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", p, err)
		}
	}
	if _, err := LoadCA(dir); !errors.Is(err, ErrConfig) {
		t.Errorf("LoadCA of an empty directory: %v", err)
	}
}
