package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Holding a dialog's requests behind the ACK of its 2xx. sipgo handles
// each message on a goroutine of its own, so two requests of one dialog
// are forwarded in the order the scheduler runs them, not the order they
// came in. On a starved process that order breaks: the call bench
// (LSNODE_BENCH_CPUONLY at 1500 calls/s, a lookup per INVITE) saw a
// runnable goroutine wait up to 470 ms for a core, and 43 of 30 000 BYEs
// reach the callee before the ACK the caller had sent 200 ms earlier (6
// in a run the day this came in, 0 with it). A callee that has not seen
// the ACK may take such a BYE for a request of a dialog not yet
// confirmed; sipp aborts the call.
//
// So once the proxy has passed a 2xx to an INVITE upstream, a request of
// the same Call-ID in a dialog (a To tag; not the ACK) waits until the
// ACK of that 2xx has been sent on (or dropped) before it is sent on, for
// ackHold at most, once per 2xx: an ACK lost on its way here comes again
// only with the callee's next retransmission of the 2xx, and the request
// must not wait for that. The Call-ID is the INVITE's (a response is
// matched to its request by the Via branch alone, so a callee's 2xx
// names no Call-ID of its choosing). The wait is keyed by the Call-ID
// alone: an ACK of the same Call-ID that someone made up lets a held
// request go early (which is how it went before); a caller that chose
// another's Call-ID for its INVITE, or sends BYEs of a call it never
// ACKed, costs a request of that Call-ID one wait of ackHold.

// ackHold bounds how long a request waits for the ACK (T1: the caller
// retransmits the request itself after that, and the server transaction
// absorbs the copy).
const ackHold = 500 * time.Millisecond

// ackWindow is how long a 2xx passed upstream is remembered without its
// ACK (between one and two windows); ackPendingMax bounds the 2xx
// remembered in one window, and ackMaxCallID the Call-IDs kept (beyond
// either, a 2xx is not waited for: as before).
const (
	ackWindow     = 4 * time.Second
	ackPendingMax = 1 << 16
	ackMaxCallID  = 256
)

// ackGate is the set of 2xx passed upstream whose ACK has not been sent
// on: for each Call-ID, a channel closed when it is.
type ackGate struct {
	mu        sync.Mutex
	cur, prev map[string]chan struct{}
	rotated   time.Time

	hold       atomic.Int64 // ackHold (a test's own)
	held, late atomic.Int64 // requests that waited; those whose ACK did not come in hold
}

func newAckGate() *ackGate {
	g := &ackGate{cur: map[string]chan struct{}{}, prev: map[string]chan struct{}{}}
	g.hold.Store(int64(ackHold))
	return g
}

// rotate starts a new window when the current one is ackWindow old. The
// caller holds g.mu.
func (g *ackGate) rotate(now time.Time) {
	switch age := now.Sub(g.rotated); {
	case age < ackWindow:
		return
	case age < 2*ackWindow:
		g.prev = g.cur
	default:
		g.prev = map[string]chan struct{}{} // (a cleared map keeps its peak size)
	}
	g.cur = make(map[string]chan struct{}, len(g.prev))
	g.rotated = now
}

// expect notes that a 2xx to an INVITE of callID goes upstream now: the
// dialog's requests wait for its ACK from here on.
func (g *ackGate) expect(callID string, now time.Time) {
	if callID == "" || len(callID) > ackMaxCallID {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rotate(now)
	if g.cur[callID] != nil || len(g.cur) >= ackPendingMax {
		return
	}
	if ch := g.prev[callID]; ch != nil {
		delete(g.prev, callID)
		g.cur[callID] = ch
		return
	}
	g.cur[callID] = make(chan struct{})
}

// acked lets the requests of callID held behind its ACK go: the ACK has
// been sent on, or dropped.
func (g *ackGate) acked(callID string) { g.release(callID, nil) }

// release forgets the 2xx of callID awaited on only (any, when nil) and
// lets the requests held behind it go.
func (g *ackGate) release(callID string, only chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range []map[string]chan struct{}{g.cur, g.prev} {
		if ch := m[callID]; ch != nil && (only == nil || ch == only) {
			delete(m, callID)
			close(ch)
		}
	}
}

// wait holds a request in a dialog of callID until the ACK of the
// dialog's last 2xx has been sent on, ackHold at most, or ctx ends. It
// returns at once when no ACK is awaited. A 2xx whose ACK did not come
// in ackHold is not waited for again: each costs its dialog one wait at
// most (the ACK may never pass here, or was lost), and the sender of a
// call it answered and never ACKed cannot hold its BYEs, and their
// in-flight slots, for long.
func (g *ackGate) wait(ctx context.Context, callID string) {
	g.mu.Lock()
	g.rotate(time.Now())
	ch := g.cur[callID]
	if ch == nil {
		ch = g.prev[callID]
	}
	g.mu.Unlock()
	if ch == nil {
		return
	}
	g.held.Add(1)
	t := time.NewTimer(time.Duration(g.hold.Load()))
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		g.late.Add(1)
		g.release(callID, ch) // not a later 2xx of the Call-ID
	case <-ctx.Done():
	}
}

// pending is how many 2xx wait for their ACK (the two windows).
func (g *ackGate) pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.cur) + len(g.prev)
}
