package registrar

import (
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
	s.HandleOther(handle)
}
