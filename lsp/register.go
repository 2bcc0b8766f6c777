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
	es          []*entry
	tried       map[peer.ID]bool
	acks        int
	merged      map[string]*entry
	chains      map[[32]byte][][]byte
	done        bool
	unreachable bool
	err         error
}

type regReply struct {
	p       peer.ID
	aors    []string
	refused map[string]bool
	quota   map[string]bool
	byAOR   map[string][]*entry
	chains  map[[32]byte][][]byte
	err     error
}

// runBatch signs a batch, writes it to every AOR's replicas and answers each
// request once its AOR has W acknowledgements (or is refused, or failed).
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
	st := map[string]*regState{}
	for _, r := range batch {
		st[r.aor] = &regState{es: r.es, tried: map[peer.ID]bool{}, merged: map[string]*entry{}, chains: map[[32]byte][][]byte{}}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	_, w := s.quorum()
	replies := make(chan regReply, 16)
	inflight := 0
	send := func(targets map[string][]peer.ID) {
		plan := map[peer.ID][]string{}
		for aor, ps := range targets {
			a := st[aor]
			for _, p := range ps {
				if !a.tried[p] {
					a.tried[p] = true
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
	answer := func(aor string, a *regState, o regOutcome) {
		a.done = true
		for _, r := range batch {
			if r.aor == aor {
				r.out <- o
			}
		}
	}
	open := len(st)
	fellBack := false
	for open > 0 {
		if inflight == 0 {
			// Replicas that could not be reached (not slow ones: see put) are
			// replaced once by the result of an iterative lookup.
			extra := map[string][]peer.ID{}
			if !fellBack {
				fellBack = true
				for aor, a := range st {
					if a.done || !a.unreachable {
						continue
					}
					ps, err := s.ov.ClosestIterative(ctx, Key(aor), s.cfg.Replicas*2)
					if err != nil {
						a.err = err
						continue
					}
					extra[aor] = ps
				}
				send(extra)
			}
			if inflight == 0 {
				for aor, a := range st {
					if !a.done {
						answer(aor, a, regOutcome{err: fmt.Errorf("%w: write quorum %d not reached: %v", ErrUnavailable, w, a.err)})
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
				if !a.done {
					answer(aor, a, regOutcome{err: fmt.Errorf("%w: write quorum %d not reached: %v", ErrUnavailable, w, ctx.Err())})
				}
			}
			go drainReplies(replies, inflight)
			return
		}
		for _, aor := range rep.aors {
			a := st[aor]
			if a.done {
				continue
			}
			switch {
			case rep.err != nil:
				a.err = rep.err
				a.unreachable = a.unreachable || errors.Is(rep.err, errDial)
				if errors.Is(rep.err, ErrForbidden) || errors.Is(rep.err, ErrInvalid) || errors.Is(rep.err, ErrTooLarge) {
					answer(aor, a, regOutcome{err: rep.err}) // no other replica will take it
					open--
				}
				continue
			case rep.refused[aor]:
				answer(aor, a, regOutcome{err: fmt.Errorf("%w: replica %s holds a newer CSeq of this Call-ID", ErrOutOfOrder, rep.p)})
				open--
				continue
			case rep.quota[aor]:
				answer(aor, a, regOutcome{err: fmt.Errorf("%w: too many bindings for %s (replica %s's record quota)", ErrTooLarge, aor, rep.p)})
				open--
				continue
			}
			a.acks++
			merge(a.merged, rep.byAOR[aor])
			for fp, c := range rep.chains {
				a.chains[fp] = c
			}
			if a.acks >= w {
				answer(aor, a, regOutcome{bs: liveBindings(a.merged, func(e *entry) string {
					c, _ := s.verifier.chainFor(e.CertFP, a.chains[e.CertFP])
					return subjectName(c)
				}, time.Now())})
				open--
			}
		}
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
// node) and returns the verified records of the accepted AORs.
func (s *Service) registerTo(ctx context.Context, p peer.ID, es []*entry, chains map[[32]byte][][]byte) regReply {
	req := &message{Type: msgRegister, Entries: es, Certs: flatten(chains)}
	var reply *message
	if p == s.self {
		reply = s.handleReplica(ctx, p, req)
		if reply.Status != statusOK {
			return regReply{p: p, err: fmt.Errorf("%w: %s", errOfStatus(reply.Status), reply.Error)}
		}
	} else {
		var err error
		reply, err = s.rpc.call(ctx, p, s.storeProto, req)
		if err != nil {
			if errors.Is(err, errDial) {
				s.ov.Suspect(p)
			}
			return regReply{p: p, err: err}
		}
	}
	sent := map[string]bool{}
	for _, e := range es {
		sent[e.AOR] = true
	}
	rep := regReply{p: p, refused: map[string]bool{}, quota: map[string]bool{}, byAOR: map[string][]*entry{}, chains: map[[32]byte][][]byte{}}
	for _, aor := range reply.AORs {
		rep.refused[aor] = true
	}
	for _, aor := range reply.Quota {
		rep.quota[aor] = true
	}
	for _, e := range reply.Entries {
		if !sent[e.AOR] || rep.refused[e.AOR] || rep.quota[e.AOR] {
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
// records (tombstones included, so the coordinator merges correctly).
func (s *Service) handleRegister(ctx context.Context, m *message) *message {
	if len(m.Entries) == 0 {
		return errorReply(fmt.Errorf("%w: REGISTER without entries", ErrMalformed))
	}
	chains, err := s.verifyAll(m.Entries, m.Certs)
	if err != nil {
		return errorReply(err)
	}
	refused, over, err := s.store.applyIf(ctx, m.Entries, chains, s.closest)
	if err != nil {
		return errorReply(err)
	}
	reply := &message{Type: msgReply}
	held := map[[32]byte][][]byte{}
	now := time.Now()
	seen := map[string]bool{}
	for _, e := range m.Entries {
		if seen[e.AOR] {
			continue
		}
		seen[e.AOR] = true
		if refused[e.AOR] {
			reply.AORs = append(reply.AORs, e.AOR)
			continue
		}
		if over[e.AOR] {
			reply.Quota = append(reply.Quota, e.AOR)
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
