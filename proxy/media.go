package proxy

import (
	"fmt"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/registrar"
	"github.com/lsnode/lsnode/relay"
)

// hasSDP reports whether a message carries an SDP body.
func hasSDP(m interface {
	ContentType() *sip.ContentTypeHeader
	Body() []byte
}) bool {
	ct := m.ContentType()
	return ct != nil && strings.HasPrefix(strings.ToLower(ct.Value()), "application/sdp") && len(m.Body()) > 0
}

// anchorOffer rewrites an initial INVITE's SDP offer to the relay when the
// media policy says so. The callee is told to send to leg 1; what the
// caller wants comes from its SDP.
func (p *Proxy) anchorOffer(req *sip.Request) {
	if p.cfg.MediaPolicy == "off" || req.Method != sip.INVITE || req.To().Params.Has("tag") || !hasSDP(req) {
		return
	}
	id := req.CallID().Value()
	_, ip, port, err := relay.RewriteSDP(req.Body(), "127.0.0.1", 0) // where the caller wants media
	if err != nil {
		p.log.Debug("media relay: offer not anchored", "call", id, "err", err)
		return
	}
	if p.cfg.MediaPolicy == "auto" {
		if !p.privateParty(req, ip) {
			return
		}
		if p.cfg.AtRelay != nil && p.cfg.AtRelay(ip, port) {
			p.stats.relayed.Add(1)
			p.log.Debug("media relay: offer already at an overlay relay", "call", id, "addr", net.JoinHostPort(ip.String(), fmt.Sprint(port)))
			return
		}
	}
	rip, rport, err := p.cfg.Media.Offer(p.ctx, id, ip, port)
	if err != nil {
		p.log.Warn("media relay: no session", "call", id, "err", err)
		return
	}
	body, _, _, err := relay.RewriteSDP(req.Body(), rip, rport)
	if err != nil {
		p.cfg.Media.End(id)
		return
	}
	req.SetBody(body)
	p.stats.anchored.Add(1)
}

// privateParty: the offer's connection address (media), the caller's
// Contact or its Via is a private (NAT'd) address.
func (p *Proxy) privateParty(req *sip.Request, media net.IP) bool {
	if registrar.PrivateAddr(media) {
		return true
	}
	if c := req.Contact(); c != nil {
		if ip := net.ParseIP(strings.Trim(c.Address.Host, "[]")); ip != nil && registrar.PrivateAddr(ip) {
			return true
		}
	}
	if v := req.Via(); v != nil {
		if ip := net.ParseIP(strings.Trim(v.Host, "[]")); ip != nil && registrar.PrivateAddr(ip) {
			return true
		}
	}
	return false
}

// anchorAnswer rewrites an SDP answer (in a 18x or 2xx to an anchored
// INVITE) so the caller sends to leg 0, and records where the callee wants
// media.
func (p *Proxy) anchorAnswer(res *sip.Response) {
	if p.cfg.MediaPolicy == "off" || !hasSDP(res) || res.CSeq() == nil || res.CSeq().MethodName != sip.INVITE {
		return
	}
	id := res.CallID().Value()
	if !p.anchored(id) {
		return
	}
	_, ip, port, err := relay.RewriteSDP(res.Body(), "127.0.0.1", 0)
	if err != nil {
		return
	}
	rip, rport, err := p.cfg.Media.Answer(p.ctx, id, ip, port)
	if err != nil {
		p.log.Warn("media relay: answer not anchored", "call", id, "err", err)
		return
	}
	if body, _, _, err := relay.RewriteSDP(res.Body(), rip, rport); err == nil {
		res.SetBody(body)
	}
}

// anchored reports whether the call has a relay session.
func (p *Proxy) anchored(callID string) bool {
	return p.cfg.Media != nil && p.cfg.Media.Has(callID)
}

// unanchor ends a call's relay session (BYE, CANCEL, failed INVITE).
func (p *Proxy) unanchor(callID string) {
	if p.cfg.Media != nil {
		p.cfg.Media.End(callID)
	}
}
