package lsp

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// Hinted handoff: a store that failed on a replica (down, overloaded) is
// kept and retried once the replica is alive again, so an acknowledged
// write reaches every replica it was meant for even if the holders'
// placement bookkeeping already counted that replica in.
const (
	maxHints     = 1024             // batches kept; beyond, the oldest go
	hintLifetime = 10 * time.Minute // then the rebalancer is the only way
)

type hint struct {
	p      overlay.PeerID
	es     []*entry
	chains map[[32]byte][][]byte
	until  time.Time
}

type hints struct {
	mu   sync.Mutex
	list []hint
}

// retryable reports whether a failed store may succeed later (not a
// refusal of the write itself).
func retryable(err error) bool {
	return err != nil && !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrInvalid) &&
		!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrOutOfOrder) &&
		!errors.Is(err, ErrClosed)
}

func (h *hints) add(p overlay.PeerID, es []*entry, chains map[[32]byte][][]byte, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.list) >= maxHints {
		h.list = h.list[1:]
	}
	h.list = append(h.list, hint{p: p, es: es, chains: chains, until: now.Add(hintLifetime)})
}

func (h *hints) take() []hint {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.list
	h.list = nil
	return l
}

func (h *hints) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.list)
}

// retryHints stores what failed earlier on replicas that are alive again;
// what still fails (or whose replica is still down) is kept until it
// expires.
func (s *Service) retryHints(ctx context.Context) {
	now := time.Now()
	var keep []hint
	for _, h := range s.hints.take() {
		if now.After(h.until) {
			continue
		}
		if !s.ov.Alive(h.p) {
			keep = append(keep, h)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		err := s.storeTo(cctx, h.p, h.es, h.chains)
		cancel()
		if retryable(err) {
			keep = append(keep, h)
		}
	}
	for _, h := range keep {
		s.hints.add(h.p, h.es, h.chains, now)
	}
}
