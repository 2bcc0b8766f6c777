package lsp

import (
	"errors"
	"fmt"

	"github.com/lsnode/lsnode/overlay"
)

// Write votes. The write coordinator (writeQuorum: STORE for Publish,
// Remove and PUT; REGISTER for Register) counts each replica's answer for
// each AOR here, so that no single replica can veto a write: a refusal is one vote, believed
// only with proof the coordinator checks itself, and a replica that refuses
// a valid write without proof is distrusted and replaced by the next
// closest member, as a failed one is.

// verdict is what one replica's answer counts for in one AOR's write.
type verdict int

const (
	// voteAck: the replica stored the write.
	voteAck verdict = iota
	// voteFailed: no answer (unreachable, slow, overloaded, rate limited).
	// The slot is lost; unreachable replicas are replaced by the
	// coordinator's iterative fallback.
	voteFailed
	// voteRefused: refused with proof that its record is full (the
	// record's signed entries, too many with the write), or because the
	// replica keeps records unlike this node (ErrRecordsMode). One vote against:
	// the write fails once so many replicas refuse that W acks are
	// impossible.
	voteRefused
	// voteFinal: the write itself cannot succeed. Refused as out of order
	// with proof, a signed entry of the same binding that beats the write
	// (RFC 3261 §10.3 step 7): it would lose every merge to that entry
	// anyway. Or too large for this node to send at all.
	voteFinal
	// voteDoubt: refused for a reason no one can check (a domain over its
	// quota on that replica, a message size limit). Not distrusted, but no
	// veto either: the next closest member takes the slot.
	voteDoubt
	// voteLie: refused a write this node verified, without valid proof.
	// Distrusted like a replica serving a forgery; the next closest member
	// takes the slot.
	voteLie
)

// answer is one replica's answer to a write, as it concerns one AOR: the
// error or refusal (nil: stored) and the proof sent with a refusal
// (unverified entries and the certificates they need).
type answer struct {
	claim  error
	remote bool // claim came from the replica (false: this node could not send)
	proof  []*entry
	certs  [][]byte
}

// tally counts the votes on one AOR's write: W acks of R replica slots.
type tally struct {
	r, w     int
	acks     int
	refused  int   // proven refusals (voteRefused)
	subs     int   // substitutes sent for lies and doubts
	inflight int   // writes sent and not answered
	done     bool  // the outcome is decided
	err      error // the outcome when done: nil or why it failed
	refusal  error // the last proven refusal
	doubt    error // the last unproven refusal (a doubt or a lie)
	failure  error // the last failure
	// interrupted: the write was cut short (its context ended, or the
	// service closed) rather than running out of replicas to try.
	interrupted bool
	unreachable bool // a replica could not be dialled
	tried       map[overlay.PeerID]bool
}

func newTally(r, w int) *tally {
	return &tally{r: r, w: w, tried: map[overlay.PeerID]bool{}}
}

// sent records a write to p.
func (t *tally) sent(p overlay.PeerID) {
	t.tried[p] = true
	t.inflight++
}

// count records one answer's verdict; it reports whether the next closest
// member should take the slot.
func (t *tally) count(v verdict, a answer) (replace bool) {
	t.inflight--
	if t.done {
		return false
	}
	switch v {
	case voteAck:
		t.acks++
		if t.acks >= t.w {
			t.done = true
		}
	case voteFailed:
		t.failure = a.claim
		t.unreachable = t.unreachable || errors.Is(a.claim, errDial)
	case voteRefused:
		t.refused++
		t.refusal = a.claim
		if t.refused > t.r-t.w {
			t.done, t.err = true, a.claim // W acks are impossible
		}
	case voteFinal:
		t.done, t.err = true, a.claim
	case voteDoubt, voteLie:
		t.doubt = a.claim
		if t.subs < t.r {
			t.subs++
			return true
		}
	}
	return false
}

// fail decides the write failed: nothing more is in flight or to try, or
// the write was interrupted. A proven refusal is final; an unproven one is
// the answer only when the replicas ran out, never when the write was cut
// short: one replica's unproven word must not turn a retryable timeout
// into a permanent refusal.
func (t *tally) fail() error {
	if !t.done {
		t.done = true
		switch {
		case t.refusal != nil:
			t.err = t.refusal
		case t.doubt != nil && !t.interrupted:
			t.err = t.doubt
		case t.failure != nil:
			// Both wrapped: the caller may ask for its context's error.
			t.err = fmt.Errorf("%w: write quorum %d not reached: %w", ErrUnavailable, t.w, t.failure)
		default:
			t.err = fmt.Errorf("%w: write quorum %d not reached", ErrUnavailable, t.w)
		}
	}
	return t.err
}

// vote judges p's answer a for the write of es (the entries of aor),
// counts it in t, distrusts p if it lied, and returns the verdict and the
// member that takes p's slot, if any (not yet marked sent).
func (s *Service) vote(t *tally, p overlay.PeerID, aor string, es []*entry, a answer) (verdict, overlay.PeerID, bool) {
	v, why := s.judge(aor, es, a)
	if v == voteLie {
		s.distrust.add(p, why, s.cfg.Logger)
	}
	if v == voteFinal || v == voteRefused {
		a.claim = why
	}
	if !t.count(v, a) {
		return v, "", false
	}
	sub, ok := s.substitute(aor, t.tried)
	return v, sub, ok
}

// substitute returns the closest member not tried yet and not distrusted.
func (s *Service) substitute(aor string, tried map[overlay.PeerID]bool) (overlay.PeerID, bool) {
	for _, p := range s.ov.Closest(Key(aor), len(tried)+1+s.distrust.count()) {
		if !tried[p] && !s.distrust.has(p) {
			return p, true
		}
	}
	return "", false
}

// judge classifies an answer for the write of es (entries of aor, which
// this node signed or verified). For a proven refusal it returns the error
// to fail the write with; for a lie, why it is one.
func (s *Service) judge(aor string, es []*entry, a answer) (verdict, error) {
	switch {
	case a.claim == nil:
		return voteAck, nil
	case !a.remote && errors.Is(a.claim, ErrTooLarge):
		return voteFinal, a.claim
	case !a.remote:
		return voteFailed, nil
	case errors.Is(a.claim, ErrOutOfOrder):
		for _, o := range a.proof {
			if o.AOR != aor {
				continue
			}
			for _, e := range es {
				if o.B.ID() != e.B.ID() || !beats(o, e) {
					continue
				}
				if _, err := s.verifier.verify(o, a.certs); err != nil {
					return voteLie, fmt.Errorf("out-of-order proof fails verification: %w", err)
				}
				return voteFinal, fmt.Errorf("%w: a replica holds CSeq %d of Call-ID %q for %s (signed %s)",
					ErrOutOfOrder, o.B.CSeq, o.B.CallID, o.B.ID(), o.B.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z"))
			}
		}
		return voteLie, fmt.Errorf("refused as out of order without proof: %w", a.claim)
	case errors.Is(a.claim, ErrTooLarge):
		var proof []*entry
		for _, o := range a.proof {
			if o.AOR == aor {
				proof = append(proof, o)
			}
		}
		if len(proof) == 0 {
			return voteDoubt, nil // a domain quota or a size limit: unverifiable
		}
		if over, err := s.overRecordQuota(proof, es, a.certs); err != nil {
			return voteLie, fmt.Errorf("record quota proof: %w", err)
		} else if !over {
			return voteLie, errors.New("refused by the record quota, but its record with the write is within it")
		}
		return voteRefused, fmt.Errorf("%w: %s: over the record quota of a replica (%d entries)", ErrTooLarge, aor, len(proof))
	case errors.Is(a.claim, ErrRecordsMode):
		// An honest replica configured unlike this node: every replica
		// answers so, and the write fails once W acks are impossible. A
		// liar saying so is one vote against, no veto.
		return voteRefused, a.claim
	case errors.Is(a.claim, ErrForbidden), errors.Is(a.claim, ErrInvalid), errors.Is(a.claim, ErrMalformed), errors.Is(a.claim, ErrBadAOR):
		// This node signed or verified the write: no honest replica (with
		// the overlay's trust anchors and a sane clock) refuses it.
		return voteLie, fmt.Errorf("refused a valid write: %w", a.claim)
	}
	return voteFailed, nil
}

// overRecordQuota reports whether a record of proof entries (all of one
// AOR) with es written would exceed this node's record quota, verifying
// each proof entry; proof longer than the quota allows is no proof.
func (s *Service) overRecordQuota(proof, es []*entry, certs [][]byte) (bool, error) {
	s.store.mu.RLock()
	maxN, maxBytes := s.store.maxEntries, s.store.maxBytes
	s.store.mu.RUnlock()
	if len(proof) > maxN {
		return false, fmt.Errorf("%d entries, more than a record holds", len(proof))
	}
	rec := map[string]*entry{}
	for _, o := range proof {
		if _, dup := rec[o.B.ID()]; dup {
			return false, fmt.Errorf("binding %s twice", o.B.ID())
		}
		if _, err := s.verifier.verify(o, certs); err != nil {
			return false, err
		}
		rec[o.B.ID()] = o
	}
	for _, e := range es {
		rec[e.B.ID()] = e
	}
	n := 0
	for _, e := range rec {
		n += len(e.encode())
	}
	return len(rec) > maxN || n > maxBytes, nil
}

// beats reports whether a replica holding old refuses e as out of order
// (RFC 3261 §10.3 step 7): the same binding from the same Call-ID with an
// equal or higher CSeq, other content, and old wins their merge. An
// identical entry is no conflict, so a retried request is idempotent.
func beats(old, e *entry) bool {
	return old.B.CallID == e.B.CallID && old.B.CSeq >= e.B.CSeq && old.leaf != e.leaf && old.newer(e)
}
