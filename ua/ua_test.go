package ua

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/overlay"
)

// credFor is a self-signed credential whose URI SAN is aor (enough for the
// checks before any dial).
func credFor(t *testing.T, aor string, notAfter ...time.Time) *lsp.Credential {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(aor)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: aor}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if len(notAfter) > 0 {
		tmpl.NotAfter = notAfter[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := lsp.NewCredential([][]byte{der}, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConfigRefused: a config a UA cannot publish with is refused before
// any dial, with what is missing.
func TestConfigRefused(t *testing.T) {
	key, err := overlay.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := overlay.PeerIDOf(key)
	if err != nil {
		t.Fatal(err)
	}
	good := Config{Credential: credFor(t, "sip:alice@a.example"), TrustAnchors: x509.NewCertPool(), Overlay: "public",
		Nodes: []overlay.AddrInfo{{ID: id}}, AOR: "sip:Alice@a.example", Contact: "sip:alice@192.0.2.1"}
	if c, err := good.withDefaults(); err != nil || c.AOR != "sip:alice@a.example" || c.Expires != time.Hour {
		t.Fatalf("the good config: %+v %v", c, err)
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"no credential":   {func(c *Config) { c.Credential = nil }, "no credential"},
		"another AOR":     {func(c *Config) { c.AOR = "sip:bob@a.example" }, "does not cover sip:bob@a.example"},
		"a bad AOR":       {func(c *Config) { c.AOR = "alice" }, "bad AOR"},
		"no node":         {func(c *Config) { c.Nodes = nil }, "no overlay node"},
		"no contact":      {func(c *Config) { c.Contact = "" }, "no contact"},
		"no overlay":      {func(c *Config) { c.Overlay = "" }, "no overlay name"},
		"no anchors":      {func(c *Config) { c.TrustAnchors = nil }, "no trust anchors"},
		"negative expiry": {func(c *Config) { c.Expires = -time.Second }, "negative expiry"},
	} {
		c := good
		tc.edit(&c)
		if _, err := c.withDefaults(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrConfig mentioning %q", name, err, tc.want)
		}
	}
	expired := good
	expired.Credential = credFor(t, "sip:alice@a.example", time.Now().Add(-time.Minute))
	if _, err := expired.withDefaults(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired credential: %v", err)
	}
	if _, err := Target("public", []string{"/ip4/127.0.0.1/tcp/1"}, []string{"ca.pem"}, ""); err == nil {
		t.Error("Target took a member without a peer ID")
	}
}
