package overlay

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"

	"github.com/lsnode/lsnode/pki"
)

// ErrMembership is returned when a federation overlay's membership
// requirements are not met: this node's own member certificate is missing,
// expired, revoked or for another key or overlay, or a peer refused it.
var ErrMembership = errors.New("overlay: federation membership")

// Federation closes an overlay to its members (RELOAD-style enrollment,
// RFC 6940 §11): every node that stores or routes holds a member
// certificate, issued by the federation CA for its libp2p identity and this
// overlay's name. Peers exchange certificates before any overlay protocol
// (membership gossip, kad-dht, lsp, media) serves them; a peer without a
// valid one is refused and disconnected. An optional libp2p private-network
// key (PSK) also keeps non-members from completing a connection at all.
type Federation struct {
	// PSK is the libp2p private-network key (32 bytes); nil: none. TCP only.
	PSK pnet.PSK
	// CAs issue member certificates.
	CAs *x509.CertPool
	// Chain is this node's member certificate first, then any intermediates (DER).
	Chain [][]byte
	// Revoked holds the serial numbers (decimal) the federation CA revoked.
	Revoked map[string]bool
}

// Ed25519Of returns the Ed25519 public key a peer ID embeds (lsnode
// identities are Ed25519, whose peer IDs inline the key).
func Ed25519Of(id peer.ID) (ed25519.PublicKey, error) {
	pk, err := id.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: peer %s: no inline public key: %v", ErrMembership, id, err)
	}
	raw, err := pk.Raw()
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: peer %s: member certificates need an Ed25519 identity", ErrMembership, id)
	}
	return ed25519.PublicKey(raw), nil
}

// SignMember issues a member certificate of overlay name for peer id with
// the federation CA in dir (pki.InitCA) and writes it (PEM) to out.
func SignMember(dir string, id PeerID, name string, validity time.Duration, out string) (*x509.Certificate, error) {
	pub, err := Ed25519Of(id)
	if err != nil {
		return nil, err
	}
	return pki.SignMember(dir, pub, id.String(), name, validity, out)
}

// LoadPSK reads a private-network key file (lsnode ca init's swarm.key).
func LoadPSK(path string) (PSK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: private-network key: %v", ErrConfig, err)
	}
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: private-network key %s: %v", ErrConfig, path, err)
	}
	return psk, nil
}

// LoadFederation reads a federation's files: the private-network key (""
// for none), the CA certificates, this node's member certificate chain and
// the CA's revocation list ("" for none; its signature must verify against
// one of the CAs).
func LoadFederation(pskFile string, caFiles []string, certFile, crlFile string) (*Federation, error) {
	f := &Federation{CAs: x509.NewCertPool(), Revoked: map[string]bool{}}
	if pskFile != "" {
		var err error
		if f.PSK, err = LoadPSK(pskFile); err != nil {
			return nil, err
		}
	}
	if len(caFiles) == 0 {
		return nil, fmt.Errorf("%w: a federation overlay needs its CA certificate (member_ca)", ErrConfig)
	}
	var cas []*x509.Certificate
	for _, p := range caFiles {
		certs, err := pki.ReadCerts(p)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			f.CAs.AddCert(c)
			cas = append(cas, c)
		}
	}
	if certFile == "" {
		return nil, fmt.Errorf("%w: this node has no member certificate (overlay.member_cert is empty; have the federation CA sign this node's peer ID: lsnode ca sign)", ErrMembership)
	}
	certs, err := pki.ReadCerts(certFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMembership, err)
	}
	for _, c := range certs {
		f.Chain = append(f.Chain, c.Raw)
	}
	if crlFile != "" {
		b, err := os.ReadFile(crlFile)
		if err != nil {
			return nil, fmt.Errorf("%w: revocation list: %v", ErrConfig, err)
		}
		if blk, _ := pem.Decode(b); blk != nil {
			b = blk.Bytes
		}
		crl, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, fmt.Errorf("%w: revocation list %s: %v", ErrConfig, crlFile, err)
		}
		signed := false
		for _, ca := range cas {
			if crl.CheckSignatureFrom(ca) == nil {
				signed = true
			}
		}
		if !signed {
			return nil, fmt.Errorf("%w: revocation list %s is not signed by the federation CA", ErrConfig, crlFile)
		}
		for _, e := range crl.RevokedCertificateEntries {
			f.Revoked[e.SerialNumber.String()] = true
		}
	}
	return f, nil
}

// Verify checks that chain is a member certificate of overlay name for peer
// id, valid at now, issued by the federation CA and not revoked. It returns
// the leaf.
func (f *Federation) Verify(chain [][]byte, id peer.ID, name string, now time.Time) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no member certificate", ErrMembership)
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: member certificate: %v", ErrMembership, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: f.CAs, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: member certificate of %s: %v", ErrMembership, id, err)
	}
	for _, c := range certs {
		if f.Revoked[c.SerialNumber.String()] {
			return nil, fmt.Errorf("%w: member certificate of %s (serial %s) is revoked", ErrMembership, id, c.SerialNumber)
		}
	}
	if !slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == pki.MemberURI(name) }) {
		return nil, fmt.Errorf("%w: certificate of %s is not a member certificate of overlay %q", ErrMembership, id, name)
	}
	want, err := Ed25519Of(id)
	if err != nil {
		return nil, err
	}
	if got, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !got.Equal(want) {
		return nil, fmt.Errorf("%w: member certificate is for another key than peer %s", ErrMembership, id)
	}
	return leaf, nil
}

// Wire form of a chain: up to maxChain certificates, each varint-framed.
const (
	maxChain      = 4
	maxChainBytes = 32 << 10
)

func encodeChain(chain [][]byte) []byte {
	var b bytes.Buffer
	for _, c := range chain {
		_ = WriteFrame(&b, c)
	}
	return b.Bytes()
}

func decodeChain(b []byte) ([][]byte, error) {
	r := bufio.NewReader(bytes.NewReader(b))
	var out [][]byte
	for {
		if _, err := r.Peek(1); err != nil {
			return out, nil
		}
		if len(out) == maxChain {
			return nil, fmt.Errorf("%w: more than %d certificates", ErrMembership, maxChain)
		}
		c, err := ReadFrame(r, maxChainBytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate chain: %v", ErrMembership, err)
		}
		out = append(out, c)
	}
}
