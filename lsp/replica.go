package lsp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// The replica side: the stream handlers of both protocols (each request
// rate limited per peer) and the replica protocol (STORE, REGISTER, FETCH)
// over this node's store.

// handleStream serves one inbound stream with h until it ends or the
// service closes (Close resets it and waits for this).
func (s *Service) handleStream(st overlay.Stream, h func(context.Context, overlay.PeerID, *message) *message) {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		st.Reset()
		return
	}
	s.wg.Add(1)
	s.serving[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.serving, st)
		s.mu.Unlock()
		s.wg.Done()
	}()
	serve(s.ctx, st, s.cfg.MaxMessage, &s.rpc.frames, func(ctx context.Context, from overlay.PeerID, m *message) *message {
		if !s.limit.allow(from) {
			return errorReply(ErrRateLimited)
		}
		return h(ctx, from, m)
	})
}

// handleReplica answers one request of the replica protocol.
func (s *Service) handleReplica(ctx context.Context, from overlay.PeerID, m *message) *message {
	if s.cfg.fault != nil {
		if r := s.cfg.fault(from, m); r != nil {
			return r
		}
	}
	switch m.Type {
	case msgStore:
		return s.handleStore(ctx, from, m)
	case msgRegister:
		return s.handleRegister(ctx, from, m)
	case msgFetch:
		// One token per AOR (the message's own was taken): a batch of
		// lookups costs what they would have alone, paid for (like a
		// client read's extra rounds) by the peer's next requests.
		if len(m.AORs) > maxGetAORs {
			return errorReply(fmt.Errorf("%w: FETCH of %d AORs, at most %d", ErrTooLarge, len(m.AORs), maxGetAORs))
		}
		s.limit.charge(from, len(m.AORs)-1)
		return s.handleFetch(m)
	case msgWatch:
		return s.handleWatch(ctx, from, m)
	}
	return errorReply(fmt.Errorf("%w: message type %d on the replica protocol", ErrMalformed, m.Type))
}

// handleFetch answers the records of the AORs asked, as this replica holds
// them (tombstones included), with the chains they need.
func (s *Service) handleFetch(m *message) *message {
	reply := &message{Type: msgReply}
	chains := map[[32]byte][][]byte{}
	now := time.Now()
	for _, aor := range m.AORs {
		canon, err := Canonical(aor)
		if err != nil || canon != aor {
			return errorReply(fmt.Errorf("%w: AOR %q is not canonical", ErrMalformed, aor))
		}
		reply.Entries = append(reply.Entries, s.vetted(s.ctx, s.store.get(aor, now, chains), nil)...)
	}
	reply.Certs = flatten(chains)
	return reply
}

// handleStore is the replica side of STORE: verify everything, merge it
// all or nothing. A write over the record quota is answered with the
// record (the proof the writer checks).
func (s *Service) handleStore(ctx context.Context, from overlay.PeerID, m *message) *message {
	held, err := s.heldBy(from, m)
	if err != nil {
		return errorReply(err)
	}
	n, err := s.applyVerified(ctx, m.Entries, m.Certs, held)
	if err != nil {
		s.cfg.Logger.Info("store refused", "from", from, "err", err)
		reply := errorReply(err)
		var qe *quotaError
		if errors.As(err, &qe) && len(qe.proof) > 0 {
			chains := map[[32]byte][][]byte{}
			for _, e := range qe.proof {
				chains[e.CertFP] = s.store.chain(e.CertFP)
			}
			reply.Entries, reply.Certs = s.vetted(ctx, qe.proof, held), flatten(chains)
		}
		return reply
	}
	return &message{Type: msgReply, Count: uint64(n)}
}

// handleRegister is the replica side of REGISTER: verify everything, apply
// AOR by AOR under the Call-ID/CSeq rule and answer with the accepted AORs'
// records (tombstones included, so the coordinator merges correctly) and
// the refused AORs' proof: the entries that beat the write, or the record
// over its quota.
func (s *Service) handleRegister(ctx context.Context, from overlay.PeerID, m *message) *message {
	if len(m.Entries) == 0 {
		return errorReply(fmt.Errorf("%w: REGISTER without entries", ErrMalformed))
	}
	holder, err := s.heldBy(from, m)
	if err != nil {
		return errorReply(err)
	}
	chains, err := s.verifyAll(m.Entries, m.Certs, holder)
	if err != nil {
		return errorReply(err)
	}
	held := map[[32]byte][][]byte{}
	refused, over, proof, err := s.store.applyIf(ctx, m.Entries, chains, s.closest)
	if err != nil {
		return errorReply(err)
	}
	for fp, c := range chains {
		held[fp] = c
	}
	for _, e := range m.Entries {
		s.vetLater(e)
	}
	reply := &message{Type: msgReply}
	now := time.Now()
	seen := map[string]bool{}
	for _, e := range m.Entries {
		if seen[e.AOR] {
			continue
		}
		seen[e.AOR] = true
		if refused[e.AOR] {
			reply.AORs = append(reply.AORs, e.AOR)
			reply.Entries = append(reply.Entries, proof[e.AOR]...)
			continue
		}
		if over[e.AOR] {
			reply.Quota = append(reply.Quota, e.AOR)
			reply.Entries = append(reply.Entries, proof[e.AOR]...)
			continue
		}
		reply.Entries = append(reply.Entries, s.store.get(e.AOR, now, held)...)
	}
	reply.Entries = s.vetted(ctx, reply.Entries, holder)
	reply.Certs = flatten(held)
	return reply
}

// applyVerified verifies every entry (all or nothing; held: see
// verifyHeld) and merges them into the local store.
func (s *Service) applyVerified(ctx context.Context, es []*entry, certs [][]byte, held *[32]byte) (int, error) {
	chains, err := s.verifyAll(es, certs, held)
	if err != nil {
		return 0, err
	}
	n, err := s.store.apply(ctx, es, chains, s.closest)
	if err == nil {
		for _, e := range es {
			s.vetLater(e)
		}
	}
	return n, err
}

// keptAs refuses an entry not kept as this overlay keeps records
// (Config.PrivateRecords): with private records, an AOR in clear that has a
// private name (a reader would never look for it there); without, a
// private name. A writer configured unlike the overlay learns it at once.
func (s *Service) keptAs(e *entry) error {
	switch private := isPrivateName(e.AOR); {
	case private && !s.cfg.PrivateRecords:
		return fmt.Errorf("%w: a private record, and this overlay keeps records in clear", ErrRecordsMode)
	case !private && s.cfg.PrivateRecords:
		if _, ok := privateName(e.AOR); ok {
			return fmt.Errorf("%w: %q in clear, and this overlay keeps private records", ErrRecordsMode, e.AOR)
		}
	}
	return nil
}

// verifyAll verifies every entry (all or nothing; held: see verifyHeld)
// and returns the verified chains by fingerprint.
func (s *Service) verifyAll(es []*entry, certs [][]byte, held *[32]byte) (map[[32]byte][][]byte, error) {
	chains := map[[32]byte][][]byte{}
	for _, e := range es {
		if err := s.keptAs(e); err != nil {
			return nil, err
		}
		c, err := s.verifier.verifyHeld(e, certs, held)
		if err != nil {
			return nil, err
		}
		chains[e.CertFP] = c.ders
	}
	return chains, nil
}
