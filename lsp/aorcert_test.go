package lsp

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/lsnode/lsnode/pki"
)

// aorCred is the credential of an AOR certificate that domain signed
// (pki.IssueAOR), its chain followed by the domain's.
func aorCred(t *testing.T, domain *Credential, aor string) *Credential {
	t.Helper()
	der, key, err := pki.IssueAOR(domain.Leaf, domain.key, aor, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return chainedCred(t, der, key, domain)
}

// chainedCred is the credential of der (and key), its chain followed by
// domain's.
func chainedCred(t *testing.T, der []byte, key ed25519.PrivateKey, domain *Credential) *Credential {
	t.Helper()
	c, err := NewCredential(append([][]byte{der}, domain.Chain...), key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// forgedAORCred is an AOR certificate made by hand: tmpl signed by the
// domain credential's key, whatever the template says.
func forgedAORCred(t *testing.T, domain *Credential, tmpl *x509.Certificate) *Credential {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, domain.Leaf, pub, domain.key)
	if err != nil {
		t.Fatal(err)
	}
	return chainedCred(t, der, key, domain)
}

func aorTemplate(uri string, dnsNames []string, notAfter time.Time) *x509.Certificate {
	u, _ := url.Parse(uri)
	return &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: uri},
		URIs: []*url.URL{u}, DNSNames: dnsNames, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature}
}

// TestAORCertificates: a UA's own credential (p2p-ipcom §4's UA as its own
// registrar), signed by its domain's credential, writes its AOR and
// nothing else; what another domain, the AOR certificate itself or another
// CA signs is refused by every replica.
func TestAORCertificates(t *testing.T) {
	ca, rogueCA := newTestCA(t), newTestCA(t)
	a := ca.issue(t, []string{"a.example"}, nil, false)
	aEC := ca.issue(t, []string{"a.example"}, nil, true)
	b := ca.issue(t, []string{"b.example"}, nil, false)
	rogue := rogueCA.issue(t, []string{"a.example"}, nil, false)
	alice, bob := "sip:alice@a.example", "sip:bob@a.example"
	v := NewVerifier(ca.pool, 30*time.Second, 24*time.Hour)

	for name, dom := range map[string]*Credential{"ed25519 domain": a, "ecdsa domain": aEC} {
		cred := aorCred(t, dom, alice)
		e := signed(t, cred, alice, binding("sip:alice@192.0.2.1", time.Hour))[0]
		c, err := v.verify(e, cred.Chain)
		if err != nil {
			t.Fatalf("%s: alice's own certificate: %v", name, err)
		}
		if len(c.ders) != 2 || string(c.ders[1]) != string(dom.Chain[0]) {
			t.Errorf("%s: the chain passed on to replicas has %d certificates, want the AOR's and the domain's", name, len(c.ders))
		}
	}
	if _, _, err := pki.IssueAOR(b.Leaf, b.key, alice, time.Hour); err == nil {
		t.Error("b.example's credential issued a certificate for an AOR of a.example")
	}

	refusedBinding := func(name string, cred *Credential, aor string, b Binding) {
		t.Helper()
		es := signed(t, a, aor, b)
		if err := cred.sign(es); err != nil { // by cred, whatever it covers: the client's check is skipped
			t.Fatal(err)
		}
		if _, err := v.verify(es[0], cred.Chain); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", name, err)
		}
	}
	refused := func(name string, cred *Credential, aor string) {
		t.Helper()
		refusedBinding(name, cred, aor, binding("sip:x@192.0.2.9", time.Hour))
	}
	aliceCred := aorCred(t, a, alice)
	if _, err := prepare(aliceCred, &clock{}, bob, []Binding{binding("sip:bob@192.0.2.2", time.Hour)}, nil); !errors.Is(err, ErrForbidden) {
		t.Errorf("alice's credential prepared a write of bob: %v", err)
	}
	refused("alice's certificate writing bob", aliceCred, bob)
	refused("another domain's AOR certificate", forgedAORCred(t, b, aorTemplate(alice, nil, time.Now().Add(time.Hour))), alice)
	refused("an AOR certificate with a DNS name", forgedAORCred(t, a, aorTemplate(alice, []string{"a.example"}, time.Now().Add(time.Hour))), alice)
	refused("an expired AOR certificate", forgedAORCred(t, a, aorTemplate(alice, nil, time.Now().Add(-time.Hour))), alice)
	refused("a domain of another CA", forgedAORCred(t, rogue, aorTemplate(alice, nil, time.Now().Add(time.Hour))), alice)
	refused("an AOR certificate valid for years", forgedAORCred(t, a, aorTemplate(alice, nil, time.Now().Add(5*365*24*time.Hour))), alice)
	// What only a registrar observes is not a UA's to claim: a proxy
	// would send requests to a Received or through a Path.
	withReceived := binding("sip:alice@192.0.2.1", time.Hour)
	withReceived.Received = "127.0.0.1:6379"
	refusedBinding("an AOR certificate's binding with a Received", aliceCred, alice, withReceived)
	withPath := binding("sip:alice@192.0.2.1", time.Hour)
	withPath.Path = []string{"<sip:127.0.0.1:5060;lr>"}
	refusedBinding("an AOR certificate's binding with a Path", aliceCred, alice, withPath)
	// An AOR certificate cannot issue another.
	carol := "sip:carol@a.example"
	second := forgedAORCred(t, aliceCred, aorTemplate(carol, nil, time.Now().Add(time.Hour)))
	second.Chain = append(second.Chain[:1:1], aliceCred.Chain...)
	refused("an AOR certificate signed by another", second, carol)
	// Without the domain certificate the AOR certificate does not verify
	// on its own (at a replica that has not verified it yet).
	bare, err := NewCredential(aliceCred.Chain[:1], aliceCred.key)
	if err != nil {
		t.Fatal(err)
	}
	v = NewVerifier(ca.pool, 30*time.Second, 24*time.Hour)
	refused("an AOR certificate without its domain's", bare, alice)
}
