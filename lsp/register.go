package lsp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Registry is implemented by location services that do a registrar's write
// in one round trip to the replicas (Service does; Client does not).
type Registry interface {
	// Register stores bindings of aor, unless a replica holds one of them
	// from the same Call-ID with an equal or higher CSeq (ErrOutOfOrder,
	// RFC 3261 §10.3 step 7), and returns the AOR's live bindings after the
	// write, merged from the write quorum: what a Lookup right after it
	// would return, without the extra round trip.
	Register(ctx context.Context, aor string, bindings ...Binding) ([]Binding, error)
}

var _ Registry = (*Service)(nil)

// Registrations are coalesced: one goroutine signs everything queued under
// one Merkle root and sends each replica one REGISTER message for all the
// AORs it holds. Batches form by themselves under load, while up to
// regPipeline earlier batches are in flight (waiting up to regLinger to
// fill); a lone request goes at once.
const (
	regQueue        = 4096             // queued registrations; beyond, Register sheds (ErrUnavailable)
	regPipeline     = 8                // batches in flight at once
	regBatchAORs    = 64               // AORs per batch (a reply carries each one's record)
	regBatchEntries = 512              // entries per batch
	regLinger       = time.Millisecond // how long a batch waits to fill while another is in flight
)

type regReq struct {
	aor string
	es  []*entry
	out chan regOutcome // buffered: the batch never blocks on a caller that left
}

type regOutcome struct {
	bs  []Binding
	err error
}

// Register implements Registry.
func (s *Service) Register(ctx context.Context, aor string, bindings ...Binding) (_ []Binding, err error) {
	defer s.observe("register", time.Now(), &err)
	es, err := build(s.cfg.Credential, &s.clk, aor, bindings)
	if err != nil {
		return nil, err
	}
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	r := &regReq{aor: es[0].AOR, es: es, out: make(chan regOutcome, 1)}
	select {
	case s.regq <- r:
	default:
		return nil, fmt.Errorf("%w: overloaded, %d registrations queued", ErrUnavailable, len(s.regq))
	}
	select {
	case o := <-r.out:
		return o.bs, o.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.ctx.Done():
		return nil, ErrClosed
	}
}

// batchLoop forms and starts batches until the service closes.
func (s *Service) batchLoop() {
	var carry []*regReq // requests for an AOR already in the batch: next batch
	for {
		var first *regReq
		if len(carry) > 0 {
			first, carry = carry[0], carry[1:]
		} else {
			select {
			case <-s.ctx.Done():
				return
			case first = <-s.regq:
			}
		}
		select {
		case s.regSlots <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		batch := []*regReq{first}
		inBatch := map[string]bool{first.aor: true}
		n := len(first.es)
		var next []*regReq
		fill := func(r *regReq) {
			if inBatch[r.aor] || len(batch) >= regBatchAORs || n+len(r.es) > regBatchEntries {
				next = append(next, r)
				return
			}
			batch = append(batch, r)
			inBatch[r.aor] = true
			n += len(r.es)
		}
		for _, r := range carry {
			fill(r)
		}
	drain:
		for len(batch) < regBatchAORs && len(next) < regBatchAORs {
			select {
			case r := <-s.regq:
				fill(r)
			default:
				break drain
			}
		}
		if len(batch) < regBatchAORs && len(s.regSlots) > 1 {
			// Under load (another batch in flight) wait a moment for more:
			// every batch costs each replica a signature verification.
			linger := time.NewTimer(regLinger)
		wait:
			for len(batch) < regBatchAORs && len(next) < regBatchAORs {
				select {
				case r := <-s.regq:
					fill(r)
				case <-linger.C:
					break wait
				case <-s.ctx.Done():
					linger.Stop()
					return
				}
			}
			linger.Stop()
		}
		carry = next
		s.regBatches.Add(1)
		s.regRequests.Add(int64(len(batch)))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runBatch(batch)
			<-s.regSlots
		}()
	}
}

// regState is the coordinator's view of one AOR of a batch.
type regState struct {
	es     []*entry
	votes  *tally
	merged map[string]*entry
	chains map[[32]byte][][]byte
}

type regReply struct {
	p       peer.ID
	aors    []string
	refused map[string]bool
	quota   map[string]bool
	byAOR   map[string][]*entry // verified records of the accepted AORs
	chains  map[[32]byte][][]byte
	proof   []*entry // unverified: the entries sent with refusals
	certs   [][]byte // the reply's certificates, for proof
	err     error
	remote  bool // err came from p
}

// about returns p's answer for aor, for the vote.
func (rep regReply) about(aor string) answer {
	switch {
	case rep.err != nil:
		return answer{claim: rep.err, remote: rep.remote}
	case rep.refused[aor]:
		return answer{claim: fmt.Errorf("%w: replica %s holds a newer CSeq of this Call-ID", ErrOutOfOrder, rep.p),
			remote: true, certs: rep.certs}.with(rep.proof, aor)
	case rep.quota[aor]:
		return answer{claim: fmt.Errorf("%w: too many bindings for %s (replica %s's quota)", ErrTooLarge, aor, rep.p),
			remote: true, certs: rep.certs}.with(rep.proof, aor)
	}
	return answer{}
}

// with returns a with proof's entries of aor as its proof.
func (a answer) with(proof []*entry, aor string) answer {
	a.proof = proof
	return a.about(aor)
}

// runBatch signs a batch, writes it to every AOR's replicas and answers each
// request once its AOR has W acknowledgements (or is refused, or failed),
// counted by vote (see put).
func (s *Service) runBatch(batch []*regReq) {
	var all []*entry
	for _, r := range batch {
		all = append(all, r.es...)
	}
	if err := s.cfg.Credential.sign(all); err != nil {
		for _, r := range batch {
			r.out <- regOutcome{err: err}
		}
		return
	}
	s.verifier.signedHere(all)
	chains := chainsOf(s.cfg.Credential)
	r, w := s.quorum()
	st := map[string]*regState{}
	for _, req := range batch {
		st[req.aor] = &regState{es: req.es, votes: newTally(r, w), merged: map[string]*entry{}, chains: map[[32]byte][][]byte{}}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	replies := make(chan regReply, 16)
	inflight := 0
	send := func(targets map[string][]peer.ID) {
		plan := map[peer.ID][]string{}
		for aor, ps := range targets {
			a := st[aor]
			for _, p := range ps {
				if !a.votes.tried[p] {
					a.votes.sent(p)
					plan[p] = append(plan[p], aor)
				}
			}
		}
		for p, aors := range plan {
			var es []*entry
			for _, aor := range aors {
				es = append(es, st[aor].es...)
			}
			inflight++
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				// Its own deadline: a store still in flight when every AOR
				// of the batch is answered completes (the third replica
				// gets the write), it is not cancelled with the batch.
				sctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
				defer cancel()
				rep := s.registerTo(sctx, p, es, chains)
				if retryable(rep.err) && s.ctx.Err() == nil {
					s.hints.add(p, es, chains, time.Now())
				}
				rep.aors = aors
				replies <- rep
			}()
		}
	}
	targets := map[string][]peer.ID{}
	for aor := range st {
		targets[aor] = s.closest(aor)
	}
	send(targets)
	open := len(st)
	answer := func(aor string, a *regState) {
		o := regOutcome{err: a.votes.err}
		if o.err == nil {
			o.bs = liveBindings(a.merged, func(e *entry) string {
				c, _ := s.verifier.chainFor(e.CertFP, a.chains[e.CertFP])
				return subjectName(c)
			}, time.Now())
		}
		for _, r := range batch {
			if r.aor == aor {
				r.out <- o
			}
		}
		open--
	}
	fellBack := false
	for open > 0 {
		if inflight == 0 {
			// Replicas that could not be reached (not slow ones: see put) are
			// replaced once by the result of an iterative lookup.
			extra := map[string][]peer.ID{}
			if !fellBack {
				fellBack = true
				for aor, a := range st {
					if a.votes.done || !a.votes.unreachable {
						continue
					}
					ps, err := s.ov.ClosestIterative(ctx, Key(aor), s.cfg.Replicas*2)
					if err != nil {
						a.votes.failure = err
						continue
					}
					extra[aor] = ps
				}
				send(extra)
			}
			if inflight == 0 {
				for aor, a := range st {
					if !a.votes.done {
						a.votes.fail()
						answer(aor, a)
					}
				}
				return
			}
		}
		var rep regReply
		select {
		case rep = <-replies:
			inflight--
		case <-ctx.Done():
			for aor, a := range st {
				if !a.votes.done {
					a.votes.failure = ctx.Err()
					a.votes.fail()
					answer(aor, a)
				}
			}
			go drainReplies(replies, inflight)
			return
		}
		extra := map[string][]peer.ID{}
		for _, aor := range rep.aors {
			a := st[aor]
			// Answers after the outcome still count: a liar among them
			// is distrusted.
			decided := a.votes.done
			v, sub, ok := s.vote(a.votes, rep.p, aor, a.es, rep.about(aor))
			if ok {
				extra[aor] = append(extra[aor], sub)
			}
			if decided {
				continue
			}
			if v == voteAck {
				merge(a.merged, rep.byAOR[aor])
				for fp, c := range rep.chains {
					a.chains[fp] = c
				}
			}
			if a.votes.done {
				answer(aor, a)
			}
		}
		send(extra)
	}
	// Every AOR is answered; the stores still in flight finish without us.
	go drainReplies(replies, inflight)
}

func drainReplies(ch <-chan regReply, n int) {
	for ; n > 0; n-- {
		<-ch
	}
}

// registerTo sends p one REGISTER for es (answered in process when p is this
// node) and returns the verified records of the accepted AORs, and the
// proof sent with the refused ones.
func (s *Service) registerTo(ctx context.Context, p peer.ID, es []*entry, chains map[[32]byte][][]byte) regReply {
	req := &message{Type: msgRegister, Entries: es, Certs: flatten(chains)}
	var reply *message
	if p == s.self {
		reply = s.handleReplica(ctx, p, req)
		if reply.Status != statusOK {
			return regReply{p: p, err: fmt.Errorf("%w: %s", errOfStatus(reply.Status), reply.Error), remote: true}
		}
	} else {
		var err error
		reply, err = s.rpc.call(ctx, p, s.storeProto, req)
		if err != nil {
			if errors.Is(err, errDial) {
				s.ov.Suspect(p)
			}
			return regReply{p: p, err: err, remote: reply != nil}
		}
	}
	sent := map[string]bool{}
	for _, e := range es {
		sent[e.AOR] = true
	}
	rep := regReply{p: p, refused: map[string]bool{}, quota: map[string]bool{}, byAOR: map[string][]*entry{},
		chains: map[[32]byte][][]byte{}, certs: reply.Certs}
	for _, aor := range reply.AORs {
		rep.refused[aor] = true
	}
	for _, aor := range reply.Quota {
		rep.quota[aor] = true
	}
	for _, e := range reply.Entries {
		if !sent[e.AOR] {
			continue
		}
		if rep.refused[e.AOR] || rep.quota[e.AOR] {
			rep.proof = append(rep.proof, e) // the vote verifies what it needs
			continue
		}
		c, err := s.verifier.verify(e, reply.Certs)
		if err != nil {
			s.cfg.Logger.Warn("replica answered with an entry that fails verification", "peer", p, "aor", e.AOR, "err", err)
			continue
		}
		rep.byAOR[e.AOR] = append(rep.byAOR[e.AOR], e)
		rep.chains[e.CertFP] = c.ders
	}
	return rep
}

// handleRegister is the replica side of REGISTER: verify everything, apply
// AOR by AOR under the Call-ID/CSeq rule and answer with the accepted AORs'
// records (tombstones included, so the coordinator merges correctly) and
// the refused AORs' proof: the entries that beat the write, or the record
// over its quota.
func (s *Service) handleRegister(ctx context.Context, m *message) *message {
	if len(m.Entries) == 0 {
		return errorReply(fmt.Errorf("%w: REGISTER without entries", ErrMalformed))
	}
	chains, err := s.verifyAll(m.Entries, m.Certs)
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
	reply.Certs = flatten(held)
	return reply
}

// RegisterStats reports how many registrations Register has sent and in how
// many batches.
func (s *Service) RegisterStats() (registrations, batches int64) {
	return s.regRequests.Load(), s.regBatches.Load()
}
