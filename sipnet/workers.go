package sipnet

import (
	"net"
	"time"
)

// Warm workers. A request taken statelessly was answered on a goroutine
// of its own, which began on a 2 KB stack and grew it (a copy of the
// stack each time) twice on its way through the parser, the registrar's
// digest hash and the AOR's canonical form: at 8000 REGISTERs a second on
// the register bench's testnet, starting goroutines and growing their
// stacks were 5% of the process's CPU. A worker that has answered one
// request now waits workerIdle for another before it ends, so under load
// requests run on stacks already grown. A datagram still never waits for
// a worker: with none idle, a new one starts (the requests in hand stay
// bounded by StatelessLimit, and so do the workers busy with them). At
// most maxIdleWorkers wait at once; a worker finishing beyond them ends,
// as every goroutine did before. A waiting worker is handed the next
// request oldest first (a channel's receivers), so a burst's workers
// would all stay up under any steady rate as high as their number a
// second: the cap, not workerIdle, bounds what they keep (256 stacks of
// 8-16 KB).

// workerIdle is how long a worker waits for another request before it
// ends.
const workerIdle = time.Second

// maxIdleWorkers bounds the workers waiting for a request at once: enough
// for the requests a loaded registrar starts in a few milliseconds (8000
// a second on the register bench).
const maxIdleWorkers = 256

// answerJob is one datagram for answer.
type answerJob struct {
	h        StatelessHandler
	admitted bool
	key      uint64
	data     []byte
	from     *net.UDPAddr
}

// dispatch hands j to an idle worker, or starts one for it. The caller
// holds j's place in s.handlers (enter), so the new worker's Add cannot
// race Close's Wait.
func (s *Stack) dispatch(j answerJob) {
	select {
	case s.stateless.idle <- j:
	default:
		s.handlers.Add(1)
		s.stateless.workers.Add(1)
		go s.worker(j)
	}
}

// worker answers j, then every request handed to it while it waits, until
// it has waited workerIdle for one or the stack closes.
func (s *Stack) worker(j answerJob) {
	defer s.handlers.Done()
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		s.answer(j)
		j = answerJob{} // nothing of the last request kept while idle
		idle := &s.stateless.idleWorkers
		if idle.Add(1) > maxIdleWorkers {
			idle.Add(-1)
			return
		}
		t.Reset(workerIdle)
		var ok bool
		j, ok = s.await(t)
		idle.Add(-1)
		if !ok {
			return
		}
	}
}

// idleFrame is the stack an idle worker keeps in use while it waits. The
// collector halves a goroutine's stack when it uses under a quarter of it
// (runtime.shrinkstack): a worker waiting on a bare select used a few
// hundred bytes of the 8-16 KB its request had grown, so each collection
// shrank the idle workers and their next requests grew them again (as
// much copying as a new goroutine's). Waiting below a frame this large
// keeps a quarter in use.
const idleFrame = 4 << 10

// await waits for the next request (false: idle too long, or the stack
// closed), on a frame of idleFrame bytes.
//
//go:noinline
func (s *Stack) await(t *time.Timer) (answerJob, bool) {
	var pad [idleFrame]byte
	keep(pad[:])
	select {
	case j := <-s.stateless.idle:
		return j, true
	case <-t.C:
	case <-s.ctx.Done():
	}
	return answerJob{}, false
}

// keep is a call the compiler cannot see through, so await's frame keeps
// its pad.
//
//go:noinline
func keep([]byte) {}
