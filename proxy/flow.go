package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/registrar"
)

// NAT flows (RFC 5626 §5, this proxy as the edge proxy of a registrar that
// shares its sockets). A UA behind a NAT registers from a private Contact;
// only the socket its REGISTER reached can get a request back through the
// NAT (which lets in replies from where its packets went, nothing else),
// and only while the NAT remembers the mapping. So for such a binding:
//   - the registrar puts a Path first that names this proxy with a flow
//     token (the UA's public address and transport, under an HMAC only
//     this node can make): a proxy elsewhere that finds the binding
//     sends the request here, and this proxy sends it down the flow;
//   - this proxy sends the UA an OPTIONS every NATKeepalive until the
//     binding expires, which keeps the NAT's mapping open (any answer, or
//     none: the request itself refreshes the mapping).

// maxFlows bounds the flows kept alive (each is a few dozen bytes).
const maxFlows = 1 << 17

type flow struct {
	dest, tr string
	until    time.Time
}

type flows struct {
	mu sync.Mutex
	m  map[string]flow // dest|tr → flow
}

// Edge is the registrar's hook for a binding that came through a NAT from
// source over transport (as the REGISTER did), valid until until (zero:
// removed). It keeps the flow alive and returns the Path value that routes
// requests for the binding through this proxy and down the flow; "" when
// the proxy has no listener yet or the flow cannot be used.
func (p *Proxy) Edge(source, transport string, until time.Time) string {
	if p.self.port == 0 || len(p.cfg.FlowSecret) == 0 {
		return ""
	}
	tr := strings.ToUpper(transport)
	if tr != "UDP" && tr != "TCP" && tr != "TLS" {
		return ""
	}
	if _, _, err := net.SplitHostPort(source); err != nil {
		return ""
	}
	p.flows.mu.Lock()
	k := source + "|" + tr
	switch {
	case until.IsZero() || !until.After(time.Now()):
		delete(p.flows.m, k)
	case len(p.flows.m) < maxFlows || p.flows.m[k].dest != "":
		p.flows.m[k] = flow{dest: source, tr: tr, until: until}
	}
	p.flows.mu.Unlock()
	return p.flowURI(source, tr)
}

// flowURI is the Path or Record-Route value naming this proxy with the
// flow token of dest over tr.
func (p *Proxy) flowURI(dest, tr string) string {
	self := p.self
	if tr == "TLS" && p.tlsSelf.port != 0 {
		self = p.tlsSelf
	}
	uri := "sip:" + p.flowToken(dest, tr) + "@" + net.JoinHostPort(self.host, strconv.Itoa(self.port)) + ";lr;ob"
	if tr != "UDP" {
		uri += ";transport=" + strings.ToLower(tr)
	}
	return "<" + uri + ">"
}

// flowRecordRoutes: a dialog-forming request that goes down a flow, or
// came up one (a NAT'd caller), is record-routed with the flows' tokens,
// so the dialog's later requests in either direction find the flows
// (RFC 5626 §5.3). None when no flow is involved.
func (p *Proxy) flowRecordRoutes(req *sip.Request, t target) []string {
	if len(p.cfg.FlowSecret) == 0 || req.To().Params.Has("tag") ||
		(req.Method != sip.INVITE && req.Method != sip.SUBSCRIBE && req.Method != sip.REFER) {
		return nil
	}
	var rr []string
	if t.flow {
		rr = append(rr, p.flowURI(t.dest, t.tr))
	}
	if c := req.Contact(); c != nil && registrar.BehindNAT(c.Address.Host, req.Source()) {
		rr = append(rr, p.flowURI(req.Source(), strings.ToUpper(req.Transport())))
	}
	// The dialog's token too: a request that comes up the flow goes on
	// to the other party (rrtoken.go).
	tok := ";" + rrParam + "=" + p.callerToken(req) + ">"
	for i := range rr {
		rr[i] = strings.TrimSuffix(rr[i], ">") + tok
	}
	return rr
}

// flowToken is base64url(dest "|" tr) "." base64url(HMAC-SHA256 of it)[:16].
func (p *Proxy) flowToken(dest, tr string) string {
	body := []byte(dest + "|" + tr)
	mac := hmac.New(sha256.New, p.cfg.FlowSecret)
	mac.Write(body)
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:12])
}

// parseFlowToken returns the flow a token names, if this node made it.
func (p *Proxy) parseFlowToken(tok string) (dest, tr string, ok bool) {
	if len(p.cfg.FlowSecret) == 0 || len(tok) > 256 {
		return "", "", false
	}
	b64, _, found := strings.Cut(tok, ".")
	if !found {
		return "", "", false
	}
	body, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return "", "", false
	}
	dest, tr, found = strings.Cut(string(body), "|")
	if !found || !hmac.Equal([]byte(p.flowToken(dest, tr)), []byte(tok)) {
		return "", "", false
	}
	return dest, tr, true
}

// flowTarget: a Route or Path value naming this proxy with a flow token
// is the flow it names.
func (p *Proxy) flowTarget(u *sip.Uri) (dest, tr string, ok bool) {
	if u.User == "" || !p.isSelf(u) {
		return "", "", false
	}
	return p.parseFlowToken(u.User)
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
		now := time.Now()
		var due []flow
		p.flows.mu.Lock()
		for k, f := range p.flows.m {
			if now.After(f.until) {
				delete(p.flows.m, k)
				continue
			}
			due = append(due, f)
		}
		p.flows.mu.Unlock()
		for _, f := range due {
			select {
			case sem <- struct{}{}:
			case <-p.ctx.Done():
				return
			}
			f := f
			if !p.spawn(func() {
				defer func() { <-sem }()
				u := sip.Uri{Scheme: "sip"}
				host, port, _ := net.SplitHostPort(f.dest)
				u.Host = host
				u.Port, _ = strconv.Atoi(port)
				if p.ping(target{uri: u, dest: f.dest, tr: f.tr}) {
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
	p.flows.mu.Lock()
	defer p.flows.mu.Unlock()
	return len(p.flows.m)
}
