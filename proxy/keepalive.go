package proxy

import (
	"context"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// keepalive sends OPTIONS to every static peer each KeepaliveInterval and
// records which answered (any response counts: the peer is reachable and
// its SIP stack alive). Peers that did not answer are tried last.
func (p *Proxy) keepalive() {
	// The first round waits for the listener to be serving (its socket is
	// what the OPTIONS go out from).
	first := time.NewTimer(min(p.cfg.KeepaliveInterval, time.Second))
	defer first.Stop()
	select {
	case <-p.ctx.Done():
		return
	case <-first.C:
	}
	t := time.NewTicker(p.cfg.KeepaliveInterval)
	defer t.Stop()
	for {
		p.pingPeers()
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Proxy) pingPeers() {
	seen := map[string]bool{}
	for _, hops := range p.cfg.Static {
		for _, h := range hops {
			if seen[h] {
				continue
			}
			seen[h] = true
			var u sip.Uri
			if err := sip.ParseUri(h, &u); err != nil {
				continue
			}
			t, err := uriTarget(u, u, viaStatic)
			if err != nil {
				continue
			}
			up := p.ping(t)
			p.peersMu.Lock()
			was, known := p.peerUp[h]
			p.peerUp[h] = up
			p.peersMu.Unlock()
			if !known || was != up {
				p.log.Info("static peer", "peer", h, "up", up)
			}
		}
	}
}

// ping sends one OPTIONS to t and reports whether anything answered within
// the keepalive timeout.
func (p *Proxy) ping(t target) bool {
	if !p.wsConnected(t) {
		return false
	}
	req := sip.NewRequest(sip.OPTIONS, *t.uri.Clone())
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: t.tr,
		Host: p.self.host, Port: p.self.port, Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	from := "sip:" + p.self.String()
	if p.cfg.Domain != "" {
		from = "sip:" + p.cfg.Domain
	}
	req.AppendHeader(sip.NewHeader("From", "<"+from+">;tag="+strings.TrimPrefix(sip.GenerateBranchN(8), sip.RFC3261BranchMagicCookie+".")))
	req.AppendHeader(sip.NewHeader("To", "<"+t.uri.String()+">"))
	req.AppendHeader(sip.NewHeader("Call-ID", strings.TrimPrefix(sip.GenerateBranchN(16), sip.RFC3261BranchMagicCookie+".")))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	req.SetTransport(t.tr)
	req.SetDestination(t.dest)
	if t.tr == "UDP" {
		req.Laddr = p.laddr
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.KeepaliveTimeout)
	defer cancel()
	tx, err := p.client.TransactionRequest(ctx, req, asIs)
	if err != nil {
		p.log.Debug("keepalive", "peer", t.dest, "err", err)
		return false
	}
	defer tx.Terminate()
	select {
	case <-tx.Responses():
		return true
	case <-tx.Done():
		return false
	case <-ctx.Done():
		return false
	}
}

// peerDown reports whether the last keepalive to a static peer failed.
func (p *Proxy) peerDown(uri string) bool {
	p.peersMu.Lock()
	defer p.peersMu.Unlock()
	up, known := p.peerUp[uri]
	return known && !up
}

// PeerUp reports whether a static peer answered its last keepalive, and
// whether one was sent yet.
func (p *Proxy) PeerUp(uri string) (up, known bool) {
	p.peersMu.Lock()
	defer p.peersMu.Unlock()
	up, known = p.peerUp[uri]
	return up, known
}
