package lsp

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

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
// What the replica stores then carries a signature it did not check
// (entry.unchecked). It checks it before the entry leaves the replica
// (Service.vetted) or decides anything for someone else (an out-of-order
// refusal, a record quota: store.vetLocked), and buries a forgery as a
// ghost, so a holder that sends a bad signature loses its own entries and
// gains nothing it could not do with a good one; no reader or writer sees
// the forgery and takes the replica for a liar. A proof named for another
// peer, replayed by someone else, grants nothing: the peer must be the one
// the message came from. A proof expires within holderLife.

// holderContext is prepended to what a holder proof signs.
const holderContext = "lsnode lsp/v1 holder\x00"

// A proof is good for holderLife (a stolen peer key replays it for that
// long at most) and renewed when half of it is left.
const holderLife = time.Hour

// holderProofSize bounds a proof on the wire: a fingerprint, an expiry
// and a signature.
const holderProofSize = 32 + 8 + maxSigSize

// holderMessage is what a holder proof signs.
func holderMessage(name string, p overlay.PeerID, fp [32]byte, expires uint64) []byte {
	msg := append([]byte(holderContext), name...)
	msg = append(msg, 0)
	msg = append(msg, p...)
	msg = append(msg, 0)
	msg = append(msg, fp[:]...)
	return binary.BigEndian.AppendUint64(msg, expires)
}

// holderProof is a proof this node sends and when it expires.
type holderProof struct {
	b       []byte
	expires time.Time
}

// holderProof returns this node's current holder proof, signing a new one
// when half of the current one's life is gone.
func (s *Service) holderProof() ([]byte, error) {
	now := time.Now()
	if h := s.holder.Load(); h != nil && now.Add(holderLife/2).Before(h.expires) {
		return h.b, nil
	}
	exp := now.Add(holderLife).Truncate(time.Second)
	b, err := s.cfg.Credential.holderProof(s.ov.Name(), s.self, exp)
	if err != nil {
		return nil, err
	}
	s.holder.Store(&holderProof{b: b, expires: exp})
	return b, nil
}

// holderProof is c's proof that peer p holds it in overlay name until
// expires: its fingerprint, the expiry (Unix seconds), then its signature.
func (c *Credential) holderProof(name string, p overlay.PeerID, expires time.Time) ([]byte, error) {
	exp := uint64(expires.Unix())
	msg := holderMessage(name, p, c.fp, exp)
	sig, err := c.signMsg(msg)
	if err != nil {
		return nil, fmt.Errorf("lsp: holder proof: %w", err)
	}
	b := append(append([]byte(nil), c.fp[:]...), binary.BigEndian.AppendUint64(nil, exp)...)
	return append(b, sig...), nil
}

// holder checks a holder proof that came with a message from peer from in
// overlay name, and returns the fingerprint of the credential from holds.
// A peer that proved it holds that credential before, with a proof not
// yet expired, costs a map lookup; a bad, expired or too long-lived proof
// is an error (ErrForbidden), as a bad signature is.
func (v *Verifier) holder(name string, from overlay.PeerID, proof []byte, certs [][]byte) ([32]byte, error) {
	var fp [32]byte
	if len(proof) <= 40 || len(proof) > holderProofSize {
		return fp, fmt.Errorf("%w: holder proof of %d bytes", ErrMalformed, len(proof))
	}
	copy(fp[:], proof)
	exp := binary.BigEndian.Uint64(proof[32:40])
	sig := proof[40:]
	now := v.now()
	key := holderKey{peer: from, fp: fp}
	v.mu.Lock()
	until, ok := v.holders[key]
	v.mu.Unlock()
	if ok && now.Before(until) {
		return fp, nil
	}
	expires := time.Unix(int64(min(exp, 1<<40)), 0)
	switch {
	case !now.Before(expires.Add(v.skew)):
		return fp, fmt.Errorf("%w: holder proof of %s expired at %s", ErrForbidden, from, expires.UTC().Format(time.RFC3339))
	case expires.After(now.Add(holderLife + v.skew)):
		return fp, fmt.Errorf("%w: holder proof of %s valid until %s, longer than %v", ErrForbidden, from, expires.UTC().Format(time.RFC3339), holderLife)
	}
	c, err := v.chainFor(fp, certs)
	if err != nil {
		return fp, err
	}
	msg := holderMessage(name, from, fp, exp)
	v.sigChecks.Add(1)
	ok = verifyMsg(c.leaf.PublicKey, msg, sig)
	if !ok {
		return fp, fmt.Errorf("%w: %w: holder proof of %s does not verify", ErrForbidden, errForged, from)
	}
	v.mu.Lock()
	if len(v.holders) >= maxHolders {
		clear(v.holders) // peers prove themselves again, once each
	}
	if c.notAfter.Before(expires) {
		expires = c.notAfter
	}
	v.holders[key] = expires
	v.mu.Unlock()
	return fp, nil
}

// holderKey names a proven holder: a peer and a credential it holds.
type holderKey struct {
	peer overlay.PeerID
	fp   [32]byte
}

// maxHolders bounds the holders a verifier remembers: a peer takes at most
// one place per credential whose key it holds.
const maxHolders = 4096

// heldBy returns the credential the sender of m proved it holds (see
// holder), nil when m carries no proof or none of its entries is signed by
// that credential.
func (s *Service) heldBy(from overlay.PeerID, m *message) (*[32]byte, error) {
	if len(m.Holder) == 0 || from == "" {
		return nil, nil
	}
	if len(m.Holder) >= 32 && !slices.ContainsFunc(m.Entries, func(e *entry) bool { return string(e.CertFP[:]) == string(m.Holder[:32]) }) {
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
	out := make([]*entry, 0, len(es))
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

// Checked in the background. An entry taken unchecked is checked at its
// first read, and that read waits for the check (BenchmarkOverlay100's
// lookups are all first reads: p50 0.83-1.05 ms in three runs, 0.69-0.96
// with background checks; second reads of the same AORs 0.51-0.66, the
// reader's own check cached too). So each replica also checks what it took in the
// background, within Config.BackgroundChecks signatures a second: at a
// light load the records a proxy reads are checked before it asks, and a
// loaded replica keeps what the holder proofs save (what it has no budget
// for waits for its read, as before). A forgery found this way is buried
// as vetted buries it.

// vetQueue bounds the entries waiting for vetLoop (about 10 s of the
// default budget, under 1 MB of entries); past it they wait for their read.
const vetQueue = 1024

// vetLater queues e for vetLoop if the replica took it unchecked and
// holds it (an entry the store skipped or refused, older than what it
// holds, costs the queue nothing). A full queue costs the write nothing
// either: it is looked at before the store's lock.
func (s *Service) vetLater(e *entry) {
	if s.cfg.BackgroundChecks <= 0 || len(s.vetq) == cap(s.vetq) || atomic.LoadUint32(&e.unchecked) == 0 || !s.store.holds(e) {
		return
	}
	select {
	case s.vetq <- e:
	default:
	}
}

// vetLoop checks the queued entries still unchecked, spending at most
// Config.BackgroundChecks signature checks a second (an entry of a root
// already checked costs none), until the service closes.
func (s *Service) vetLoop() {
	budget := uint64(s.cfg.BackgroundChecks)
	var spent uint64
	window := time.Now()
	for {
		var e *entry
		select {
		case <-s.ctx.Done():
			return
		case e = <-s.vetq:
		}
		if atomic.LoadUint32(&e.unchecked) == 0 || !s.store.holds(e) {
			continue // checked by a read meanwhile, or replaced
		}
		if now := time.Now(); now.Sub(window) >= time.Second {
			window, spent = now, 0
		}
		if spent >= budget {
			t := time.NewTimer(time.Until(window.Add(time.Second)))
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			window, spent = time.Now(), 0
		}
		before := s.verifier.sigChecks.Load()
		s.vetted(s.ctx, []*entry{e}, nil)
		s.bgChecked.Add(1)
		spent += s.verifier.sigChecks.Load() - before // others' checks meanwhile too: it errs on the side of fewer
	}
}
