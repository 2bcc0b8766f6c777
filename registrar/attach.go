package registrar

import (
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/sipnet"
)

// Attach registers the registrar's handlers on a stack: REGISTER, and 405
// with Allow: REGISTER for any method no other role takes (a proxy
// attached after it takes them all). Attach before the stack serves.
func (r *Registrar) Attach(s *sipnet.Stack) {
	ctx := s.Context()
	handle := func(req *sip.Request, tx sip.ServerTransaction) {
		res := r.Handle(ctx, req, req.Source())
		r.responses.Add(string(req.Method), res.StatusCode)
		if err := tx.Respond(res); err != nil {
			r.cfg.Logger.Debug("respond", "err", err)
		}
	}
	// REGISTER is answered without a server transaction over UDP: at a
	// registrar's rates sipgo's transactions, kept 32 s after their
	// answer, were most of the heap (see sipnet.HandleStateless).
	s.HandleStateless(sip.REGISTER, func(req *sip.Request, admitted bool) *sip.Response {
		res := r.handle(ctx, req, req.Source(), admitted)
		r.responses.Add(string(req.Method), res.StatusCode)
		return res
	})
	// Past MaxInFlight a REGISTER is refused on the UDP reader from its
	// bytes (sipnet.ShedStateless): refusals parsed and answered like the
	// rest took most of an overloaded registrar's CPU.
	s.ShedStateless(sip.REGISTER, r.overloaded, &r.responses)
	s.HandleOther(handle)
}

// overloaded is the Retry-After for a REGISTER arriving over UDP now,
// else 0: when MaxInFlight REGISTERs wait on the location service, or
// twice that many are in the stack's hands (InHand: those, and as many
// again queued for the CPU before Handle counts them); and while the
// queue stands (queueStands): with digest off, every REGISTER, with
// digest on one without an Authorization header (it would be challenged:
// Handle's rule, decided here before the parse). Bounding only those in
// Handle let up to 8192 wait in front of it, each parsed only to be
// refused there; bounding all in hand
// at MaxInFlight refused bursts a loaded registrar would have served
// (digest on, 4000/s failed 1457 of 20000 REGISTERs in one run). A
// REGISTER let in here is not refused again for MaxInFlight in Handle
// (admitted).
func (r *Registrar) overloaded(in sipnet.ShedInfo) time.Duration {
	inflight := r.inflight.Load()
	stands := r.queueStands(inflight) // a sample of the count on every REGISTER
	// Below the stack's own limit, or a MaxInFlight over half of it would
	// never be reached in hand: past the limit datagrams go unanswered.
	if in.InHand >= min(2*r.cfg.MaxInFlight, sipnet.StatelessLimit*7/8) || inflight >= int64(r.cfg.MaxInFlight) ||
		stands && (r.users == nil || !in.HasAuthorization()) {
		return r.cfg.RetryAfter
	}
	return 0
}
