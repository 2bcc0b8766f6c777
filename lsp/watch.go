package lsp

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// Watching an AOR. A member that wants to know when an AOR's bindings
// change asks each of its R replicas, WATCH {aor, count}, to answer with
// the version of the replica's record of the AOR (0: none) once it is not
// count−1: at once when it already is not (count 0 asks for the current
// version), else at its next change, or after watchPoll with the same
// version (the watcher asks again). A replica's version is its own count
// of the changes it applied; it means nothing elsewhere, and a replica
// that restarts starts again (the watcher then sees a change that was
// not, and reads once more).
//
// A WATCH answer carries no bindings: on any change a watcher makes one
// quorum read, verified and merged like any (Watch). So a lying replica
// can only cost the watcher reads (each WATCH is rate limited like every
// request), or keep quiet: the other replicas still tell, and a change
// reaches at least W of them. Watches use their own streams and their own
// bound per peer (watchPerPeer), so they never hold the slots ordinary
// requests need; a replica serves at most maxWatchesPerPeer of one peer's
// and maxWatches in all, refusing more (ErrRateLimited), and the watcher
// then asks again after watchRetry. A replica that answers every WATCH at
// once with a new version costs its watcher at most watchBurst WATCHes to
// it and reads, then one each watchGap (changes closer than that come as
// one read); changes further apart come at once.
const (
	watchGap          = 20 * time.Millisecond
	watchBurst        = 10
	watchPoll         = 20 * time.Second
	watchRetry        = time.Second
	watchFirst        = 2 * time.Second // how long Watch waits for the replicas' versions before its first read
	watchPerPeer      = 64              // a watcher's WATCHes in flight to one replica
	maxWatchesPerPeer = 128
	maxWatches        = 8192
)

// Watcher follows an AOR's bindings (implemented by Service).
type Watcher interface {
	// Watch sends aor's live bindings on the channel it returns, first
	// as they are and then after each change, until ctx ends; the channel
	// is then closed. A reader that falls behind gets the newest.
	Watch(ctx context.Context, aor string) (<-chan []Binding, error)
}

var _ Watcher = (*Service)(nil)

// changedLocked numbers rec's change and wakes aor's watchers. s.mu is
// held for writing.
func (s *store) changedLocked(aor string, rec *record) {
	s.seq++
	rec.version = s.seq
	if ch := s.changes[aor]; ch != nil {
		close(ch)
		delete(s.changes, aor)
	}
}

// awaitChange returns the version of aor's record (0: none) and, when it
// is since, a channel closed at the record's next change and the function
// that ends the wait (the channel goes with its last waiter: an AOR that
// never changes leaves nothing behind).
func (s *store) awaitChange(aor string, since uint64) (uint64, <-chan struct{}, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v uint64
	if rec := s.recs[aor]; rec != nil {
		v = rec.version
	}
	if v != since {
		return v, nil, func() {}
	}
	ch := s.changes[aor]
	if ch == nil {
		ch = make(chan struct{})
		s.changes[aor] = ch
	}
	s.waiting[aor]++
	return v, ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.waiting[aor]--; s.waiting[aor] > 0 {
			return
		}
		delete(s.waiting, aor)
		if s.changes[aor] == ch {
			delete(s.changes, aor)
		}
	}
}

// streamKey carries, in a WATCH handler's context, the stream it came on.
type streamKey struct{}

// untilGone ends wait when st's far end goes away (it sends nothing while
// it waits for a reply: a read returns at its reset or close; a byte it
// sends instead breaks the protocol, and st is reset). The function it
// returns stops the reader, before serve reads st again.
func untilGone(st overlay.Stream, gone context.CancelFunc) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		if n, _ := st.Read(b[:]); n > 0 {
			st.Reset()
		}
		gone()
	}()
	return func() {
		_ = st.SetReadDeadline(time.Now())
		<-done
	}
}

// watchLimit counts the WATCHes a replica is serving, per peer and in all.
type watchLimit struct {
	mu     sync.Mutex
	byPeer map[overlay.PeerID]int
	total  int
}

func (l *watchLimit) acquire(p overlay.PeerID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byPeer == nil {
		l.byPeer = map[overlay.PeerID]int{}
	}
	if l.total >= maxWatches || l.byPeer[p] >= maxWatchesPerPeer {
		return false
	}
	l.total++
	l.byPeer[p]++
	return true
}

func (l *watchLimit) release(p overlay.PeerID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byPeer[p]--; l.byPeer[p] <= 0 {
		delete(l.byPeer, p)
	}
}

// handleWatch is the replica side of WATCH.
func (s *Service) handleWatch(ctx context.Context, from overlay.PeerID, m *message) *message {
	if len(m.AORs) != 1 {
		return errorReply(fmt.Errorf("%w: WATCH of %d AORs", ErrMalformed, len(m.AORs)))
	}
	aor := m.AORs[0]
	if canon, err := Canonical(aor); err != nil || canon != aor {
		return errorReply(fmt.Errorf("%w: AOR %q is not canonical", ErrMalformed, aor))
	}
	if !s.watching.acquire(from) {
		return errorReply(fmt.Errorf("%w: %d watches", ErrRateLimited, maxWatchesPerPeer))
	}
	defer s.watching.release(from)
	v, changed, release := s.store.awaitChange(aor, m.Count-1) // count 0: ^0, never a version
	defer release()
	if changed != nil {
		wait, gone := context.WithCancel(ctx)
		defer gone()
		if st, ok := ctx.Value(streamKey{}).(overlay.Stream); ok {
			defer untilGone(st, gone)()
		}
		t := time.NewTimer(watchPoll)
		defer t.Stop()
		select {
		case <-changed:
		case <-t.C:
		case <-wait.Done():
		}
		v, _, _ = s.store.awaitChange(aor, ^uint64(0)) // the version now
	}
	return &message{Type: msgReply, Count: v}
}

// Watch implements Watcher. The watchers of one AOR on a node share one
// watch: one poller per replica of the AOR (each follows whichever member
// is that replica now), and a quorum read after each change they report,
// sent to every watcher. Its first read comes once every replica gave its
// version (or after watchFirst), so no change between the two is missed;
// a watcher that joins a running watch gets its last read at once.
func (s *Service) Watch(ctx context.Context, aor string) (<-chan []Binding, error) {
	canon, k, err := recordOf(s.cfg.PrivateRecords, aor)
	if err != nil {
		return nil, err
	}
	out := make(chan []Binding, 1)
	h := &s.watches
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]*watch{}
	}
	w := h.m[canon]
	if w == nil {
		wctx, cancel := context.WithCancel(s.ctx)
		w = &watch{s: s, aor: canon, name: k.nameOf(canon), cancel: cancel, kick: make(chan struct{}, 1), outs: map[chan []Binding][]func() bool{}}
		if !s.spawn(func() { w.run(wctx) }) {
			cancel()
			return nil, ErrClosed
		}
		h.m[canon] = w
	}
	if w.have {
		deliver(out, w.last)
	}
	// Whichever ends first ends the watcher, and stops the other's
	// callback (set here under h.mu, which leave takes).
	leave := func() { h.leave(w, out) }
	w.outs[out] = []func() bool{context.AfterFunc(ctx, leave), context.AfterFunc(s.ctx, leave)}
	return out, nil
}

// watchHub holds a node's watches, one per AOR watched.
type watchHub struct {
	mu sync.Mutex
	m  map[string]*watch
}

// leave ends one watcher of w (its channel closes), and w with its last.
func (h *watchHub) leave(w *watch, out chan []Binding) {
	h.mu.Lock()
	defer h.mu.Unlock()
	stops, ok := w.outs[out]
	if !ok {
		return
	}
	for _, stop := range stops {
		stop()
	}
	delete(w.outs, out)
	close(out)
	if len(w.outs) == 0 {
		w.cancel()
		if h.m[w.aor] == w {
			delete(h.m, w.aor)
		}
	}
}

// publish sends bs to every watcher of w.
func (h *watchHub) publish(w *watch, bs []Binding) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.last, w.have = bs, true
	for out := range w.outs {
		deliver(out, bs)
	}
}

// watch is the watch of one AOR; its fields past kick are the hub's.
type watch struct {
	s      *Service
	aor    string // canonical, for its reads
	name   string // its record's name, for its replicas
	cancel context.CancelFunc
	kick   chan struct{}                    // a replica reported a change
	outs   map[chan []Binding][]func() bool // each watcher's channel, and its callbacks' stops
	last   []Binding
	have   bool
}

func (w *watch) run(ctx context.Context) {
	r, _ := w.s.quorum()
	ready := make(chan struct{}, r)
	var wg sync.WaitGroup
	defer wg.Wait()
	pollers := func(from, to int) {
		for i := from; i < to; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.poll(ctx, i, ready)
			}()
		}
	}
	pollers(0, r)
	first := time.NewTimer(watchFirst)
	defer first.Stop()
	for n := 0; n < r; n++ {
		select {
		case <-ready:
		case <-first.C:
			n = r
		case <-ctx.Done():
			return
		}
	}
	var reads pacer
	for {
		// An overlay that grew since (a watch begun on a young node) has
		// more replicas to follow.
		if now, _ := w.s.quorum(); now > r {
			pollers(r, now)
			r = now
		}
		retry := watchPoll
		if bs, err := w.s.Lookup(ctx, w.aor); err == nil {
			w.s.watches.publish(w, bs)
		} else {
			retry = watchRetry
		}
		t := time.NewTimer(retry)
		select {
		case <-w.kick:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
		if !reads.wait(ctx) {
			return
		}
	}
}

// pacer is a token bucket of watchBurst tokens, one more each watchGap.
type pacer struct {
	tokens float64
	last   time.Time
}

// wait takes a token, waiting for one when none is left; false when ctx
// ended first.
func (p *pacer) wait(ctx context.Context) bool {
	now := time.Now()
	if p.last.IsZero() {
		p.tokens = watchBurst
	} else {
		p.tokens = min(watchBurst, p.tokens+float64(now.Sub(p.last))/float64(watchGap))
	}
	p.last = now
	if p.tokens >= 1 {
		p.tokens--
		return true
	}
	if !pause(ctx, time.Duration((1-p.tokens)*float64(watchGap))) {
		return false
	}
	p.tokens, p.last = 0, time.Now()
	return true
}

// pause waits d (nothing when d ≤ 0); false when ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// deliver puts bs in out, in place of what its reader has not taken (out
// is written under the hub's lock alone).
func deliver(out chan []Binding, bs []Binding) {
	for {
		select {
		case out <- bs:
			return
		default:
		}
		select {
		case <-out:
		default:
		}
	}
}

// poll follows the version of the AOR's i-th replica, kicking the reader
// at each change (and when the replica is another member than before),
// and signals ready after its first answer or failure.
func (w *watch) poll(ctx context.Context, i int, ready chan<- struct{}) {
	var peer overlay.PeerID
	var since uint64
	known, answered, signalled, failed := false, false, false, false
	var sends pacer
	for ctx.Err() == nil {
		var err error
		if ps := w.s.closest(w.name); i < len(ps) {
			if ps[i] != peer {
				peer, known = ps[i], false
			}
			var v uint64
			if v, err = w.s.watchOnce(ctx, peer, w.name, since, known); err == nil {
				// A new replica's version is news too (the change may
				// have come while the watcher moved), and so is any
				// answer after a failure.
				if (v != since || !known) && answered || failed {
					select {
					case w.kick <- struct{}{}:
					default:
					}
				}
				since, known, answered, failed = v, true, true, false
			}
		} else {
			err = ErrUnavailable
		}
		if !signalled {
			select {
			case ready <- struct{}{}:
			default: // a poller added later: nobody waits for it
			}
			signalled = true
		}
		if err != nil {
			failed = true
			pause(ctx, watchRetry)
		} else {
			sends.wait(ctx)
		}
	}
}

// watchOnce sends one WATCH to p (this node's own replica in process)
// and returns the version it answered: at once unless known, else once it
// is not since.
func (s *Service) watchOnce(ctx context.Context, p overlay.PeerID, aor string, since uint64, known bool) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, watchPoll+5*time.Second)
	defer cancel()
	m := &message{Type: msgWatch, AORs: []string{aor}}
	if known {
		m.Count = since + 1
	}
	var reply *message
	var err error
	if p == s.self {
		if reply = s.handleReplica(ctx, p, m); reply.Status != statusOK {
			err = fmt.Errorf("%w: %s", errOfStatus(reply.Status), reply.Error)
		}
	} else {
		reply, err = s.watchRPC.call(ctx, p, s.storeProto, m)
	}
	if err != nil {
		return 0, err
	}
	return reply.Count, nil
}
