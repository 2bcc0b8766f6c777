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
