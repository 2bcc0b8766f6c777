package lsp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// Reads: Lookup (and Trace, and the client protocol's GET) ask an AOR's
// replicas in parallel, verify and merge their answers, and repair the
// replicas that answered with less than the merge.

// Lookup implements LocationService.
func (s *Service) Lookup(ctx context.Context, aor string) (_ []Binding, err error) {
	defer s.observe("lookup", time.Now(), &err)
	canon, k, err := recordOf(s.cfg.PrivateRecords, aor)
	if err != nil {
		return nil, err
	}
	merged, chains, err := s.fetch(ctx, k.nameOf(canon))
	if err != nil {
		return nil, err
	}
	return s.live(s.opened(k, merged, chains), chains), nil
}

// opened is k.openAll of a fetch's merge: a binding of a private record
// signed by an AOR certificate may not carry a registrar's fields (the
// replicas, which check that on records in clear, cannot see them).
func (s *Service) opened(k *sealer, merged map[string]*entry, chains map[[32]byte][][]byte) map[string]*entry {
	return k.openAll(merged, func(e *entry) bool {
		c, _ := s.verifier.chainFor(e.CertFP, chains[e.CertFP])
		return c == nil || c.by != nil
	})
}

// live returns the live bindings of a fetch's merge, each with its signer.
func (s *Service) live(merged map[string]*entry, chains map[[32]byte][][]byte) []Binding {
	return liveBindings(merged, func(e *entry) string {
		c, _ := s.verifier.chainFor(e.CertFP, chains[e.CertFP])
		return subjectName(c)
	}, time.Now())
}

type fetchResult struct {
	p      overlay.PeerID
	es     []*entry
	chains map[[32]byte][][]byte
	err    error
	forged error // the first entry that failed verification as a forgery
	took   time.Duration
}

// Reads wait for every replica asked, but once R−W+1 answers are in, a
// straggler gets at most twice the time those took (and at least
// minStraggle): a liar that answers fast with stale data is outvoted by the
// honest replica's newer entries, and a slow or silent one costs little.
const minStraggle = 50 * time.Millisecond

// fetch asks aor's R replicas in parallel and needs R−W+1 answers (falling
// back to an iterative lookup when too few answer); it waits for the rest
// within a straggler bound (minStraggle), asks the next R members before it
// answers "nothing", verifies and merges every answer,
// distrusts a replica that served a forgery, and repairs replicas that
// answered with less than the merge.
func (s *Service) fetch(ctx context.Context, aor string) (map[string]*entry, map[[32]byte][][]byte, error) {
	return s.fetchTraced(ctx, aor, nil, nil)
}

// fetchTraced is fetch recording what it does in tr (nil: nothing) and
// counting in rounds (nil: not counted) the rounds it took: each round of
// replicas asked and each iterative lookup is one.
func (s *Service) fetchTraced(ctx context.Context, aor string, tr *tracer, rounds *int) (map[string]*entry, map[[32]byte][][]byte, error) {
	if s.ctx.Err() != nil {
		return nil, nil, ErrClosed
	}
	if !s.ov.Joined() {
		return nil, nil, ErrNotJoined // not "none": the view may lack the replicas
	}
	r, w := s.quorum()
	need := max(1, r-w+1)
	tr.quorum(r, need)
	q := &quorumRead{s: s, aor: aor, tr: tr, rounds: rounds,
		results: make(chan fetchResult, r+4), finished: make(chan struct{}),
		tried: map[overlay.PeerID]bool{}, merged: map[string]*entry{}, chains: map[[32]byte][][]byte{}}
	defer close(q.finished) // answers still in flight are dropped
	if tr.iterative() {
		q.round()
		ps, err := s.iterative(ctx, aor, r, tr)
		if err != nil {
			return nil, nil, err
		}
		q.ask(s.trusted(ps, r), "iterative")
	} else {
		if err := s.ov.Route(ctx, Key(aor)); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		q.ask(s.closest(aor), "closest")
	}
	if err := q.wait(ctx, r, need); err != nil {
		return nil, nil, err
	}
	if len(q.answers) == 0 {
		return nil, nil, fmt.Errorf("%w: no replica of %q answered: %v", ErrUnavailable, aor, q.lastErr)
	}
	s.repair(q.answers, q.merged, q.chains, tr)
	return q.merged, q.chains, nil
}

// quorumRead is one fetch in progress: the replicas asked, their answers
// and the merge so far. Only the fetching goroutine touches it, but for
// the fields the askers read (aor, results, finished), set once.
type quorumRead struct {
	s        *Service
	aor      string
	tr       *tracer
	rounds   *int
	results  chan fetchResult
	finished chan struct{} // closed when the fetch stops reading results

	tried    map[overlay.PeerID]bool
	inflight int

	merged      map[string]*entry
	chains      map[[32]byte][][]byte
	answers     []fetchResult
	lastErr     error
	unreachable bool // a replica could not be dialled
	// The rounds after the first, each taken at most once.
	widened, rechecked, fellBack bool
}

func (q *quorumRead) round() {
	if q.rounds != nil {
		*q.rounds++
	}
}

// ask asks the peers of ps not asked yet, as one round named round.
func (q *quorumRead) ask(ps []overlay.PeerID, round string) {
	counted := false
	for _, p := range ps {
		if q.tried[p] {
			continue
		}
		if !counted {
			counted = true
			q.round()
		}
		q.tried[p] = true
		q.tr.asked(p, q.s.self, round)
		// Every answer, this node's own included, is sent from a
		// goroutine: a round may ask more peers than results buffers
		// (the iterative one asks 2R), and the fetch is its reader.
		if q.s.spawn(func() { q.askOne(p) }) {
			q.inflight++
		}
	}
}

// askOne fetches aor from p and hands the answer to the fetch, unless it
// has stopped reading.
func (q *quorumRead) askOne(p overlay.PeerID) {
	s := q.s
	start := time.Now()
	var res fetchResult
	if p == s.self {
		res = s.fetchLocal(q.aor)
	} else {
		cctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
		res = s.fetchFrom(cctx, p, q.aor)
		cancel()
	}
	res.took = time.Since(start)
	select {
	case q.results <- res:
	case <-q.finished:
	}
}

// wait collects answers until every replica asked has answered and no
// further round is worth asking, or the straggler bound runs out once
// need answers are in.
func (q *quorumRead) wait(ctx context.Context, r, need int) error {
	start := time.Now()
	var straggle <-chan time.Time
	for {
		if q.inflight == 0 && !q.more(ctx, r, need) {
			return nil
		}
		if straggle == nil && len(q.answers) >= need && len(q.merged) > 0 {
			t := time.NewTimer(min(max(minStraggle, 2*time.Since(start)), q.s.cfg.RequestTimeout))
			defer t.Stop()
			straggle = t.C
		}
		select {
		case res := <-q.results:
			q.inflight--
			q.take(res)
		case <-straggle:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take counts one replica's answer.
func (q *quorumRead) take(res fetchResult) {
	q.tr.answered(res)
	if res.forged != nil {
		q.s.distrust.add(res.p, res.forged, q.s.cfg.Logger)
	}
	if res.err != nil {
		q.lastErr = res.err
		q.unreachable = q.unreachable || errors.Is(res.err, errDial)
		return
	}
	q.answers = append(q.answers, res)
	merge(q.merged, res.es)
	for fp, c := range res.chains {
		q.chains[fp] = c
	}
}

// more is called once every replica asked has answered: it asks the next
// round, if one is due, and reports whether any answer is awaited.
//
// An empty answer is only trusted from every replica asked: a write
// acknowledged while some replicas were down may sit on one replica and a
// substitute until re-replication, and the two fastest answers could both
// be from replicas that missed it (lsnode chaos found 1 such "not found" in
// 290 under kill -9).
func (q *quorumRead) more(ctx context.Context, r, need int) bool {
	s := q.s
	// Nothing found: under churn a write may sit on substitutes (the next
	// closest) that this node's view does not count among the R, so ask
	// the next R members before saying "none".
	if len(q.merged) == 0 && !q.widened {
		q.widened = true
		q.ask(s.trusted(s.ov.Closest(Key(q.aor), 2*r+s.distrust.count()), 2*r), "widened")
		if q.inflight > 0 {
			return true
		}
	}
	// Still nothing: the members this node suspects (a dial to them
	// failed a moment ago) are left out of Closest for FailAfter, yet a
	// replica killed and restarted is back long before that, holding what
	// it held. Ask the nearest of them before saying "none" (lsnode chaos
	// saw 2 in 1398 lookups answer "none" while the holders were
	// suspected), dialling them again (overlay.Redial: once a second per
	// peer at most): the host backs off a peer whose dial failed for 5 s,
	// so the ask failed at once without a dial
	// (chaos: 7 "none" in 1415 lookups, every holder suspected and "dial
	// backoff", while the publisher's node read the binding from them).
	if len(q.merged) == 0 && !q.rechecked {
		q.rechecked = true
		suspects := s.trusted(s.ov.Suspected(Key(q.aor), r+s.distrust.count()), r)
		for _, p := range suspects {
			if !q.tried[p] {
				s.ov.Redial(p)
			}
		}
		q.ask(suspects, "suspected")
		if q.inflight > 0 {
			return true
		}
	}
	// Too few answers because replicas could not be reached (not because
	// they were slow: see writeQuorum): once, the iterative lookup's.
	if len(q.answers) >= need || q.fellBack || !q.unreachable {
		return false
	}
	q.fellBack = true
	q.round()
	ps, err := s.iterative(ctx, q.aor, s.cfg.Replicas*2, q.tr)
	if err != nil {
		q.lastErr = err
		return false
	}
	q.ask(s.trusted(ps, len(ps)), "iterative")
	return q.inflight > 0
}

// fetchLocal reads aor from this node's own store, verifying entries like a
// remote answer (cheap: chains and roots are cached), so a corrupted or
// tampered local store cannot hand out what a signature does not cover.
func (s *Service) fetchLocal(aor string) fetchResult {
	held := map[[32]byte][][]byte{}
	res := fetchResult{p: s.self, chains: map[[32]byte][][]byte{}}
	for _, e := range s.vetted(s.ctx, s.store.get(aor, time.Now(), held), nil) {
		c, err := s.verifier.verify(e, held[e.CertFP])
		if err != nil {
			s.cfg.Logger.Warn("local store holds an entry that fails verification", "aor", aor, "err", err)
			continue
		}
		res.es = append(res.es, e)
		res.chains[e.CertFP] = c.ders
	}
	return res
}

// fetchFrom asks p for aor and keeps only the entries that verify.
func (s *Service) fetchFrom(ctx context.Context, p overlay.PeerID, aor string) fetchResult {
	reply, err := s.fetches.fetch(ctx, p, aor)
	if err != nil {
		return fetchResult{p: p, err: err}
	}
	res := fetchResult{p: p, chains: map[[32]byte][][]byte{}}
	for _, e := range reply.Entries {
		if e.AOR != aor {
			continue
		}
		c, err := s.verifier.verify(e, reply.Certs)
		if err != nil {
			if errors.Is(err, errForged) && res.forged == nil {
				res.forged = err
			}
			s.cfg.Logger.Debug("replica answered with an entry that fails verification", "peer", p, "aor", aor, "err", err)
			continue
		}
		res.es = append(res.es, e)
		res.chains[e.CertFP] = c.ders
	}
	return res
}

// repair pushes the merged winners to replicas whose answer lacked them.
func (s *Service) repair(answers []fetchResult, merged map[string]*entry, chains map[[32]byte][][]byte, tr *tracer) {
	now := time.Now()
	for _, a := range answers {
		have := map[[32]byte]bool{}
		for _, e := range a.es {
			have[e.leaf] = true
		}
		var missing []*entry
		for _, e := range merged {
			if !have[e.leaf] && e.B.Expires.After(now) {
				missing = append(missing, e)
			}
		}
		if len(missing) == 0 {
			continue
		}
		tr.repaired(a.p)
		s.spawn(func() {
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
			defer cancel()
			if err := s.storeTo(ctx, a.p, missing, chains); err != nil {
				s.cfg.Logger.Debug("read repair failed", "peer", a.p, "err", err)
			}
		})
	}
}
