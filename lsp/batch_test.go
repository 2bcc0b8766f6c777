package lsp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// TestFetchBatching: lookups from one node that pile up behind slow
// replicas go in batched FETCHes (far fewer than one per lookup and
// replica, some carrying several AORs, none an AOR twice), and every
// lookup still gets exactly its own AOR's bindings.
func TestFetchBatching(t *testing.T) {
	ca := newTestCA(t)
	cred := ca.issue(t, []string{"biloxi.example"}, nil, false)
	var fetches, maxAORs atomic.Int64
	var dupMu sync.Mutex
	var dup string
	var slow atomic.Bool
	c := newClusterWith(t, 5, []*Credential{cred}, ca, func(i int, cfg *Config) {
		cfg.fault = func(from overlay.PeerID, m *message) *message {
			if m.Type != msgFetch || !slow.Load() {
				return nil
			}
			fetches.Add(1)
			for n := int64(len(m.AORs)); ; {
				if old := maxAORs.Load(); n <= old || maxAORs.CompareAndSwap(old, n) {
					break
				}
			}
			seen := map[string]bool{}
			for _, a := range m.AORs {
				if seen[a] {
					dupMu.Lock()
					dup = a
					dupMu.Unlock()
				}
				seen[a] = true
			}
			time.Sleep(20 * time.Millisecond) // a busy replica
			return nil
		}
	})
	ctx := context.Background()
	const aors, lookups = 10, 240
	for i := range aors {
		if err := c.svcs[0].Publish(ctx, fmt.Sprintf("sip:u%d@biloxi.example", i), binding(fmt.Sprintf("sip:u%d@192.0.2.%d", i, i+1), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	slow.Store(true)
	var wrong atomic.Int64
	var firstErr atomic.Value
	inParallel(lookups, lookups, func(i int) {
		n := i % aors
		bs, err := c.svcs[4].Lookup(ctx, fmt.Sprintf("sip:u%d@biloxi.example", n))
		if err != nil {
			firstErr.CompareAndSwap(nil, err)
			wrong.Add(1)
			return
		}
		if len(bs) != 1 || bs[0].Contact != fmt.Sprintf("sip:u%d@192.0.2.%d", n, n+1) {
			firstErr.CompareAndSwap(nil, fmt.Errorf("lookup of u%d: %+v", n, bs))
			wrong.Add(1)
		}
	})
	if wrong.Load() > 0 {
		t.Fatalf("%d of %d lookups wrong, first: %v", wrong.Load(), lookups, firstErr.Load())
	}
	dupMu.Lock()
	twice := dup
	dupMu.Unlock()
	if twice != "" {
		t.Fatalf("a FETCH asked for %s twice", twice)
	}
	// Unbatched: a FETCH per lookup to each remote replica (2 or 3).
	if f := fetches.Load(); f >= lookups || maxAORs.Load() < 2 {
		t.Fatalf("%d FETCHes for %d lookups, at most %d AORs in one: not batched", f, lookups, maxAORs.Load())
	}
	t.Logf("%d FETCHes for %d lookups, up to %d AORs in one", fetches.Load(), lookups, maxAORs.Load())
}

// TestFetchChargedPerAOR: a FETCH of n AORs takes n of the sender's
// tokens (the ones past the first as a debt its next requests pay), and
// one of more than maxGetAORs is refused: a batch costs a replica no more
// than its lookups alone would have.
func TestFetchChargedPerAOR(t *testing.T) {
	ca := newTestCA(t)
	c := newCluster(t, 3, nil, ca)
	c.svcs[0].limit = newLimiter(0.001, 5)
	aorsN := func(n int) *message {
		m := &message{Type: msgFetch}
		for i := range n {
			m.AORs = append(m.AORs, fmt.Sprintf("sip:u%d@biloxi.example", i))
		}
		return m
	}
	rateLimited := func(err error) bool {
		return errors.Is(err, ErrUnavailable) && strings.Contains(err.Error(), "rate limited")
	}
	if _, err := c.raw(1, c.ovs[0].ID(), aorsN(maxGetAORs+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("FETCH of %d AORs: %v, want ErrTooLarge", maxGetAORs+1, err)
	}
	// 4 tokens left: a FETCH of 5 AORs is served and leaves a debt.
	if _, err := c.raw(1, c.ovs[0].ID(), aorsN(5)); err != nil {
		t.Fatalf("FETCH of 5 AORs with 4 tokens: %v", err)
	}
	if _, err := c.raw(1, c.ovs[0].ID(), aorsN(1)); !rateLimited(err) {
		t.Fatalf("FETCH after the debt: %v, want rate limited", err)
	}
	if _, err := c.raw(2, c.ovs[0].ID(), aorsN(1)); err != nil {
		t.Fatalf("another peer was limited too: %v", err)
	}
}

// TestFetchBatcherBounded: behind a replica that never answers, lookups
// wait in at most maxWaitingBatches batches of at most maxBatchAORs AORs
// (past them a lookup fails at once, unavailable), and a batch whose
// lookups all gave up is not sent when a FETCH in flight ends.
func TestFetchBatcherBounded(t *testing.T) {
	ca := newTestCA(t)
	c := newCluster(t, 1, nil, ca)
	b := newFetchBatcher(c.svcs[0])
	var sent sync.Map // AOR → FETCHes that asked for it
	release := make(chan struct{})
	b.call = func(ctx context.Context, _ overlay.PeerID, m *message) (*message, error) {
		for _, a := range m.AORs {
			n, _ := sent.LoadOrStore(a, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
		select {
		case <-release:
			return &message{Type: msgReply}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p := c.ovs[0].ID()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range maxFetchesInFlight { // in flight, never answered until release
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = b.fetch(ctx, p, fmt.Sprintf("sip:f%d@a.example", i)) }()
	}
	waitFor(t, 3*time.Second, "FETCHes in flight", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.by[p] != nil && b.by[p].inflight == maxFetchesInFlight
	})
	gaveUp, cancel := context.WithCancel(ctx)
	errs := make(chan error, maxWaitingBatches*maxBatchAORs)
	for i := range maxWaitingBatches * maxBatchAORs { // fills every waiting batch
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.fetch(gaveUp, p, fmt.Sprintf("sip:w%d@a.example", i))
			errs <- err
		}()
	}
	waitFor(t, 3*time.Second, "waiting batches full", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		q := b.by[p]
		return len(q.waiting) == maxWaitingBatches && len(q.waiting[maxWaitingBatches-1].aors) == maxBatchAORs
	})
	if _, err := b.fetch(ctx, p, "sip:late@a.example"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a lookup past the waiting batches: %v, want ErrUnavailable at once", err)
	}
	cancel() // every waiting lookup gives up
	for range maxWaitingBatches * maxBatchAORs {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("a waiting lookup that gave up: %v", err)
		}
	}
	close(release) // the FETCHes in flight end: nothing waits for the batches
	wg.Wait()
	waitFor(t, 3*time.Second, "the batcher empty", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.by) == 0
	})
	sent.Range(func(k, _ any) bool {
		if strings.HasPrefix(k.(string), "sip:w") {
			t.Errorf("%s was sent though its lookup gave up", k)
		}
		return true
	})
}
