package lsp

import (
	"context"
	"sync"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// Maintenance, one goroutine per service: re-replication when the closest
// sets change (debounced membership changes, and a periodic check), hinted
// handoff retries (hints.go) and garbage collection of expired entries.

func (s *Service) maintain() {
	changes, unsub := s.ov.Changes()
	defer unsub()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	tick := time.NewTicker(s.cfg.RebalanceInterval)
	defer tick.Stop()
	gc := time.NewTicker(s.cfg.GCInterval)
	defer gc.Stop()
	handoff := time.NewTicker(max(s.cfg.RebalanceDelay, time.Second))
	defer handoff.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-changes:
			debounce.Reset(s.cfg.RebalanceDelay)
		case <-debounce.C:
			s.rebalance(s.ctx)
		case <-tick.C:
			s.rebalance(s.ctx)
		case <-handoff.C:
			if s.hints.len() > 0 {
				s.retryHints(s.ctx)
			}
		case <-gc.C:
			if n, err := s.store.gc(s.ctx, time.Now()); err != nil {
				s.cfg.Logger.Warn("gc", "err", err)
			} else if n > 0 {
				s.cfg.Logger.Debug("gc dropped expired entries", "n", n)
			}
		}
	}
}

// rebalance pushes records to peers that joined their closest set since they
// were placed (a join, or a replica that left or crashed being replaced).
func (s *Service) rebalance(ctx context.Context) {
	if !s.ov.Joined() {
		return // a view of itself alone would place every record here
	}
	work := s.store.replan(s.self, time.Now(), s.closest)
	if len(work) == 0 {
		return
	}
	perPeer := map[overlay.PeerID][]*entry{}
	for i := range work {
		w := &work[i]
		w.entries = s.vetted(ctx, w.entries, nil) // a forgery would fail the whole message
		if len(w.entries) > 0 && s.keptAs(w.entries[0]) != nil {
			// Stored before this node's overlay.records changed: no
			// reader looks for it here, and every replica would refuse
			// the message it went in. It expires where it is.
			continue
		}
		for _, p := range w.targets {
			perPeer[p] = append(perPeer[p], w.entries...)
		}
	}
	failed := map[overlay.PeerID]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p, es := range perPeer {
		chains := map[[32]byte][][]byte{}
		for _, e := range es {
			if _, ok := chains[e.CertFP]; !ok {
				chains[e.CertFP] = s.store.chain(e.CertFP)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 4*s.cfg.RequestTimeout)
			defer cancel()
			if err := s.storeTo(cctx, p, es, chains); err != nil {
				mu.Lock()
				failed[p] = true
				mu.Unlock()
				s.cfg.Logger.Debug("re-replication failed", "peer", p, "err", err)
			}
		}()
	}
	wg.Wait()
	pushed := 0
	for _, w := range work {
		set := make([]overlay.PeerID, 0, len(w.set))
		for _, p := range w.set {
			if !failed[p] {
				set = append(set, p)
			}
		}
		s.store.setPlaced(w.aor, set)
		pushed += len(w.targets)
	}
	s.cfg.Logger.Debug("rebalanced", "records", len(work), "pushes", pushed, "failed", len(failed))
}
