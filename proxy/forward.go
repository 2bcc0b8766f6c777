package proxy

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/sipnet"
)

// asIs is a client option that leaves a request exactly as prepared.
func asIs(*sipgo.Client, *sip.Request) error { return nil }

// handle is the entry point of every request but ACK and CANCEL.
func (p *Proxy) handle(req *sip.Request, tx sip.ServerTransaction) {
	p.stats.requests.Add(1)
	if code, reason := p.validate(req); code != 0 {
		var hdrs []sip.Header
		if code == 420 {
			// RFC 3261 §8.2.2.3: name what we do not support.
			hdrs = append(hdrs, sip.NewHeader("Unsupported", strings.Join(proxyRequire(req), ", ")))
		}
		p.respond(tx, req, code, reason, hdrs...)
		return
	}
	source, target, ok := p.inflight.acquire(req, p.trusted(req))
	if !ok {
		p.stats.shed.Add(1)
		p.respond(tx, req, 503, "Overloaded", retryAfter(p.cfg.RetryAfter.Seconds()))
		return
	}
	defer p.inflight.release(source, target)
	if req.Method == sip.INVITE {
		// RFC 3261 §16.2: stop the caller's retransmissions at once. And
		// before anything below changes req: sipgo's transaction sends a
		// 100 of its own from req 200 ms after it began unless a response
		// was sent, on a goroutine of its own, so a routing decision that
		// took longer (a slow lookup) had it read req's headers while
		// popSelfRoutes, consumeCredentials and markReceived rewrote them
		// (a data race; the caller also got two 100s).
		_ = tx.Respond(sip.NewResponseFromRequest(req, 100, "Trying", nil))
	}
	if p.cfg.Local != nil && p.cfg.Local.Handle(req, tx) { // (shed like the rest above)
		return
	}
	if res := p.peerPolicy(req); res != nil {
		p.stats.refused.Add(1)
		p.stats.local.Add(1)
		p.responses.Add(string(req.Method), res.StatusCode)
		_ = tx.Respond(res)
		return
	}
	gate := p.gate(req)
	d := p.decide(p.ctx, req, gate)
	if d.deny == nil && d.code == 0 && !d.open {
		d.deny = gate()
	}
	if d.deny != nil {
		p.stats.refused.Add(1)
		p.stats.local.Add(1)
		p.responses.Add(string(req.Method), d.deny.StatusCode)
		_ = tx.Respond(d.deny)
		return
	}
	p.consumeCredentials(req)
	p.markReceived(req)
	if req.Method == sip.BYE && d.code == 0 && (d.minted || p.trusted(req)) {
		// The call is over whatever the BYE's answer; anchored calls are
		// record-routed, so a BYE of one carries our token.
		p.unanchor(dialogMediaKeys(req)...)
	}
	if d.code != 0 {
		hdrs := d.hdrs
		if d.code == 302 {
			p.stats.redirected.Add(1)
			hdrs = contactHeaders(d.contacts)
		}
		p.respond(tx, req, d.code, d.reason, hdrs...)
		return
	}
	ownsMedia := p.anchorOffer(req, d.groups)
	if req.To().Params.Has("tag") {
		p.acks.wait(p.ctx, callID(req)) // not before the ACK of the dialog's 2xx
	}
	p.forward(req, tx, d.groups, d.failover, ownsMedia)
}

// gate is the relay policy for a request whose next hop is not open (see
// decision.open): a trusted sender goes on; an in-dialog request this
// proxy did not record-route gets 403; an initial one goes on only for a
// user who passes Authorize (407 until then). It returns the response to
// send, or nil; the verdict is computed once per request.
func (p *Proxy) gate(req *sip.Request) func() *sip.Response {
	var done bool
	var res *sip.Response
	return func() *sip.Response {
		if done {
			return res
		}
		done = true
		switch {
		case p.trusted(req):
		case p.cfg.Authorize == nil || req.To().Params.Has("tag"):
			res = sip.NewResponseFromRequest(req, 403, "Relaying denied", nil)
		default:
			res = p.cfg.Authorize(req)
		}
		return res
	}
}

// peerPolicy: a request that came over TLS from a peer with a client
// certificate may only be sent for users of the peer's domains (its From),
// unless the peer is a configured transit peer; nil when it may go on.
func (p *Proxy) peerPolicy(req *sip.Request) *sip.Response {
	ds, ok := p.tlsPeerDomains(req)
	if !ok {
		return sip.NewResponseFromRequest(req, 403, "TLS connection gone", nil)
	}
	if len(ds) == 0 {
		return nil
	}
	from := strings.ToLower(strings.TrimSuffix(req.From().Address.Host, "."))
	for _, d := range ds {
		if d == from || slices.Contains(p.cfg.TransitPeers, d) {
			return nil
		}
	}
	return sip.NewResponseFromRequest(req, 403, "From domain is not the TLS peer's", nil)
}

// consumeCredentials removes the Proxy-Authorization values of our realm
// (RFC 3261 §22.3: a proxy consumes its own credentials; they are for
// nobody downstream), whether or not the policy needed them.
func (p *Proxy) consumeCredentials(req *sip.Request) {
	hs := req.GetHeaders("Proxy-Authorization")
	if len(hs) == 0 {
		return
	}
	var keep []string
	for _, h := range hs {
		c, err := sipnet.ParseDigest(h.Value())
		if err == nil && c.Realm != "" && c.Realm != p.cfg.Realm {
			keep = append(keep, h.Value())
		}
	}
	sipnet.RemoveHeaders(req, "Proxy-Authorization") // "proxy-authorization:" too
	for _, v := range keep {
		req.AppendHeader(sip.NewHeader("Proxy-Authorization", v))
	}
}

// handleAck forwards an ACK that belongs to no transaction here (the ACK
// of a 2xx, end to end) statelessly; the ACK of a non-2xx is absorbed by
// the transaction layer.
func (p *Proxy) handleAck(req *sip.Request, _ sip.ServerTransaction) {
	p.stats.requests.Add(1)
	defer p.acks.acked(callID(req)) // sent on or dropped: the dialog's requests go (ackgate.go)
	if code, _ := p.validate(req); code != 0 {
		return // nobody answers an ACK
	}
	if _, gruu := sipnet.GRUU(&req.Recipient); req.Route() == nil && net.ParseIP(strings.Trim(req.Recipient.Host, "[]")) == nil && !gruu {
		// The ACK of a 2xx goes to the callee's Contact; one addressed to
		// an AOR is the ACK of a non-2xx whose transaction is gone: it
		// stops here (RFC 3261 §17.2.1), it is not routed by DNS. A
		// callee's Contact may be a GRUU (RFC 5627 §4.2): it is found in
		// the overlay like any.
		return
	}
	if p.peerPolicy(req) != nil {
		return
	}
	// Nobody answers an ACK: an untrusted one bound for a foreign
	// destination is dropped before any lookup or DNS work.
	deny := func() *sip.Response {
		if p.trusted(req) {
			return nil
		}
		return sip.NewResponseFromRequest(req, 403, "Relaying denied", nil)
	}
	d := p.decide(p.ctx, req, deny)
	if d.deny != nil || len(d.groups) == 0 || len(d.groups[0]) == 0 || !d.open && !p.trusted(req) {
		return
	}
	if !p.destAllowed(p.ctx, req, d.groups[0][0]) {
		return
	}
	// The ACK is rewritten where it lies, not copied: sipgo's server
	// transaction for it reads only its method, and ends when this
	// handler returns.
	out := p.rewrite(req, req, d.groups[0][0])
	if err := p.writeStateless(p.ctx, out, d.groups[0][0]); err != nil {
		p.log.Debug("forward ACK", "call", callID(req), "err", err)
		return
	}
	p.count(d.groups[0][0])
}

// statelessBranch is the random part of the branch of our Via on an ACK,
// which is forwarded without a transaction: a function of the request's
// transaction (RFC 3261 §16.11), so that each copy of an ACK (the caller
// sends one for every retransmission of the 2xx) goes on with the same
// branch. A random one per copy made each copy a new request to the
// callee, and a sipp callee waiting for the BYE took the second ACK for an
// unexpected message and dropped the call: 100 calls of 30 000 at 1500/s
// through a proxy whose ACKs were late enough for the 2xx to be
// retransmitted. The received branch names the transaction when it has
// the magic cookie; otherwise (RFC 2543) its Call-ID, tags, CSeq number
// and Request-URI do.
func (p *Proxy) statelessBranch(req *sip.Request) string {
	var in string
	if v := req.Via(); v != nil {
		in, _ = v.Params.Get("branch")
	}
	if !strings.HasPrefix(in, sip.RFC3261BranchMagicCookie) {
		var b strings.Builder
		if h := req.CallID(); h != nil { // (validate saw each of them)
			b.WriteString(h.Value())
		}
		if h := req.From(); h != nil {
			b.WriteString("\x00" + h.Value())
		}
		if h := req.To(); h != nil {
			b.WriteString("\x00" + h.Value())
		}
		if h := req.CSeq(); h != nil {
			b.WriteString("\x00" + strconv.FormatUint(uint64(h.SeqNo), 10))
		}
		b.WriteString("\x00" + req.Recipient.String())
		in = b.String()
	}
	return p.macOf(9, "stateless\x00", in)
}

// handleCancel answers a CANCEL that matched no pending INVITE (the
// transaction layer handles the ones that do).
func (p *Proxy) handleCancel(req *sip.Request, tx sip.ServerTransaction) {
	p.stats.requests.Add(1)
	p.respond(tx, req, 481, "Call/Transaction Does Not Exist")
}

// handleStray passes on a 2xx to an INVITE that arrives after its client
// transaction ended (the callee retransmits it until the ACK comes; RFC
// 6026 §7.2: a proxy forwards every 2xx), if it carries our Via on top.
// Anything else that matches no transaction is dropped.
func (p *Proxy) handleStray(res *sip.Response) {
	via, cseq := res.Via(), res.CSeq()
	if via == nil || cseq == nil || cseq.MethodName != sip.INVITE || !res.IsSuccess() ||
		via.Host != p.self.host || via.Port != p.self.port || res.CallID() == nil || res.From() == nil || res.To() == nil {
		return
	}
	if b, _ := via.Params.Get("branch"); !p.ourBranch(b) {
		return // a Via naming us that we did not write
	}
	out := res.Clone()
	out.RemoveHeader("Via")
	if out.Via() == nil {
		return
	}
	out.SetDestination("")
	p.retoken(out, nil)
	p.anchorAnswer(out)
	if err := p.stack.WriteResponse(out); err != nil {
		p.log.Debug("forward 2xx retransmission", "call", callID(res), "err", err)
	}
}

// markReceived records where the request came from in its top Via (RFC
// 3261 §18.2.1, RFC 3581), so responses find their way back through NAT.
func (p *Proxy) markReceived(req *sip.Request) {
	via := req.Via()
	host, port, err := net.SplitHostPort(req.Source())
	if via == nil || err != nil {
		return
	}
	if via.Host != host {
		via.Params.Add("received", host)
	}
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		via.Params.Add("rport", port)
		via.Params.Add("received", host)
	}
}

func (p *Proxy) count(t target) {
	p.stats.forwarded.Add(1)
	switch t.how {
	case viaOverlay:
		p.stats.direct.Add(1)
	case viaStatic:
		p.stats.static.Add(1)
	case viaDNS:
		p.stats.dns.Add(1)
	case viaRedirect:
		p.stats.followed.Add(1)
	}
}

// prepare builds the copy of req sent to t (RFC 3261 §16.6).
func (p *Proxy) prepare(req *sip.Request, t target) *sip.Request {
	return p.rewrite(req, shallowCopy(req), t)
}

// shallowResponse is a copy of res that shares its header values and
// body (share), for relay: what relay changes (the top Via, Record-Route,
// an anchored body) it removes or replaces, never changing a header in
// place, and sipgo's transactions only read a response.
func shallowResponse(res *sip.Response) *sip.Response {
	out := sip.NewResponse(res.StatusCode, res.Reason)
	out.SipVersion = res.SipVersion
	share(out, res)
	return out
}

// shallowCopy is a copy of req that shares its header values and body
// (share): once a request is forwarded neither the proxy nor sipgo
// changes a header of it in place (a response built from it clones the
// headers it takes; anchorOffer rewrites the body before any copy), and
// what rewrite changes it replaces, but Max-Forwards, which it
// decrements: that one is the copy's own. A deep copy (sip.Request.Clone)
// was about a tenth of what the proxy allocated per call.
func shallowCopy(req *sip.Request) *sip.Request {
	out := sip.NewRequest(req.Method, req.Recipient)
	out.SipVersion = req.SipVersion
	share(out, req)
	out.Laddr = req.Laddr
	if mf := out.MaxForwards(); mf != nil {
		own := *mf
		out.ReplaceHeader(&own)
	}
	return out
}

// share gives out, a new message, in's headers (the same values, in a
// list of out's own), body, transport and addresses.
func share(out, in interface {
	sip.Message
	Headers() []sip.Header
}) {
	for _, h := range in.Headers() {
		out.AppendHeader(h)
	}
	out.SetBody(in.Body())
	out.SetTransport(in.Transport())
	out.SetSource(in.Source())
	out.SetDestination(in.Destination())
}

// rewrite makes out, a copy of req or req itself, the request sent to t.
// The loop key and the branch are taken before out changes; what it
// reads of req after (method, To, From, Call-ID, Contact, source,
// transport) it never changes.
func (p *Proxy) rewrite(req, out *sip.Request, t target) *sip.Request {
	key := p.loopKey(req)
	var branch string
	if req.Method == sip.ACK {
		branch = p.statelessBranch(req) // from req as it came
	} else {
		branch = strings.TrimPrefix(sip.GenerateBranchN(12), sip.RFC3261BranchMagicCookie+".")
	}
	out.Recipient = *t.uri.Clone()
	for i := len(t.route) - 1; i >= 0; i-- {
		out.PrependHeader(sip.NewHeader("Route", t.route[i]))
	}
	if mf := out.MaxForwards(); mf != nil {
		mf.Dec()
	} else {
		mf := sip.MaxForwardsHeader(70)
		out.AppendHeader(&mf)
	}
	if rr := p.flowRecordRoutes(req, t); len(rr) > 0 {
		for i := len(rr) - 1; i >= 0; i-- {
			out.PrependHeader(sip.NewHeader("Record-Route", rr[i]))
		}
	} else if (p.cfg.RecordRoute || t.gruu || req.Method == sip.INVITE && p.anchored(mediaKey(req))) && req.Method != sip.ACK && !req.To().Params.Has("tag") {
		// One entry per side, each reachable over that side's transport;
		// two when they differ (RFC 5658 double record-routing).
		in := strings.ToUpper(req.Transport())
		if in != t.tr {
			out.PrependHeader(sip.NewHeader("Record-Route", p.recordRoute(in, p.callerToken(req))))
		}
		out.PrependHeader(sip.NewHeader("Record-Route", p.recordRoute(t.tr, p.callerToken(req))))
	}
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: t.tr,
		Host: p.self.host, Port: p.self.port, Params: sip.NewParams()}
	via.Params.Add("branch", sip.RFC3261BranchMagicCookie+key+"."+branch+p.branchMAC(branch))
	out.PrependHeader(via)
	out.SetTransport(t.tr)
	out.SetDestination(t.dest)
	out.Laddr = sip.Addr{}
	if t.tr == "UDP" {
		out.Laddr = p.laddr // from the listening socket, so replies come back to it
	}
	return out
}

// callerToken is the Record-Route token a dialog-forming request carries
// downstream: the caller's side (its Contact, and the address the request
// came from) are the hops the callee's requests may go to (rrtoken.go).
func (p *Proxy) callerToken(req *sip.Request) string {
	hops := []string{contactHop(req), req.Source()}
	if p.trusted(req) { // a caller on this host may be reached there
		hops = append(hops, localHop(hops[0]), localHop(hops[1]))
	}
	return p.rrToken(callID(req), hops...)
}

// recordRoute is our Record-Route value for a transport, with the token
// that lets the dialog's later requests through (rrtoken.go).
func (p *Proxy) recordRoute(tr, token string) string {
	tok := ";" + rrParam + "=" + token
	if tr == "TLS" && p.tlsSelf.port != 0 {
		return "<sip:" + p.tlsSelf.String() + ";transport=tls;lr" + tok + ">"
	}
	return "<sip:" + p.self.String() + ";transport=" + strings.ToLower(tr) + ";lr" + tok + ">"
}

// branch is one forwarded copy of a request.
type branch struct {
	t           target
	out         *sip.Request
	tx          sip.ClientTransaction
	provisional bool // a 1xx arrived: CANCEL may be sent
	cancel      bool // CANCEL wanted (sent once provisional)
	cancelled   bool
	final       bool
}

type branchEvent struct {
	b   *branch
	res *sip.Response // nil: the transaction ended without a final response
	err error
}

// forward forks req to the target groups in turn and relays the responses
// (RFC 3261 §16.7): provisional ones at once, every 2xx, and otherwise the
// best final response once all branches are done.
// ownsMedia: req made the call's relay session, which ends with it
// when no 2xx comes.
func (p *Proxy) forward(req *sip.Request, tx sip.ServerTransaction, groups [][]target, failover, ownsMedia bool) {
	unanchor := func() {
		if ownsMedia {
			p.unanchor(mediaKey(req))
		}
	}
	cancelled := make(chan struct{})
	tx.OnCancel(func(*sip.Request) {
		select {
		case <-cancelled:
		default:
			close(cancelled)
		}
	})
	var best *sip.Response
	for i, g := range groups {
		if i > 0 && failover {
			p.stats.failovers.Add(1)
		}
		res, done := p.fork(req, tx, g, cancelled)
		if done {
			return
		}
		best = better(best, res)
		if best != nil && best.StatusCode >= 600 {
			break
		}
		if failover && res != nil && res.StatusCode != 503 && res.StatusCode != 408 {
			break // the server answered: no failover to the next one
		}
		select {
		case <-cancelled:
			unanchor()
			return // the transaction layer answered 487
		default:
		}
	}
	if req.Method == sip.INVITE {
		unanchor() // no 2xx: no media
	}
	if best == nil {
		p.respond(tx, req, 408, "Request Timeout")
		return
	}
	if best.StatusCode == 503 {
		// §16.7 step 6: a 503 from downstream is not ours to pass on.
		p.respond(tx, req, 500, "Next hop unavailable")
		return
	}
	if best.StatusCode == 430 && len(req.GetHeaders("Via")) <= 1 {
		// A failed flow (RFC 5626 §11) goes back to the proxy that chose
		// it; an endpoint (one Via: the request came from it) would take
		// it for a 400. The UA is not reachable now.
		p.respond(tx, req, 480, "Temporarily Unavailable")
		return
	}
	p.relay(tx, best, nil)
}

// fork sends req to every target of a group at once and waits for them. It
// returns done when a 2xx was relayed (or the caller is gone), else the best
// final response of the group (nil if none answered).
func (p *Proxy) fork(req *sip.Request, tx sip.ServerTransaction, group []target, cancelled <-chan struct{}) (*sip.Response, bool) {
	events := make(chan branchEvent, 4*len(group))
	var branches []*branch
	var best *sip.Response
	var cancels []context.CancelFunc
	defer func() { // a branch given up on (below) ends with the fork
		for _, c := range cancels {
			c()
		}
	}()
	for _, t := range group {
		b, cancel, res := p.startBranch(req, t, events)
		cancels = append(cancels, cancel)
		if b == nil {
			best = better(best, res)
			continue
		}
		branches = append(branches, b)
	}
	if len(branches) == 0 {
		return best, false
	}
	f := &forking{p: p, req: req, tx: tx, branches: branches, pending: len(branches), best: best, cancelled: cancelled}
	var timerC, giveUp <-chan time.Time
	if req.Method == sip.INVITE {
		t := time.NewTimer(p.cfg.InviteTimeout)
		defer t.Stop()
		timerC = t.C
		f.resetC = func() { t.Reset(p.cfg.InviteTimeout) }
	}
	for f.pending > 0 {
		select {
		case ev := <-events:
			if f.event(ev) {
				return nil, true
			}
		case <-f.cancelled:
			f.cancelled, f.wasCancelled = nil, true
			f.cancelAll()
		case <-timerC:
			timerC, f.resetC = nil, nil
			f.cancelAll()
			// RFC 3261 §16.7 step 2 and §9.1: a branch that answers no
			// CANCEL within 64·T1 is given up as 408.
			giveUp = time.After(sip.Timer_B)
		case <-giveUp:
			for _, b := range f.branches {
				if !b.final {
					b.final = true
					f.pending--
					f.best = better(f.best, sip.NewResponseFromRequest(b.out, 408, "Request Timeout", nil))
				}
			}
		case <-p.ctx.Done():
			return nil, true
		}
	}
	return f.best, f.got2xx
}

// forking is the state of one fork while it waits for its branches.
type forking struct {
	p            *Proxy
	req          *sip.Request
	tx           sip.ServerTransaction
	branches     []*branch
	pending      int           // branches without a final response
	best         *sip.Response // best final response so far
	got2xx       bool
	resetC       func()          // restarts Timer C; nil when there is none (any longer)
	cancelled    <-chan struct{} // closed when the caller cancels; nil once seen
	wasCancelled bool            // the caller cancelled: no branch starts any more
}

// cancelAll cancels every branch still pending.
func (f *forking) cancelAll() {
	for _, b := range f.branches {
		if !b.final {
			b.cancel = true
			f.p.sendCancel(b)
		}
	}
}

// event takes one branch's response, or its end without one. It returns
// true when the fork is over (a redirect followed to a 2xx).
func (f *forking) event(ev branchEvent) bool {
	p, req, b := f.p, f.req, ev.b
	if b.final {
		return false
	}
	if ev.res == nil {
		b.final = true
		f.pending--
		code, reason := 408, "Request Timeout"
		if ev.err != nil && !strings.Contains(ev.err.Error(), "timeout") && !strings.Contains(ev.err.Error(), "deadline") {
			code, reason = 503, "Service Unavailable" // transport error
		}
		p.cache.drop(req)
		f.best = better(f.best, sip.NewResponseFromRequest(b.out, code, reason, nil))
		return false
	}
	res := ev.res
	if res.StatusCode < 200 {
		if res.StatusCode > 100 && f.resetC != nil {
			// RFC 3261 §16.7 step 2: a provisional answer
			// restarts Timer C.
			f.resetC()
		}
		b.provisional = true
		if b.cancel {
			p.sendCancel(b)
		}
		if res.StatusCode > 100 && !f.got2xx {
			p.relay(f.tx, res, &b.t)
		}
		return false
	}
	b.final = true
	f.pending--
	if res.StatusCode < 300 {
		if req.Method == sip.INVITE {
			// Before the caller can ACK it; the Call-ID of the request
			// (a response is matched to it by the Via branch alone).
			p.acks.expect(callID(req), time.Now())
		}
		// Every 2xx goes upstream; the first one ends the others.
		p.relay(f.tx, res, &b.t)
		if !f.got2xx {
			f.got2xx = true
			f.cancelAll()
		}
		return false
	}
	if res.StatusCode >= 600 {
		f.cancelAll()
	}
	if followable(res.StatusCode) && b.t.how == viaStatic && !f.wasCancelled {
		// A federation's redirect server: follow its Contacts (not once
		// the caller cancelled: no new branch then, RFC 3261 §16.10).
		if r, done := p.recurse(req, f.tx, res, b.t, f.cancelled); done {
			f.cancelAll()
			return true
		} else if r != nil {
			res = r
		}
	}
	f.best = better(f.best, res)
	return false
}

// startBranch sends req to t and watches the branch on a goroutine that
// reports its responses on events. It returns the branch, or nil and the
// answer that stands for it (nil when the proxy is closing). cancel ends
// the branch; the fork calls it when it ends.
func (p *Proxy) startBranch(req *sip.Request, t target, events chan<- branchEvent) (_ *branch, cancel context.CancelFunc, res *sip.Response) {
	// Answers made here for a branch (refused, no answer) are made
	// from b.out, as if downstream sent them: relay strips our Via.
	b := &branch{t: t, out: p.prepare(req, t)}
	ctx, cancel := context.WithCancel(p.ctx)
	timerB := func() {}
	if req.Method != sip.INVITE {
		// Guards a branch that never finishes; an INVITE branch
		// that rings is Timer C's to end, however long it rings.
		ctx, timerB = context.WithTimeout(ctx, sip.Timer_B+time.Second)
	}
	if !p.destAllowed(ctx, req, t) {
		timerB()
		p.stats.refused.Add(1)
		p.log.Warn("branch refused: destination on this host or link", "call", callID(req), "dest", t.dest)
		return nil, cancel, sip.NewResponseFromRequest(b.out, 403, "Destination not allowed", nil)
	}
	if !p.wsConnected(t) {
		timerB()
		p.log.Debug("branch failed: WebSocket UA not connected", "call", callID(req), "dest", t.dest, "flow", t.flow)
		p.cache.drop(req)
		if t.flow {
			return nil, cancel, sip.NewResponseFromRequest(b.out, 430, "Flow Failed", nil) // RFC 5626 §5.3
		}
		return nil, cancel, sip.NewResponseFromRequest(b.out, 480, "Temporarily Unavailable", nil)
	}
	var err error
	b.tx, err = p.transaction(ctx, b.out, t)
	if err != nil {
		timerB()
		cancel()
		p.log.Debug("branch failed", "call", callID(req), "dest", t.dest, "err", err)
		p.cache.drop(req)
		return nil, cancel, sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
	}
	p.count(t)
	started := p.spawn(func() {
		defer cancel()
		defer timerB()
		defer b.tx.Terminate()
		p.watchBranch(ctx, b, events)
	})
	if !started { // closing
		timerB()
		cancel()
		b.tx.Terminate()
		return nil, cancel, nil
	}
	return b, cancel, nil
}

// watchBranch passes a branch's responses to events until its final one,
// its transaction's end or ctx's.
func (p *Proxy) watchBranch(ctx context.Context, b *branch, events chan<- branchEvent) {
	for {
		select {
		case res := <-b.tx.Responses():
			select {
			case events <- branchEvent{b: b, res: res}:
			case <-ctx.Done():
				return
			}
			if res.StatusCode >= 200 {
				return
			}
		case <-b.tx.Done():
			select {
			case events <- branchEvent{b: b, err: b.tx.Err()}:
			case <-ctx.Done():
			}
			return
		case <-ctx.Done():
			select {
			case events <- branchEvent{b: b, err: ctx.Err()}:
			case <-p.ctx.Done():
			}
			return
		}
	}
}

// maxRedirectTargets bounds the Contacts of a 3xx a proxy follows, and
// the next hops a redirect server names: one request must not become
// hundreds of branches.
const maxRedirectTargets = 8

// followable: the 3xx answers whose Contacts are locations of the callee
// (RFC 3261 §21.3): 300, 301 and 302; not 305 (Use Proxy, deprecated) or
// 380 (Alternative Service: a description, not a place to send to).
func followable(code int) bool { return code >= 300 && code <= 302 }

// recurse follows the Contacts of a 3xx that from, a static peer (a
// federation's redirect server), answered, forking req to them in q order
// (RFC 3261 §16.6: equal q in parallel, a lower q once the higher failed,
// a 6xx or the caller's CANCEL ends the search); at most
// maxRedirectTargets distinct ones. For a SIPS Request-URI only SIPS
// targets reached over TLS are taken (§16.7 step 4: no downgrade). A
// target on this host or link is allowed only when from is too (an
// operator's own redirect server, the testnet's); else whoever answered
// the 3xx (a UA behind a static peer that proxies) would choose where
// this proxy sends, past the trusted sender's exemption (destAllowed). It
// returns the best response and whether a 2xx ended the transaction.
func (p *Proxy) recurse(req *sip.Request, tx sip.ServerTransaction, res *sip.Response, from target, cancelled <-chan struct{}) (*sip.Response, bool) {
	fromLocal := false
	if h, _, err := net.SplitHostPort(from.dest); err == nil {
		if ip := net.ParseIP(h); ip != nil && sipnet.HostOrLink(ip) {
			fromLocal = true
		}
	}
	secure := strings.EqualFold(req.Recipient.Scheme, "sips")
	seen := map[string]bool{}
	var ts []target
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || len(ts) == maxRedirectTargets {
			continue
		}
		t, err := redirectTarget(c.Address, req.Recipient.Host)
		if err != nil {
			p.log.Debug("3xx Contact not followed", "call", callID(req), "contact", c.Address.String(), "err", err)
			continue
		}
		if secure && (!strings.EqualFold(t.uri.Scheme, "sips") || t.tr != "TLS") {
			continue
		}
		var next sip.Uri
		if len(t.route) > 0 {
			if _, err := sip.ParseAddressValue(t.route[0], &next, nil); err != nil {
				continue
			}
		} else {
			next = t.uri
		}
		key := t.uri.String() + "|" + strings.Join(t.route, ",")
		if p.isSelf(&next) || seen[key] {
			continue
		}
		seen[key] = true
		t.local = fromLocal
		t.q = 1
		if q, ok := c.Params.Get("q"); ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v >= 0 && v <= 1 {
				t.q = v
			}
		}
		ts = append(ts, t)
	}
	var best *sip.Response
	for _, group := range byQ(ts) {
		select {
		case <-cancelled:
			return best, false
		default:
		}
		r, done := p.fork(req, tx, group, cancelled)
		if done {
			return r, true
		}
		best = better(best, r)
		if best != nil && best.StatusCode >= 600 {
			break
		}
	}
	return best, false
}

// sendCancel sends CANCEL for an INVITE branch that has had a provisional
// response (RFC 3261 §9.1: not before).
func (p *Proxy) sendCancel(b *branch) {
	if b.cancelled || !b.provisional || b.final || b.out.Method != sip.INVITE {
		return
	}
	b.cancelled = true
	out := b.out
	c := sip.NewRequest(sip.CANCEL, *out.Recipient.Clone())
	c.AppendHeader(out.Via().Clone())
	for _, h := range out.GetHeaders("Route") {
		c.AppendHeader(sip.NewHeader("Route", h.Value()))
	}
	for _, name := range []string{"From", "To", "Call-ID"} {
		if h := out.GetHeader(name); h != nil {
			c.AppendHeader(sip.NewHeader(name, h.Value()))
		}
	}
	c.AppendHeader(&sip.CSeqHeader{SeqNo: out.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.SetBody(nil)
	c.SetTransport(out.Transport())
	c.SetDestination(out.Destination())
	c.Laddr = out.Laddr
	p.spawn(func() {
		ctx, cancel := context.WithTimeout(p.ctx, sip.Timer_F)
		defer cancel()
		tx, err := p.client.TransactionRequest(ctx, c, asIs)
		if err != nil {
			p.log.Debug("CANCEL", "err", err)
			return
		}
		defer tx.Terminate()
		select {
		case <-tx.Responses():
		case <-tx.Done():
		case <-ctx.Done():
		}
	})
}

// relay passes a downstream response upstream without our Via.
// t is where the request went: with the response's Contact, the hops the
// caller's requests in the dialog may go to (rrtoken.go).
func (p *Proxy) relay(tx sip.ServerTransaction, res *sip.Response, t *target) {
	out := shallowResponse(res)
	out.RemoveHeader("Via")
	if res.StatusCode > 100 && res.StatusCode < 300 {
		p.retoken(out, t)
	}
	p.anchorAnswer(out)
	// Parsed off the wire, the response's destination is our own socket:
	// send by the remaining Via (received/rport were set on arrival).
	out.SetDestination("")
	if res.StatusCode >= 200 {
		if cs := res.CSeq(); cs != nil {
			p.responses.Add(string(cs.MethodName), res.StatusCode)
		}
	}
	if err := tx.Respond(out); err != nil {
		p.log.Debug("relay response", "call", callID(res), "code", res.StatusCode, "err", err)
	}
}

// better picks the response to send upstream when no 2xx came (RFC 3261
// §16.7 step 6): a 6xx, else the lowest class, preferring 401/407 and
// specific codes over 408/503 of a branch that never answered.
func better(a, b *sip.Response) *sip.Response {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	if (a.StatusCode >= 600) != (b.StatusCode >= 600) {
		if a.StatusCode >= 600 {
			return a
		}
		return b
	}
	ca, cb := a.StatusCode/100, b.StatusCode/100
	if ca != cb {
		if ca < cb {
			return a
		}
		return b
	}
	rank := func(r *sip.Response) int {
		switch r.StatusCode {
		case 401, 407:
			return 0
		case 408, 503:
			return 2
		}
		return 1
	}
	if rank(b) < rank(a) {
		return b
	}
	return a
}

// contactHeaders lists bindings as Contact headers of a 3xx.
//
// A binding's Path goes as a Route in its Contact's headers (RFC 3261
// §19.1.5): the caller that follows the 302 reaches the binding through
// the same edge proxy (a NAT'd UA's flow) a proxy would.
func contactHeaders(bs []lsp.Binding) []sip.Header {
	var out []sip.Header
	now := time.Now()
	for _, b := range bs {
		c := strings.Trim(b.Contact, "<>")
		if len(b.Path) > 0 {
			sep := "?"
			if strings.Contains(c, "?") {
				sep = "&"
			}
			route := make([]string, len(b.Path))
			for i, v := range b.Path {
				if v = strings.TrimSpace(v); !strings.HasPrefix(v, "<") {
					v = "<" + v + ">" // Route takes name-addrs: a bare URI's params would be the header's
				}
				route[i] = v
			}
			c += sep + "Route=" + escapeHeaderValue(strings.Join(route, ","))
		}
		v := "<" + c + ">"
		if b.Q > 0 {
			v += ";q=" + strconv.FormatFloat(b.Q, 'f', -1, 64)
		}
		if left := int(b.Expires.Sub(now).Seconds()); left > 0 {
			v += ";expires=" + strconv.Itoa(left)
		}
		out = append(out, sip.NewHeader("Contact", v))
	}
	return out
}
