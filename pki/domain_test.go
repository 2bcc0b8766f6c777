package pki

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDomainFiles: a domain CA issues a credential once; a file or a link
// already where a key or certificate goes is refused, and a link's target
// is never created.
func TestDomainFiles(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := InitDomainCA(ca, "test CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := InitDomainCA(ca, "test CA", time.Hour); err == nil {
		t.Fatal("a second CA over the first")
	}
	out := filepath.Join(dir, "out")
	cert, key, err := IssueDomainFiles(ca, "a.example", out, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if certs, err := ReadCerts(cert); err != nil || certs[0].DNSNames[0] != "a.example" {
		t.Fatalf("issued %v %v", certs, err)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode())
	}
	if _, _, err := IssueDomainFiles(ca, "a.example", out, time.Hour); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("issued over an existing credential: %v", err)
	}
	for _, bad := range []string{"", "a..example", "-a.example", "a.example.", "a_b.example"} {
		if _, _, err := IssueDomainFiles(ca, bad, out, time.Hour); err == nil {
			t.Errorf("issued for %q", bad)
		}
	}
	// Someone placed links where the key and the request go.
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "b.key")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := DomainCSR("b.example", link, filepath.Join(dir, "b.csr")); err == nil {
		t.Fatal("wrote a key through a link")
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("the link's target was created")
	}
	csrLink := filepath.Join(dir, "c.csr")
	if err := os.Symlink(target, csrLink); err != nil {
		t.Fatal(err)
	}
	if _, err := DomainCSR("c.example", filepath.Join(dir, "c.key"), csrLink); err == nil {
		t.Fatal("wrote a request through a link")
	}
	created, err := DomainCSR("d.example", filepath.Join(dir, "d.key"), filepath.Join(dir, "d.csr"))
	if err != nil || !created {
		t.Fatalf("a request: %v %v", created, err)
	}
	if created, err := DomainCSR("d.example", filepath.Join(dir, "d.key"), filepath.Join(dir, "d.csr")); err != nil || created {
		t.Fatalf("a request again, with the same key: %v %v", created, err)
	}
}

// TestAORFiles: a domain credential issues an AOR certificate for an AOR
// of its domain (the file holds the AOR certificate, then the domain's),
// and refuses other domains, non-canonical or non-AOR URIs, and long
// validities.
func TestAORFiles(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := InitDomainCA(ca, "test CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	dcert, dkey, err := IssueDomainFiles(ca, "a.example", dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "ua")
	cert, key, err := IssueAORFiles(dcert, dkey, "sip:alice@a.example", out, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ReadCerts(cert)
	if err != nil || len(certs) != 2 || len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != "sip:alice@a.example" ||
		len(certs[0].DNSNames) != 0 || certs[0].IsCA || certs[1].DNSNames[0] != "a.example" {
		t.Fatalf("issued %v %v", certs, err)
	}
	if err := certs[0].CheckSignature(certs[0].SignatureAlgorithm, certs[0].RawTBSCertificate, certs[0].Signature); err == nil {
		t.Error("the AOR certificate is self-signed")
	}
	if err := certs[1].CheckSignature(certs[0].SignatureAlgorithm, certs[0].RawTBSCertificate, certs[0].Signature); err != nil {
		t.Errorf("the domain's key did not sign the AOR certificate: %v", err)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode())
	}
	if _, _, err := IssueAORFiles(dcert, dkey, "sip:alice@a.example", out, time.Hour); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("issued over an existing credential: %v", err)
	}
	for _, bad := range []string{"sip:bob@b.example", "sip:bob@sub.a.example", "SIP:bob@a.example", "sip:bob@a.example;transport=tcp",
		"sip:bob:pw@a.example", "sip:a.example", "tel:+123", "sip:bob@a.example:5060", "http://bob@a.example/"} {
		if _, _, err := IssueAORFiles(dcert, dkey, bad, out, time.Hour); err == nil {
			t.Errorf("issued for %q", bad)
		}
	}
	if _, _, err := IssueAORFiles(dcert, dkey, "sip:carol@a.example", out, MaxAORValidity+time.Hour); err == nil {
		t.Error("issued past the longest validity")
	}
}
