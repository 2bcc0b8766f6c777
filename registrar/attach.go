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
	s.HandleStateless(sip.REGISTER, func(req *sip.Request) *sip.Response {
		res := r.Handle(ctx, req, req.Source())
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
// that many are in the stack's hands (inHand), most of them queued for
// the CPU before Handle counts them. Bounding only those in Handle let
// thousands more wait in front of it, each parsed only to be refused
// there, and each second of the queue one more second of delay.
func (r *Registrar) overloaded(inHand int) time.Duration {
	if inHand >= r.cfg.MaxInFlight || r.inflight.Load() >= int64(r.cfg.MaxInFlight) {
		return r.cfg.RetryAfter
	}
	return 0
}
