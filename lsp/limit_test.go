package lsp

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestLimiterTableBounded: the per-peer table stays within its bound, and
// an attacker creating peer IDs cannot reset its own drained bucket: new
// peers replace only buckets that have refilled, and share one overflow
// bucket while none has.
func TestLimiterTableBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newLimiter(1, 5)
	l.now = func() time.Time { return now }
	l.max = 100
	for i := 0; i < 5; i++ {
		if !l.allow("attacker") {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if l.allow("attacker") {
		t.Fatal("drained bucket allowed a request")
	}
	overflowed := 0
	for i := 0; i < 1000; i++ {
		if !l.allow(peer.ID(fmt.Sprintf("sybil-%d", i))) {
			overflowed++
		}
	}
	if n := l.size(); n > 100 {
		t.Fatalf("table holds %d buckets, bound 100", n)
	}
	if l.allow("attacker") {
		t.Fatal("new peer IDs reset the attacker's drained bucket")
	}
	if overflowed == 0 {
		t.Fatal("peers beyond the bound were not limited (no shared overflow bucket)")
	}
	// Once buckets have refilled, new peers take their places: their own
	// buckets, a full burst each.
	now = now.Add(10 * time.Second)
	for i := 0; i < 50; i++ {
		p := peer.ID(fmt.Sprintf("late-%d", i))
		for j := 0; j < 5; j++ {
			if !l.allow(p) {
				t.Fatalf("new peer %d, request %d refused after the table refilled", i, j)
			}
		}
	}
	if n := l.size(); n > 100 {
		t.Fatalf("table holds %d buckets, bound 100", n)
	}
}

// TestClientGetCharged: a client GET is charged one token per AOR and per
// extra round of replicas its reads take, not one per request, and holds
// at most maxGetAORs AORs.
func TestClientGetCharged(t *testing.T) {
	ca := newTestCA(t)
	c := newCluster(t, 6, nil, ca)
	frozen := time.Now()
	srv := c.svcs[0]
	srv.limit = newLimiter(1, 20)
	srv.limit.now = func() time.Time { return frozen } // no refill
	from := c.svcs[1]
	get := func(n int) error {
		m := &message{Type: msgGet}
		for i := 0; i < n; i++ {
			m.AORs = append(m.AORs, fmt.Sprintf("sip:nobody%d@biloxi.example", i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := from.rpc.call(ctx, c.ovs[0].ID(), srv.clientProto, m)
		return err
	}
	tokens := func() float64 {
		l := srv.limit
		l.mu.Lock()
		defer l.mu.Unlock()
		el := l.buckets[c.ovs[1].ID()]
		if el == nil {
			return l.burst
		}
		return el.Value.(*bucket).tokens
	}
	// Over the bound: refused before any read (its message's token spent).
	if err := get(maxGetAORs + 1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("GET of %d AORs: %v, want ErrTooLarge", maxGetAORs+1, err)
	}
	// An AOR nobody holds: its R closest, then the next R (6 nodes) are
	// asked: two rounds, two tokens.
	if err := get(1); err != nil {
		t.Fatal(err)
	}
	if got := tokens(); got != 17 {
		t.Fatalf("one GET of one unknown AOR left %v tokens of 19, want 17", got)
	}
	// 8 AORs cost 16: 1 token left, and the next GET of 8 is refused.
	if err := get(8); err != nil {
		t.Fatal(err)
	}
	if err := get(8); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("GET beyond the peer's tokens: %v, want ErrRateLimited", err)
	}
	if got := tokens(); got > 0 {
		t.Fatalf("%v tokens left after a refused GET", got)
	}
}
