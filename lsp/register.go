package lsp

import (
	"context"
	"fmt"
	"time"
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
	regQueue        = 4096 // queued registrations; beyond, Register sheds (ErrUnavailable)
	regPipeline     = 8    // batches in flight at once
	regBatchAORs    = 64   // AORs per batch (a reply carries each one's record)
	regBatchEntries = 512  // entries per batch
	// regLinger: how long a batch waits to fill while another is in
	// flight; a lone request still goes at once. Each batch costs a
	// message to every replica of its AORs (on 10 nodes, nearly all of
	// them) and a signature check there. 1 -> 3 ms: at 2000 REGISTERs/s
	// batches grew from 3.9 to 6.2 AORs and the testnet's CPU per
	// REGISTER fell by about a fifth. 3 -> 8 ms: 6.7-7.0 -> 13.3-14.7
	// AORs, CPU per REGISTER 278/308 -> 271/276/283 us digest off,
	// 327/336 -> 281/289/276 us digest on (register bench,
	// LSNODE_BENCH_CPUONLY=1 LSNODE_BENCH_HOLD=10, one run each; 15 ms:
	// 22 AORs, 241 and 296 us). Under load a REGISTER waits up to 8 ms
	// more for its 200: with LSNODE_BENCH_RATES=6000 LSNODE_BENCH_HOLD=10,
	// one run each, 3 -> 8 ms took the latency at 3000/s from p50 4 / p99
	// 12 to 8 / 24 ms digest off, 4 / 36 to 12 / 28 ms digest on, and the
	// digest-on goodput at 12000/s from 46% (no recovery in 10 s) to 83%
	// of 6000/s (recovery 2 s).
	regLinger = 8 * time.Millisecond
)

type regReq struct {
	ctx context.Context // the caller's: once done, nobody waits for the outcome
	aor string          // the name its record is stored under
	k   *sealer         // opens the record (nil: in clear)
	es  []*entry
	out chan regOutcome // buffered: the batch never blocks on a caller that left
}

// gone reports whether r's caller has stopped waiting, and then answers
// it (unread) so r can be dropped: under overload the queue must not turn
// into work nobody waits for, or the service never catches up.
func (r *regReq) gone() bool {
	if r.ctx.Err() == nil {
		return false
	}
	r.out <- regOutcome{err: r.ctx.Err()}
	return true
}

type regOutcome struct {
	bs  []Binding
	err error
}

// Register implements Registry.
func (s *Service) Register(ctx context.Context, aor string, bindings ...Binding) (_ []Binding, err error) {
	defer s.observe("register", time.Now(), &err)
	canon, k, err := recordOf(s.cfg.PrivateRecords, aor)
	if err != nil {
		return nil, err
	}
	es, err := build(s.cfg.Credential, &s.clk, canon, bindings, k)
	if err != nil {
		return nil, err
	}
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	r := &regReq{ctx: ctx, aor: es[0].AOR, k: k, es: es, out: make(chan regOutcome, 1)}
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
		if first.gone() {
			s.regDropped.Add(1)
			continue
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
			if r.gone() {
				s.regDropped.Add(1)
				return
			}
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
		if !s.spawn(func() {
			defer func() { <-s.regSlots }()
			s.runBatch(batch)
		}) {
			return // closing: the callers get ErrClosed
		}
	}
}

// runBatch signs a batch with one signature and writes it to every AOR's
// replicas with REGISTER through the write coordinator, answering each
// request as soon as its AOR is decided: its live bindings, merged from
// the acknowledging replicas' records. The whole batch is bounded by
// RequestTimeout (its callers' own contexts may be longer).
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
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	s.writeQuorum(ctx, msgRegister, all, chainsOf(s.cfg.Credential), func(aor string, o writeOutcome) {
		for _, r := range batch {
			if r.aor == aor {
				out := regOutcome{err: o.err}
				if o.err == nil {
					out.bs = s.live(s.opened(r.k, o.merged, o.chains), o.chains)
				}
				r.out <- out
			}
		}
	})
}
