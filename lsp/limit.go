package lsp

import (
	"container/list"
	"fmt"
	"sync"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// ErrRateLimited: a peer sent requests faster than the per-peer limit.
var ErrRateLimited = fmt.Errorf("%w: rate limited", ErrUnavailable)

// limiter is a token bucket per remote peer on the LSP protocols, so one
// peer cannot take a replica's whole capacity.
//
// Its table is bounded (max buckets) without ever resetting a bucket that
// still counts: at the bound a new peer's bucket replaces the least
// recently used bucket that has refilled completely (forgetting it loses
// nothing: a new bucket starts full), and while none has, new peers share
// one overflow bucket. So creating peer IDs cannot reset an attacker's own
// drained bucket, only drain the shared one.
type limiter struct {
	rate, burst float64
	now         func() time.Time
	max         int // buckets kept

	mu       sync.Mutex
	buckets  map[overlay.PeerID]*list.Element // of *bucket
	lru      list.List                        // front: most recently used
	overflow bucket
}

type bucket struct {
	p      overlay.PeerID
	tokens float64
	last   time.Time
}

// maxBuckets bounds the limiter's table.
const maxBuckets = 10000

// maxGetAORs bounds the AORs of one client GET or PUT: the work one
// request may cause (each AOR a read or write of R replicas).
const maxGetAORs = 64

// evictScan bounds how many of the least recently used buckets one new
// peer looks at for a full one.
const evictScan = 16

func newLimiter(rate float64, burst int) *limiter {
	l := &limiter{rate: rate, burst: float64(burst), now: time.Now, max: maxBuckets, buckets: map[overlay.PeerID]*list.Element{}}
	l.overflow.tokens = l.burst
	return l
}

// allow takes one token from p's bucket.
func (l *limiter) allow(p overlay.PeerID) bool { return l.allowN(p, 1) }

// allowN takes n tokens from p's bucket, or none if it holds fewer.
func (l *limiter) allowN(p overlay.PeerID, n int) bool {
	if n <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refilled(p)
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// charge takes n tokens from p's bucket even if that leaves it in debt
// (down to −burst): work already done, paid for by p's next requests.
func (l *limiter) charge(p overlay.PeerID, n int) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refilled(p)
	b.tokens = max(-l.burst, b.tokens-float64(n))
}

// refilled is p's bucket with the tokens earned since its last use; l.mu
// is held.
func (l *limiter) refilled(p overlay.PeerID) *bucket {
	now := l.now()
	b := l.bucket(p, now)
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	return b
}

// bucket returns p's bucket, making one (l.mu held).
func (l *limiter) bucket(p overlay.PeerID, now time.Time) *bucket {
	if el := l.buckets[p]; el != nil {
		l.lru.MoveToFront(el)
		return el.Value.(*bucket)
	}
	if len(l.buckets) >= l.max {
		el := l.lru.Back()
		for i := 0; i < evictScan && el != nil; i++ {
			b := el.Value.(*bucket)
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				l.lru.Remove(el)
				delete(l.buckets, b.p)
				break
			}
			el = el.Prev()
		}
		if len(l.buckets) >= l.max {
			if l.overflow.last.IsZero() {
				l.overflow.last = now
			}
			return &l.overflow
		}
	}
	b := &bucket{p: p, tokens: l.burst, last: now}
	l.buckets[p] = l.lru.PushFront(b)
	return b
}

// size is how many buckets the table holds.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
