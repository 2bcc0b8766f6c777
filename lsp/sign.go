package lsp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lsnode/lsnode/pki"
)

// rootContext is prepended to a Merkle root before signing (domain separation).
const rootContext = "lsnode lsp/v1 batch root\x00"

// Credential is a domain's signing credential: a certificate chain (leaf
// first) whose leaf's SANs name the domains it may write, and its private key
// (Ed25519 preferred; ECDSA accepted).
type Credential struct {
	Chain [][]byte
	Leaf  *x509.Certificate
	key   crypto.Signer
	fp    [32]byte

	covered domainCache // domains Leaf's DNS SANs were found to cover
}

// NewCredential builds a Credential from a DER chain (leaf first) and the
// leaf's private key.
func NewCredential(chain [][]byte, key crypto.Signer) (*Credential, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("lsp: credential: empty certificate chain")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("lsp: credential: %w", err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		pub, ok := leaf.PublicKey.(ed25519.PublicKey)
		if !ok || !pub.Equal(k.Public()) {
			return nil, fmt.Errorf("lsp: credential: key does not match certificate")
		}
	case *ecdsa.PrivateKey:
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok || !pub.Equal(k.Public()) {
			return nil, fmt.Errorf("lsp: credential: key does not match certificate")
		}
	default:
		return nil, fmt.Errorf("lsp: credential: unsupported key type %T (want Ed25519 or ECDSA)", key)
	}
	return &Credential{Chain: chain, Leaf: leaf, key: key, fp: sha256.Sum256(chain[0])}, nil
}

// LoadCredential reads a PEM certificate chain and PEM private key.
func LoadCredential(certFile, keyFile string) (*Credential, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("lsp: credential %s: %w", certFile, err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("lsp: credential %s: key cannot sign", keyFile)
	}
	return NewCredential(pair.Certificate, signer)
}

// LoadTrustAnchors reads PEM CA certificates into a pool.
func LoadTrustAnchors(files ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("lsp: trust anchors: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("lsp: trust anchors: no certificate in %s", f)
		}
	}
	return pool, nil
}

// Authorizes reports whether the credential's certificate may write aor
// (canonical): a DNS SAN covering its domain, or a URI SAN equal to the AOR.
func (c *Credential) Authorizes(aor string) bool {
	return c.covered.covers(c.Leaf, Domain(aor)) || authorizesURI(c.Leaf, aor)
}

// DeriveSecret returns a 32-byte secret derived from the credential's private
// key and label: services of one domain (e.g. two registrar front-ends
// sharing digest nonces) agree on it without configuring another secret.
func (c *Credential) DeriveSecret(label string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return nil, fmt.Errorf("lsp: derive secret: %w", err)
	}
	m := hmac.New(sha256.New, der)
	m.Write([]byte("lsnode derived secret\x00" + label))
	return m.Sum(nil), nil
}

// fpOrZero is c's fingerprint, zero for no credential.
func (c *Credential) fpOrZero() [32]byte {
	if c == nil {
		return [32]byte{}
	}
	return c.fp
}

// Domains lists the DNS names the credential covers.
func (c *Credential) Domains() []string { return slices.Clone(c.Leaf.DNSNames) }

// authorizesURI reports whether one of leaf's URI SANs names aor (or, for
// a private record, the AOR whose name it is). The DNS SANs are the
// domainCache's to check (covers), once per domain.
func authorizesURI(leaf *x509.Certificate, aor string) bool {
	for _, u := range leaf.URIs {
		if u.String() == aor {
			return true
		}
		if isPrivateName(aor) { // the private name of the AOR the certificate names
			if canon, err := Canonical(u.String()); err == nil {
				if name, ok := privateName(canon); ok && name == aor {
					return true
				}
			}
		}
	}
	return false
}

// sign seals the entries, builds a Merkle tree over them and sets each
// entry's proof and the root's signature.
func (c *Credential) sign(es []*entry) error {
	leaves := make([][32]byte, len(es))
	for i, e := range es {
		e.seal()
		leaves[i] = e.leaf
	}
	root, proofs := merkle(leaves)
	sig, err := c.signRoot(root)
	if err != nil {
		return fmt.Errorf("lsp: sign: %w", err)
	}
	for i, e := range es {
		e.CertFP, e.Sig, e.Proof, e.Index = c.fp, sig, proofs[i], uint64(i)
		e.wire = nil
		e.wire = e.encode()
	}
	return nil
}

func (c *Credential) signRoot(root [32]byte) ([]byte, error) {
	return c.signMsg(append([]byte(rootContext), root[:]...))
}

// signMsg signs msg with the credential's key (Ed25519 over msg, ECDSA
// over its SHA-256).
func (c *Credential) signMsg(msg []byte) ([]byte, error) {
	switch k := c.key.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, msg), nil
	default:
		d := sha256.Sum256(msg)
		return k.Sign(rand.Reader, d[:], crypto.SHA256)
	}
}

func verifyRoot(pub any, root [32]byte, sig []byte) bool {
	return verifyMsg(pub, append([]byte(rootContext), root[:]...), sig)
}

// verifyMsg checks a signMsg signature.
func verifyMsg(pub any, msg, sig []byte) bool {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, d[:], sig)
	}
	return false
}

// merkle returns the root over leaves and each leaf's inclusion path. A level
// with an odd count pairs its last node with itself.
func merkle(leaves [][32]byte) ([32]byte, [][][32]byte) {
	proofs := make([][][32]byte, len(leaves))
	level := leaves
	idx := make([]int, len(leaves)) // position of each leaf's ancestor in level
	for i := range idx {
		idx[i] = i
	}
	for len(level) > 1 {
		next := make([][32]byte, (len(level)+1)/2)
		for i := range next {
			l := level[2*i]
			r := l
			if 2*i+1 < len(level) {
				r = level[2*i+1]
			}
			next[i] = nodeHash(l, r)
		}
		for leaf, pos := range idx {
			sib := pos ^ 1
			if sib >= len(level) {
				sib = pos
			}
			proofs[leaf] = append(proofs[leaf], level[sib])
			idx[leaf] = pos / 2
		}
		level = next
	}
	return level[0], proofs
}

func nodeHash(l, r [32]byte) [32]byte {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[33:], r[:])
	return sha256.Sum256(buf[:])
}

// rootOf walks e's inclusion path from its leaf to the root.
func rootOf(e *entry) [32]byte {
	h := e.leaf
	for i, sib := range e.Proof {
		if e.Index>>uint(i)&1 == 0 {
			h = nodeHash(h, sib)
		} else {
			h = nodeHash(sib, h)
		}
	}
	return h
}

// Verifier checks entries against an overlay's trust anchors, caching
// verified certificate chains and signed roots. Safe for concurrent use.
type Verifier struct {
	roots   *x509.CertPool
	skew    time.Duration
	maxTTL  time.Duration
	now     func() time.Time
	maxSize int

	mu     sync.Mutex
	chains map[[32]byte]*chain
	// H(fp, root, sig) of verified roots, in two generations of at most
	// sigGeneration: when the current one fills, it becomes the old one
	// (recent roots stay cached, memory stays bounded).
	sigs, oldSigs map[[32]byte]struct{}
	// proven holders (holder.go), until their proof or certificate expires
	holders map[holderKey]time.Time
	// sigChecks counts the signatures checked (roots and holder proofs).
	sigChecks atomic.Uint64
}

// sigGeneration bounds one generation of the verified-root cache (two
// generations ≈ 8 MB): a replica's reads hit roots written in the last
// minutes, not older ones.
const sigGeneration = 1 << 15

type chain struct {
	leaf     *x509.Certificate
	ders     [][]byte
	notAfter time.Time
	// by is the domain certificate that signed an AOR certificate leaf
	// (pki.IssueAOR); nil for a leaf issued by a CA.
	by *x509.Certificate

	covered domainCache // domains the leaf's DNS SANs were found to cover
}

// domainCache remembers the domains a certificate's DNS SANs cover:
// x509's hostname match allocates a dozen objects, and every binding a
// front-end signs or a replica verifies asks it again.
type domainCache struct {
	mu      sync.Mutex
	domains map[string]bool
}

// maxCachedDomains bounds a domain cache (a wildcard SAN covers any
// number of names).
const maxCachedDomains = 1024

// covers reports whether leaf's DNS SANs cover domain d, asking x509 once
// per domain.
func (c *domainCache) covers(leaf *x509.Certificate, d string) bool {
	if d == "" || len(leaf.DNSNames) == 0 {
		return false
	}
	c.mu.Lock()
	ok := c.domains[d]
	c.mu.Unlock()
	if ok {
		return true
	}
	if leaf.VerifyHostname(d) != nil {
		return false
	}
	c.mu.Lock()
	if c.domains == nil || len(c.domains) >= maxCachedDomains {
		c.domains = map[string]bool{}
	}
	c.domains[strings.Clone(d)] = true // d may point into an entry's bytes (decodeEntry)
	c.mu.Unlock()
	return true
}

// authorizes is authorizes(c.leaf, aor) with DNS matches cached per domain.
// An AOR certificate authorizes its URI SAN's AOR alone, of a domain its
// signing domain certificate covers.
func (c *chain) authorizes(aor string) bool {
	d := Domain(aor)
	if c.by != nil {
		return d != "" && net.ParseIP(d) == nil && len(c.leaf.DNSNames) == 0 && len(c.by.DNSNames) > 0 &&
			c.by.VerifyHostname(d) == nil && authorizesURI(c.leaf, aor)
	}
	return c.covered.covers(c.leaf, d) || authorizesURI(c.leaf, aor)
}

// NewVerifier returns a verifier for the given trust anchors. skew bounds how
// far in the future a timestamp may lie; maxTTL how far expiry may lie beyond
// the timestamp.
func NewVerifier(roots *x509.CertPool, skew, maxTTL time.Duration) *Verifier {
	return &Verifier{roots: roots, skew: skew, maxTTL: maxTTL, now: time.Now, maxSize: 4096,
		chains: map[[32]byte]*chain{}, sigs: map[[32]byte]struct{}{}, holders: map[holderKey]time.Time{}}
}

// chainFor returns the verified chain of fingerprint fp, verifying it from
// certs (DER certificates: leaves and intermediates) on a cache miss.
func (v *Verifier) chainFor(fp [32]byte, certs [][]byte) (*chain, error) {
	now := v.now()
	v.mu.Lock()
	c := v.chains[fp]
	v.mu.Unlock()
	if c != nil && now.Before(c.notAfter) {
		return c, nil
	}
	var leaf *x509.Certificate
	inter := x509.NewCertPool()
	var interDER [][]byte
	for _, der := range certs {
		if sha256.Sum256(der) == fp {
			var err error
			if leaf, err = x509.ParseCertificate(der); err != nil {
				return nil, fmt.Errorf("%w: signing certificate: %v", ErrForbidden, err)
			}
			continue
		}
		if ic, err := x509.ParseCertificate(der); err == nil && ic.IsCA {
			inter.AddCert(ic)
			interDER = append(interDER, der)
		}
	}
	if leaf == nil {
		short := fp // a copy: slicing fp itself would move it to the heap on every call
		return nil, fmt.Errorf("%w: signing certificate %x not supplied", ErrForbidden, short[:6])
	}
	by, err := delegator(leaf, certs, now)
	if err != nil {
		return nil, err
	}
	verified := leaf // what must chain to the anchors: the leaf, or its domain certificate
	if by != nil {
		verified = by
	}
	chains, err := verified.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter,
		CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("%w: certificate %q: %v", ErrForbidden, verified.Subject.CommonName, err)
	}
	c = &chain{leaf: leaf, ders: [][]byte{leaf.Raw}, notAfter: leaf.NotAfter, by: by}
	if by != nil {
		c.ders = append(c.ders, by.Raw)
		if by.NotAfter.Before(c.notAfter) {
			c.notAfter = by.NotAfter
		}
	}
	for _, cert := range chains[0][1:] {
		if cert.NotAfter.Before(c.notAfter) {
			c.notAfter = cert.NotAfter
		}
		if slices.ContainsFunc(interDER, func(d []byte) bool { return string(d) == string(cert.Raw) }) {
			c.ders = append(c.ders, cert.Raw)
		}
	}
	v.mu.Lock()
	if len(v.chains) >= v.maxSize {
		clear(v.chains)
	}
	v.chains[fp] = c
	v.mu.Unlock()
	return c, nil
}

// delegator returns the domain certificate among certs that signed leaf,
// when leaf is an AOR certificate (pki.IssueAOR: issued by a domain's
// credential, not by a CA); nil when a CA issued leaf. An AOR certificate
// must name AORs only (URI SANs, no DNS name), be no CA, be valid now and
// carry no critical extension this code does not understand.
func delegator(leaf *x509.Certificate, certs [][]byte, now time.Time) (*x509.Certificate, error) {
	var by *x509.Certificate
	tries := 0 // signature checks: a message cannot buy more than maxDelegators per entry
	for _, der := range certs {
		if tries == maxDelegators {
			break
		}
		c, err := x509.ParseCertificate(der)
		if err != nil || c.IsCA || c.Equal(leaf) || string(c.RawSubject) != string(leaf.RawIssuer) {
			continue
		}
		tries++
		if c.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil {
			by = c
			break
		}
	}
	switch {
	case by == nil:
		return nil, nil
	case leaf.NotAfter.Sub(leaf.NotBefore) > pki.MaxAORValidity+2*time.Hour:
		return nil, fmt.Errorf("%w: AOR certificate %q: valid longer than %v", ErrForbidden, leaf.Subject.CommonName, pki.MaxAORValidity)
	case leaf.IsCA || len(leaf.DNSNames) > 0 || len(leaf.URIs) == 0 || len(leaf.IPAddresses) > 0 || len(leaf.EmailAddresses) > 0:
		return nil, fmt.Errorf("%w: AOR certificate %q: want AOR URIs alone, and no CA", ErrForbidden, leaf.Subject.CommonName)
	case now.Before(leaf.NotBefore) || now.After(leaf.NotAfter):
		return nil, fmt.Errorf("%w: AOR certificate %q: not valid now (%s to %s)", ErrForbidden, leaf.Subject.CommonName,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	case len(leaf.UnhandledCriticalExtensions) > 0:
		return nil, fmt.Errorf("%w: AOR certificate %q: unhandled critical extension", ErrForbidden, leaf.Subject.CommonName)
	}
	return by, nil
}

// maxDelegators bounds the certificates tried as an AOR certificate's
// signer (same subject as its issuer) per verification.
const maxDelegators = 4

// verify checks one decoded entry: field validity, clock bounds, the signing
// chain, the certificate's authority over the AOR and the root signature.
// It returns the verified chain.
func (v *Verifier) verify(e *entry, certs [][]byte) (*chain, error) {
	return v.verifyHeld(e, certs, nil)
}

// verifyHeld is verify, except that the root signature of an entry signed
// by held (the credential the sender proved it holds, see holder) is not
// checked, nor remembered as checked: e is marked unchecked instead.
func (v *Verifier) verifyHeld(e *entry, certs [][]byte, held *[32]byte) (*chain, error) {
	canon, err := Canonical(e.AOR)
	if err != nil {
		return nil, err
	}
	if canon != e.AOR {
		return nil, fmt.Errorf("%w: AOR %q is not canonical", ErrInvalid, e.AOR)
	}
	if err := e.B.validate(); err != nil {
		return nil, err
	}
	if err := checkHidden(e); err != nil {
		return nil, err
	}
	now := v.now()
	if e.B.Timestamp.After(now.Add(v.skew)) {
		return nil, fmt.Errorf("%w: timestamp %s is more than %v ahead", ErrInvalid, e.B.Timestamp.UTC().Format(time.RFC3339), v.skew)
	}
	if e.B.Expires.After(e.B.Timestamp.Add(v.maxTTL)) {
		return nil, fmt.Errorf("%w: expiry more than %v after timestamp", ErrInvalid, v.maxTTL)
	}
	c, err := v.chainFor(e.CertFP, certs)
	if err != nil {
		return nil, err
	}
	if !c.authorizes(e.AOR) {
		return nil, fmt.Errorf("%w: %w: certificate %q does not cover %q", ErrForbidden, errForged, c.leaf.Subject.CommonName, e.AOR)
	}
	if c.by != nil && (len(e.B.Path) > 0 || e.B.Received != "") {
		// What a registrar observed (the REGISTER's source, its edge
		// proxies): a UA's own word on it would steer proxies.
		return nil, fmt.Errorf("%w: an AOR certificate's binding of %q carries a Path or Received (a registrar's fields)", ErrForbidden, e.AOR)
	}
	if held != nil && *held == e.CertFP {
		atomic.StoreUint32(&e.unchecked, 1)
		return c, nil
	}
	root := rootOf(e)
	key := sigKey(e.CertFP, root, e.Sig)
	v.mu.Lock()
	_, ok := v.sigs[key]
	if !ok {
		_, ok = v.oldSigs[key]
	}
	v.mu.Unlock()
	if ok {
		return c, nil
	}
	v.sigChecks.Add(1)
	if !verifyRoot(c.leaf.PublicKey, root, e.Sig) {
		return nil, fmt.Errorf("%w: %w: bad signature on %q", ErrForbidden, errForged, e.AOR)
	}
	v.remember(key)
	return c, nil
}

func sigKey(fp, root [32]byte, sig []byte) [32]byte {
	h := sha256.New()
	h.Write(fp[:])
	h.Write(root[:])
	h.Write(sig)
	var key [32]byte
	h.Sum(key[:0])
	return key
}

func (v *Verifier) remember(key [32]byte) {
	v.mu.Lock()
	if len(v.sigs) >= sigGeneration {
		v.oldSigs, v.sigs = v.sigs, make(map[[32]byte]struct{}, sigGeneration)
	}
	v.sigs[key] = struct{}{}
	v.mu.Unlock()
}

// signedHere records that this process signed the batch of es, so reading
// its own writes back costs no signature verification. Chains and every
// other check still run on each read.
func (v *Verifier) signedHere(es []*entry) {
	if len(es) > 0 {
		v.remember(sigKey(es[0].CertFP, rootOf(es[0]), es[0].Sig))
	}
}
