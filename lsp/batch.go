package lsp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/lsnode/lsnode/overlay"
)

// Fetch batching. A lookup asks each of an AOR's replicas with a FETCH of
// its own. Under load that is one round trip per lookup per replica, and
// on a busy machine each round trip passes through half a dozen
// goroutines of two nodes: the call bench measured 2 000 lookups a second
// (6 000 FETCHes) taking over 100 ms for most, with the replicas' own
// handling under a millisecond. The write path already batches (many
// bindings per STORE); the read path does now: while maxFetchesInFlight
// FETCHes to a peer are unanswered, the next lookups for that peer wait
// and go together, in one FETCH of up to maxBatchAORs AORs, as soon as
// one in flight returns. There is no timer: a lookup to a peer with fewer in
// flight goes at once, alone, as before. A lookup only ever joins a batch
// not yet sent, so its answer is the replica's state after the lookup
// began, as its own FETCH would have been; the same AOR asked twice in
// one batch is asked once. A batch that fails for its size (a reply over
// MaxMessage or with too many certificates) is asked again AOR by AOR.
// Waiting is bounded: at most maxWaitingBatches batches per peer (past
// them a lookup's FETCH to that peer fails at once, as unavailable), and a
// batch whose lookups all gave up is not sent (a replica that accepts
// FETCHes and never answers drains 8 per RequestTimeout, slower than
// lookups arrive).

// maxFetchesInFlight bounds the FETCHes in flight to one peer before
// lookups for it are batched; maxBatchAORs the AORs of one batch (their
// certificates must fit maxCerts); maxWaitingBatches the batches waiting
// for one peer.
const (
	maxFetchesInFlight = 8
	maxBatchAORs       = 16
	maxWaitingBatches  = 4
)

// fetchBatcher holds, per peer, the FETCHes in flight and the batches
// waiting for one of them to end.
type fetchBatcher struct {
	s    *Service
	call func(ctx context.Context, p overlay.PeerID, m *message) (*message, error) // s.call; tests replace it
	mu   sync.Mutex
	by   map[overlay.PeerID]*peerFetches
}

type peerFetches struct {
	inflight int
	waiting  []*fetchBatch // not yet sent, oldest first
}

// fetchBatch is one FETCH being gathered, then sent: done is closed once
// reply and err are set. waiters counts the lookups still waiting for it
// (guarded by the batcher's mu).
type fetchBatch struct {
	aors    []string
	waiters int
	done    chan struct{}
	reply   *message
	err     error
}

func newFetchBatcher(s *Service) *fetchBatcher {
	return &fetchBatcher{s: s, call: s.call, by: map[overlay.PeerID]*peerFetches{}}
}

// fetch asks p for aor's records, alone or in a batch, and returns the
// reply (which may hold other AORs' entries too).
func (b *fetchBatcher) fetch(ctx context.Context, p overlay.PeerID, aor string) (*message, error) {
	b.mu.Lock()
	q := b.by[p]
	if q == nil {
		q = &peerFetches{}
		b.by[p] = q
	}
	if q.inflight < maxFetchesInFlight {
		q.inflight++
		b.mu.Unlock()
		defer b.finished(p)
		return b.call(ctx, p, &message{Type: msgFetch, AORs: []string{aor}})
	}
	batch := q.join(aor)
	b.mu.Unlock()
	if batch == nil {
		return nil, fmt.Errorf("%w: %s: %d FETCHes in flight and %d batches waiting", ErrUnavailable, p, maxFetchesInFlight, maxWaitingBatches)
	}
	select {
	case <-batch.done:
	case <-ctx.Done():
		b.mu.Lock()
		batch.waiters--
		b.mu.Unlock()
		return nil, ctx.Err()
	}
	if batch.err != nil && len(batch.aors) > 1 && (errors.Is(batch.err, overlay.ErrFrameTooLarge) || errors.Is(batch.err, ErrTooLarge)) {
		return b.call(ctx, p, &message{Type: msgFetch, AORs: []string{aor}})
	}
	return batch.reply, batch.err
}

// join adds aor to the newest waiting batch with room (or to a new one)
// and returns it, with one more waiter; nil when maxWaitingBatches are
// full. Locked.
func (q *peerFetches) join(aor string) *fetchBatch {
	n := len(q.waiting)
	if n > 0 {
		last := q.waiting[n-1]
		has := slices.Contains(last.aors, aor)
		if !has && len(last.aors) < maxBatchAORs {
			last.aors, has = append(last.aors, aor), true
		}
		if has {
			last.waiters++
			return last
		}
	}
	if n >= maxWaitingBatches {
		return nil
	}
	batch := &fetchBatch{aors: []string{aor}, waiters: 1, done: make(chan struct{})}
	q.waiting = append(q.waiting, batch)
	return batch
}

// finished ends one FETCH to p: the oldest waiting batch that a lookup
// still waits for, if any, is sent in its place (those none waits for
// are dropped).
func (b *fetchBatcher) finished(p overlay.PeerID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.by[p]
	q.inflight--
	var batch *fetchBatch
	for batch == nil && len(q.waiting) > 0 {
		if w := q.waiting[0]; w.waiters > 0 {
			batch = w
		} else {
			close(w.done)
		}
		q.waiting[0] = nil
		q.waiting = q.waiting[1:]
	}
	if batch == nil {
		if q.inflight == 0 {
			delete(b.by, p)
		}
		return
	}
	q.inflight++
	if b.s.spawn(func() { b.send(p, batch) }) {
		return
	}
	// Closed: nothing waiting will be sent.
	for _, w := range append(q.waiting, batch) {
		w.err = ErrClosed
		close(w.done)
	}
	q.waiting = nil
	q.inflight--
	if q.inflight == 0 {
		delete(b.by, p)
	}
}

// send asks p for batch's AORs and hands the reply to its lookups.
func (b *fetchBatcher) send(p overlay.PeerID, batch *fetchBatch) {
	ctx, cancel := context.WithTimeout(b.s.ctx, b.s.cfg.RequestTimeout)
	batch.reply, batch.err = b.call(ctx, p, &message{Type: msgFetch, AORs: batch.aors})
	cancel()
	close(batch.done)
	b.finished(p)
}
