package proxy

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/sipnet"
)

// NAT flows (RFC 5626 §5): this proxy is the edge proxy of the registrar
// on its stack. The flows and their tokens are sipnet's (sipnet.Flows):
// the registrar puts a flow's URI first in the Path of a binding that came
// through a NAT; a request whose Route or Path names the flow is sent down
// it here (route.go), and every live flow gets an OPTIONS each
// NATKeepalive, which keeps the NAT's mapping open.

// flowRecordRoutes: a dialog-forming request that goes down a flow, or
// came up one (a NAT'd caller), is record-routed with the flows' tokens,
// so the dialog's later requests in either direction find the flows
// (RFC 5626 §5.3). None when no flow is involved.
func (p *Proxy) flowRecordRoutes(req *sip.Request, t target) []string {
	if p.flows == nil || req.To().Params.Has("tag") ||
		(req.Method != sip.INVITE && req.Method != sip.SUBSCRIBE && req.Method != sip.REFER) {
		return nil
	}
	var rr []string
	if t.flow {
		rr = append(rr, p.flows.URI(t.dest, t.tr))
	}
	if c := req.Contact(); c != nil && sipnet.NeedsFlow(c.Address.Host, req.Source(), req.Transport()) {
		rr = append(rr, p.flows.URI(req.Source(), strings.ToUpper(req.Transport())))
	}
	// The dialog's token too: a request that comes up the flow goes on
	// to the other party (rrtoken.go).
	tok := ";" + rrParam + "=" + p.callerToken(req) + ">"
	for i := range rr {
		rr[i] = strings.TrimSuffix(rr[i], ">") + tok
	}
	return rr
}

// flowTarget: a Route or Path value naming this proxy with a flow token
// is the flow it names.
func (p *Proxy) flowTarget(u *sip.Uri) (dest, tr string, ok bool) {
	if p.flows == nil || u.User == "" || !p.isSelf(u) {
		return "", "", false
	}
	return p.flows.Parse(u.User)
}

// wsConnected: t is not over a WebSocket, or it is one of this node's
// flows (a token only this node mints names the UA's own connection) and
// that WebSocket is open here. A WebSocket UA cannot be connected to (RFC
// 7118 §5): without its connection sipgo would dial a WebSocket to
// whatever address a binding names. And a WebSocket target that is no flow
// (a Request-URI or Route with ;transport=ws) is refused: sipgo's pool
// also knows each connection by the listener's address, which would send
// the request down whichever browser connected last.
func (p *Proxy) wsConnected(t target) bool {
	if !sipnet.IsWS(t.tr) {
		return true
	}
	if p.tpl == nil || !t.flow {
		return false
	}
	pool := p.tpl.Pool(t.tr)
	if pool == nil {
		return false
	}
	c := pool.Get(t.dest)
	if c == nil {
		return false
	}
	c.Ref(-1) // Get took a reference
	return true
}

// natKeepalive pings every live flow each NATKeepalive.
func (p *Proxy) natKeepalive() {
	t := time.NewTicker(p.cfg.NATKeepalive)
	defer t.Stop()
	sem := make(chan struct{}, 64)
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		for _, f := range p.flows.Live(time.Now()) {
			select {
			case sem <- struct{}{}:
			case <-p.ctx.Done():
				return
			}
			f := f
			if !p.spawn(func() {
				defer func() { <-sem }()
				u := sip.Uri{Scheme: "sip"}
				host, port, _ := net.SplitHostPort(f.Dest)
				u.Host = host
				u.Port, _ = strconv.Atoi(port)
				if p.ping(target{uri: u, dest: f.Dest, tr: f.Transport}) {
					p.stats.natPingsAnswered.Add(1)
				}
				p.stats.natPings.Add(1)
			}) {
				return
			}
		}
	}
}

// Flows returns how many NAT flows the proxy keeps alive.
func (p *Proxy) Flows() int {
	if p.flows == nil {
		return 0
	}
	return p.flows.Len()
}
