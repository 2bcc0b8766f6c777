package sipnet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// testCA is a CA that issues domain certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a certificate for dnsNames (and sip: URIs uris) with its key
// to dir and returns the two paths.
func (ca *testCA) issue(t *testing.T, dir, name string, dnsNames []string, uris ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: dnsNames,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLSPeer: two nodes' TLS configs from LoadTLS accept each other's
// certificates (chained to the shared anchors), refuse a stranger's, and
// CheckPeer then tells whose certificate the peer presented.
func TestTLSPeer(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	aCert, aKey := ca.issue(t, dir, "a", []string{"a.example"})
	bCert, bKey := ca.issue(t, dir, "b", []string{"b.example"})
	a, err := LoadTLS(aCert, aKey, "127.0.0.1:0", ca.pool)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadTLS(bCert, bKey, "", ca.pool)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", a.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan *x509.Certificate, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			var peer *x509.Certificate
			if tc.Handshake() == nil {
				peer = PeerCert(&sip.TCPConnection{Conn: tc})
			}
			served <- peer
			tc.Close()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), b.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sc := &sip.TCPConnection{Conn: conn}
	if err := CheckPeer(sc, "a.example"); err != nil {
		t.Fatalf("CheckPeer(a.example): %v", err)
	}
	if err := CheckPeer(sc, "A.Example."); err != nil {
		t.Fatalf("CheckPeer(A.Example.): %v", err)
	}
	if err := CheckPeer(sc, "b.example"); !errors.Is(err, ErrPeerIdentity) {
		t.Fatalf("CheckPeer(b.example): %v, want ErrPeerIdentity", err)
	}
	if c := <-served; c == nil || !CertNames(c, "b.example") {
		t.Fatalf("server saw client certificate %v", c)
	}
	// A stranger's certificate does not chain to the anchors: refused both ways.
	other := newTestCA(t)
	sCert, sKey := other.issue(t, dir, "s", []string{"a.example"})
	stranger, err := LoadTLS(sCert, sKey, "", other.pool)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := tls.Dial("tcp", ln.Addr().String(), b.Client); err == nil {
		c.Close() // b still trusts a
		<-served
	} else {
		t.Fatal(err)
	}
	if c, err := tls.Dial("tcp", ln.Addr().String(), stranger.Client); err == nil {
		if c.Handshake() == nil {
			t.Error("stranger accepted a's certificate")
		}
		c.Close()
	}
	if c := <-served; c != nil {
		t.Errorf("server accepted a stranger's client certificate %v", c.Subject)
	}
	// Not a TLS connection: no certificate, no identity.
	plain, _ := net.Pipe()
	defer plain.Close()
	if err := CheckPeer(&sip.TCPConnection{Conn: plain}, "a.example"); !errors.Is(err, ErrPeerIdentity) {
		t.Fatalf("CheckPeer on plain TCP: %v", err)
	}
	if _, err := LoadTLS(filepath.Join(dir, "missing.crt"), aKey, "", ca.pool); !errors.Is(err, ErrConfig) {
		t.Fatalf("LoadTLS of a missing file: %v, want ErrConfig", err)
	}
}

func TestCertDomains(t *testing.T) {
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	for _, c := range []struct {
		name string
		cert *x509.Certificate
		want []string
	}{
		{"sip URIs win", &x509.Certificate{URIs: []*url.URL{mustURL("sip:A.example"), mustURL("sip:bob@b.example"), mustURL("https://c.example")},
			DNSNames: []string{"d.example"}}, []string{"a.example"}},
		{"DNS names", &x509.Certificate{DNSNames: []string{"D.example.", "*.e.example"}, Subject: pkix.Name{CommonName: "f.example"}},
			[]string{"d.example"}},
		{"common name", &x509.Certificate{Subject: pkix.Name{CommonName: "F.example"}}, []string{"f.example"}},
		{"nothing", &x509.Certificate{}, nil},
	} {
		got := CertDomains(c.cert)
		if len(got) != len(c.want) || len(got) > 0 && got[0] != c.want[0] {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	for host, want := range map[string]string{"B.example.": "b.example", "192.0.2.1": "", "[2001:db8::1]": "", "": ""} {
		if got := PeerName(host); got != want {
			t.Errorf("PeerName(%q) = %q, want %q", host, got, want)
		}
	}
}
