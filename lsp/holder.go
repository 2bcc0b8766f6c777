package lsp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/lsnode/lsnode/overlay"
)

// A holder proof lets a replica take a writer's entries without checking
// each batch's signature. Every REGISTER batch is signed once, but each
// replica it touches verifies that signature: in an overlay much larger
// than the replication factor, a batch of B AORs touches about R·B
// replicas, so the overlay checks about R signatures per REGISTER however
// the batches grow (the 10-node bench: 11% of the process's CPU at the
// digest-on maximum, all of it in the replicas' handleRegister).
//
// The proof is the credential's signature over the overlay's name, the
// writer's peer ID and the credential's fingerprint: "this peer holds this
// key". The replica checks it once (then caches it) and, for a message
// that arrives over that peer's own authenticated connection, skips the
// root signature of the entries signed by that credential: the peer could
// have signed anything that credential may sign. Every other check still
// runs on each entry (canonical AOR, timestamps, the chain, what the
// certificate authorizes, an AOR certificate's limits), and entries of any
// other credential in the message are verified as before.
//
// What the replica stores then carries a signature it did not check; a
// reader or another replica that gets the entry from it checks it, as for
// any entry, so a holder that sends a bad signature loses its own entries
// there and gains nothing it could not do with a good one. A proof named
// for another peer, replayed by someone else, grants nothing: the peer
// must be the one the message came from.

// holderContext is prepended to what a holder proof signs.
const holderContext = "lsnode lsp/v1 holder\x00"

// holderProofSize bounds a proof on the wire: a fingerprint and a
// signature.
const holderProofSize = 32 + maxSigSize

// holderMessage is what a holder proof signs.
func holderMessage(name string, p overlay.PeerID, fp [32]byte) []byte {
	msg := append([]byte(holderContext), name...)
	msg = append(msg, 0)
	msg = append(msg, p...)
	msg = append(msg, 0)
	return append(msg, fp[:]...)
}

// holderProof is c's proof that peer p holds it in overlay name: its
// fingerprint, then its signature.
func (c *Credential) holderProof(name string, p overlay.PeerID) ([]byte, error) {
	msg := holderMessage(name, p, c.fp)
	var sig []byte
	var err error
	switch k := c.key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, msg)
	default:
		d := sha256.Sum256(msg)
		sig, err = k.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("lsp: holder proof: %w", err)
	}
	return append(append([]byte(nil), c.fp[:]...), sig...), nil
}

// holder checks a holder proof that came with a message from peer from in
// overlay name, and returns the fingerprint of the credential from holds.
// A proof checked before costs a hash; a bad one is an error (ErrForbidden),
// as a bad signature is.
func (v *Verifier) holder(name string, from overlay.PeerID, proof []byte, certs [][]byte) ([32]byte, error) {
	var fp [32]byte
	if len(proof) <= len(fp) || len(proof) > holderProofSize {
		return fp, fmt.Errorf("%w: holder proof of %d bytes", ErrMalformed, len(proof))
	}
	copy(fp[:], proof)
	sig := proof[len(fp):]
	key := sigKey(fp, sha256.Sum256([]byte(string(from)+"\x00"+name)), sig)
	v.mu.Lock()
	_, ok := v.holders[key]
	v.mu.Unlock()
	if ok {
		return fp, nil
	}
	c, err := v.chainFor(fp, certs)
	if err != nil {
		return fp, err
	}
	msg := holderMessage(name, from, fp)
	v.sigChecks.Add(1)
	switch k := c.leaf.PublicKey.(type) {
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(k, d[:], sig)
	}
	if !ok {
		return fp, fmt.Errorf("%w: %w: holder proof of %s does not verify", ErrForbidden, errForged, from)
	}
	v.mu.Lock()
	if len(v.holders) >= maxHolders {
		clear(v.holders) // peers prove themselves again, once each
	}
	v.holders[key] = struct{}{}
	v.mu.Unlock()
	return fp, nil
}

// maxHolders bounds the holder proofs a verifier remembers.
const maxHolders = 4096

// heldBy returns the credential the sender of m proved it holds (see
// holder), nil when m carries no proof or none of its entries is signed by
// that credential.
func (s *Service) heldBy(from overlay.PeerID, m *message) (*[32]byte, error) {
	if len(m.Holder) == 0 || from == "" {
		return nil, nil
	}
	if len(m.Holder) > 32 && !slices.ContainsFunc(m.Entries, func(e *entry) bool { return string(e.CertFP[:]) == string(m.Holder[:32]) }) {
		return nil, nil // no entry of that credential here: nothing to spare
	}
	fp, err := s.verifier.holder(s.ov.Name(), from, m.Holder, m.Certs)
	if err != nil {
		return nil, err
	}
	return &fp, nil
}

// vetted returns es without the entries whose signature fails its check,
// checking those a replica took unchecked (see holder) before they leave
// it, and dropping the failures from the store. Entries of exempt (the
// credential the requester proved it holds) go back to it unchecked: it
// checks what it signed itself.
func (s *Service) vetted(ctx context.Context, es []*entry, exempt *[32]byte) []*entry {
	out := es[:0:0]
	for _, e := range es {
		if atomic.LoadUint32(&e.unchecked) == 0 || exempt != nil && *exempt == e.CertFP {
			out = append(out, e)
			continue
		}
		if _, err := s.verifier.verify(e, s.store.chain(e.CertFP)); err != nil {
			s.cfg.Logger.Warn("replica store held an entry that fails verification; dropped", "aor", e.AOR, "err", err)
			if err := s.store.drop(ctx, e); err != nil {
				s.cfg.Logger.Warn("replica store", "err", err)
			}
			continue
		}
		atomic.StoreUint32(&e.unchecked, 0)
		out = append(out, e)
	}
	return out
}
