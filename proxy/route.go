package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/sipnet"
)

// How a target was found; counted in Stats.
type via int

const (
	viaURI      via = iota // the Request-URI or a Route names the next hop
	viaOverlay             // a binding in the location service
	viaStatic              // a configured static peer
	viaDNS                 // RFC 3263
	viaRedirect            // a Contact of a 3xx we recursed on
)

// target is one branch: the Request-URI to send and where to send it.
type target struct {
	uri   sip.Uri  // new Request-URI
	route []string // Route header values to prepend (RFC 3327 Path)
	dest  string   // host:port the request goes to
	tr    string   // transport: UDP, TCP, TLS
	q     float64
	how   via
	flow  bool // dest is a NAT flow this proxy keeps (flow.go)
	// natted: the binding's UA is behind a NAT (its REGISTER came through
	// an edge's flow, or from elsewhere than its private Contact): media
	// to the address its SDP names would not reach it.
	natted bool
	// local: dest may be on this host: a binding registered from this
	// host (its received address is loopback), or a hop of a dialog whose
	// party there was one (its token says so).
	local bool
	// peer: the domain a TLS connection to dest must present a
	// certificate of (RFC 5922); "" checks the chain only.
	peer string
	// gruu: the binding has an instance, so its UA may give its GRUU as
	// its Contact: a name only the overlay resolves, so the dialog is
	// record-routed through this proxy.
	gruu bool
}

// decision is what to do with a request: answer it here, or forward to
// groups of targets (each group in parallel, groups in turn).
type decision struct {
	code     int
	reason   string
	contacts []lsp.Binding // for a 302
	groups   [][]target
	// failover: the groups are alternative servers (static peers, DNS
	// targets): the next is tried only when one fails (503 or no answer).
	failover bool
	// open: the next hop may be used by any sender (the relay policy is
	// decided on it, not on what the request claims): bindings of this
	// domain's users, a NAT flow this proxy keeps, or, inside a dialog
	// this proxy record-routed, one of the dialog's hops (a Route whose
	// token this proxy minted for the Call-ID and that hop). Anything else
	// (a pre-loaded Route, an address in the Request-URI, a foreign
	// domain, a static peer, DNS) needs a trusted sender or an
	// authenticated user.
	open bool
	// minted: open because of a dialog's token (an in-dialog request of a
	// dialog this proxy record-routed, going to one of its hops).
	minted bool
	// deny: the relay policy refused the request (gate's answer).
	deny *sip.Response
	// hdrs: headers of the answer (code), e.g. a 503's Retry-After.
	hdrs []sip.Header
}

func answer(code int, reason string) decision { return decision{code: code, reason: reason} }

// validate applies RFC 3261 §16.3 to a request: it returns a non-zero code
// when the request must be answered here.
func (p *Proxy) validate(req *sip.Request) (int, string) {
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		return 400, "Missing To, From, Call-ID, CSeq or Via"
	}
	if req.CSeq().MethodName != req.Method {
		return 400, "CSeq method does not match"
	}
	if s := strings.ToLower(req.Recipient.Scheme); s != "sip" && s != "sips" {
		return 416, "Unsupported URI Scheme"
	}
	if req.Recipient.Host == "" || req.Recipient.Wildcard {
		return 400, "Bad Request-URI"
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return 483, "Too Many Hops"
	}
	if len(proxyRequire(req)) > 0 {
		return 420, "Bad Extension" // we support no proxy extension
	}
	if p.looped(req) {
		return 482, "Loop Detected"
	}
	if dialogOnly(req.Method) && !req.To().Params.Has("tag") && req.GetHeader("Route") == nil {
		// A request of these methods outside a dialog matches none (RFC
		// 3261 §12.2.2 and the methods' RFCs): answered here as the UAS
		// would, so a stray one (sipp's BYE after a call it aborted on
		// our 503) is not carried to a UA that drops it, retransmitted
		// for 32 s, while overload feeds on it. With a Route it may be in
		// a dialog with an RFC 2543 UA (no tags, §12.1.1) that we
		// record-routed: the Route decides.
		return 481, "Call/Transaction Does Not Exist"
	}
	return 0, ""
}

// dialogOnly: methods sent only inside a dialog (RFC 3261 BYE, RFC 3262
// PRACK, RFC 3311 UPDATE, RFC 6086 INFO), so always with a To tag.
func dialogOnly(m sip.RequestMethod) bool {
	return m == sip.BYE || m == sip.PRACK || m == sip.UPDATE || m == sip.INFO
}

// proxyRequire lists the option tags of the request's Proxy-Require
// headers.
func proxyRequire(req *sip.Request) []string {
	var tags []string
	for _, h := range req.GetHeaders("Proxy-Require") {
		for _, t := range strings.Split(h.Value(), ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	}
	return tags
}

// loopKey hashes what RFC 3261 §16.6 item 8 says a spiral changes and a
// loop does not; it goes into our Via branch so a request coming back
// unchanged is recognised (§16.3 item 4).
func (p *Proxy) loopKey(req *sip.Request) string {
	st, ok := p.loops.Get().(*loopState)
	if !ok {
		st = &loopState{h: sha256.New()}
	}
	defer p.loops.Put(st)
	return st.key(req)
}

// loopState is a reusable hash and buffer for loopKey: the key is
// written from the parsed request without a string per header.
type loopState struct {
	h   hash.Hash
	buf bytes.Buffer
	sum [sha256.Size]byte
}

func (st *loopState) key(req *sip.Request) string {
	st.h.Reset()
	st.buf.Reset()
	req.Recipient.StringWrite(&st.buf)
	st.h.Write(st.buf.Bytes())
	hdrs := req.Headers()
	for _, name := range []string{"To", "From", "Call-ID", "Proxy-Require", "Proxy-Authorization", "Route"} {
		for _, v := range hdrs { // (GetHeaders lowercases every header's name on each call)
			if sipnet.HeaderNameIs(v.Name(), name) {
				// The value: what StringWrite puts after "Name: ".
				st.buf.Reset()
				v.StringWrite(&st.buf)
				b := st.buf.Bytes()
				if i := bytes.Index(b, []byte(": ")); i >= 0 {
					b = b[i+2:]
				}
				st.h.Write([]byte{0})
				st.h.Write(b)
			}
		}
	}
	if c := req.CSeq(); c != nil {
		st.h.Write(strconv.AppendUint(st.sum[:0], uint64(c.SeqNo), 10))
	}
	return hex.EncodeToString(st.h.Sum(st.sum[:0])[:6])
}

// looped reports whether one of the request's Vias is ours with the same
// loop key: the request came back unchanged.
func (p *Proxy) looped(req *sip.Request) bool {
	key := ""
	for _, h := range req.GetHeaders("Via") {
		v, ok := h.(*sip.ViaHeader)
		if !ok || v.Port != p.self.port || v.Host != p.self.host {
			continue
		}
		b, _ := v.Params.Get("branch")
		b = strings.TrimPrefix(b, sip.RFC3261BranchMagicCookie)
		if i := strings.IndexByte(b, '.'); i > 0 {
			if key == "" {
				key = p.loopKey(req)
			}
			if b[:i] == key {
				return true
			}
		}
	}
	return false
}

// trusted reports whether req came from a trusted network: such senders
// may send anywhere (co-located servers and UAs).
func (p *Proxy) trusted(req *sip.Request) bool {
	return sipnet.InNetworks(req.Source(), p.cfg.TrustedNetworks)
}

// isSelf reports whether u names this proxy: its address, or its domain
// without a user part.
func (p *Proxy) isSelf(u *sip.Uri) bool {
	port := u.Port
	if port == 0 {
		port = 5060
	}
	if strings.EqualFold(u.Host, p.self.host) && port == p.self.port {
		return true
	}
	if p.tlsSelf.port != 0 && strings.EqualFold(u.Host, p.tlsSelf.host) && (u.Port == p.tlsSelf.port || u.Port == 0 && p.tlsSelf.port == 5061) {
		return true
	}
	return u.User == "" && p.cfg.Domain != "" && strings.EqualFold(u.Host, p.cfg.Domain)
}

// decide routes an initial or in-dialog request (RFC 3261 §16.4–16.5).
// gate, when not nil, is the relay policy for a request whose next hop is
// not open (nil: go on, else the response to send); decide calls it before
// it spends a lookup or DNS work on a foreign destination.
func (p *Proxy) decide(ctx context.Context, req *sip.Request, gate func() *sip.Response) decision {
	flowTo, token, ok := p.popSelfRoutes(req)
	if !ok {
		return answer(403, "Invalid flow token")
	}
	if flowTo != nil && req.Route() == nil {
		p.stats.flowed.Add(1)
		return decision{groups: [][]target{{*flowTo}}, open: true}
	}
	// A remaining Route decides the next hop (loose routing).
	if r := req.Route(); r != nil {
		t, err := uriTarget(r.Address, req.Recipient, viaURI)
		if err != nil {
			return answer(400, "Bad Route")
		}
		t.peer = sipnet.PeerName(r.Address.Host)
		minted := p.rrTokenAllows(token, callID(req), t.dest)
		t.local = p.rrTokenAllows(token, callID(req), localHop(t.dest))
		return decision{groups: [][]target{{t}}, open: minted, minted: minted}
	}
	if p.isSelf(&req.Recipient) {
		if req.Method == sip.OPTIONS {
			return answer(200, "OK")
		}
		return answer(404, "Not Found")
	}
	// A Request-URI that is an address (a Contact: in-dialog requests,
	// 2xx ACKs) is the next hop. Any other goes by location, in-dialog or
	// not: a UA may address a BYE to the AOR when it has no Contact.
	if net.ParseIP(strings.Trim(req.Recipient.Host, "[]")) != nil {
		t, err := uriTarget(req.Recipient, req.Recipient, viaURI)
		if err != nil {
			return answer(400, "Bad Request-URI")
		}
		minted := p.rrTokenAllows(token, callID(req), t.dest)
		t.local = p.rrTokenAllows(token, callID(req), localHop(t.dest))
		return decision{groups: [][]target{{t}}, open: minted, minted: minted}
	}
	return p.byLocation(ctx, req, token, gate)
}

// byLocation routes a request whose Request-URI is a name by the overlay's
// bindings of it, else (a foreign domain the overlay does not know) by
// foreign. A GRUU is a Contact a UA gives in its dialogs (RFC 5627 §4.2):
// a request of a dialog this proxy record-routed, to the Contact its
// token names, is let through as one to an address would be.
func (p *Proxy) byLocation(ctx context.Context, req *sip.Request, token string, gate func() *sip.Response) decision {
	aor, err := lsp.Canonical(sipnet.AOROf(req.Recipient))
	if err != nil {
		return answer(404, "Not Found")
	}
	domain := lsp.Domain(aor)
	minted := p.rrTokenAllows(token, callID(req), gruuHop(req.Recipient))
	own := p.cfg.Domain != "" && strings.EqualFold(domain, p.cfg.Domain)
	if !own && gate != nil && !minted {
		// A foreign destination: only for trusted or authenticated
		// senders, decided before any lookup or DNS work is spent on it.
		if res := gate(); res != nil {
			return decision{deny: res}
		}
	}
	bs, err := p.lookup(ctx, aor)
	if err != nil {
		p.log.Warn("location lookup failed", "call", callID(req), "aor", aor, "err", err)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, lsp.ErrUnavailable) {
			d := answer(503, "Location service unavailable")
			d.hdrs = []sip.Header{retryAfter(p.cfg.RetryAfter.Seconds())}
			return d
		}
		return answer(500, "Location service error")
	}
	bs, ok := instanceOf(req.Recipient, bs)
	if !ok {
		return answer(480, "Temporarily Unavailable")
	}
	if len(bs) > 0 {
		if p.cfg.Mode == Redirecting {
			return decision{code: 302, reason: "Moved Temporarily", contacts: bs}
		}
		return decision{groups: p.bindingGroups(bs, domain, req.Recipient), open: own || minted, minted: minted}
	}
	if own {
		if p.cfg.KnownUser != nil && !p.cfg.KnownUser(aor) {
			return answer(404, "Not Found")
		}
		return answer(480, "Temporarily Unavailable")
	}
	return p.foreign(ctx, req, domain)
}

// instanceOf keeps, when ruri is a public GRUU (RFC 5627 §3.1), the
// bindings of the instance it names; ok false when the AOR has bindings
// but none of that instance (it is not registered: 480, §5.3). Any other
// ruri keeps bs. (A temporary GRUU is an AOR of its own holding its
// instance's bindings alone: registrar/gruu.go.)
func instanceOf(ruri sip.Uri, bs []lsp.Binding) (_ []lsp.Binding, ok bool) {
	gr, isGRUU := sipnet.GRUU(&ruri)
	if !isGRUU || gr == "" || len(bs) == 0 {
		return bs, true
	}
	bs = slices.DeleteFunc(slices.Clone(bs), func(b lsp.Binding) bool {
		return b.Instance == "" || !strings.EqualFold(sipnet.InstanceID(b.Instance), gr)
	})
	return bs, len(bs) > 0
}

// popSelfRoutes removes the Routes naming us from the top of req (§16.4;
// two when we record-routed twice across transports, RFC 5658). It
// returns the flow one of them names (RFC 5626 §5.3: the request goes
// down it, unless it came up that flow: a dialog's request from the NAT'd
// party) and the Record-Route token one carries (trusted only inside a
// dialog, for the hops it names); ok false for a flow token we did not
// make.
func (p *Proxy) popSelfRoutes(req *sip.Request) (flowTo *target, token string, ok bool) {
	for r := req.Route(); r != nil && p.isSelf(&r.Address); r = req.Route() {
		if tok, ok := r.Address.UriParams.Get(rrParam); ok && req.To().Params.Has("tag") {
			token = tok
		}
		if r.Address.User != "" {
			dest, tr, ok := p.flowTarget(&r.Address)
			if !ok {
				return nil, "", false
			}
			if dest != req.Source() {
				flowTo = &target{uri: req.Recipient, dest: dest, tr: tr, how: viaURI, flow: true}
			}
		}
		req.RemoveHeader("Route")
	}
	return flowTo, token, true
}

// CatchAll is the key of Config.Static whose next hops serve every
// foreign domain without hops of its own (a federation's redirect server).
const CatchAll = "*"

// staticHops returns the configured next hops of domain, else the
// catch-all ones (catchAll true).
func (p *Proxy) staticHops(domain string) (hops []string, catchAll bool) {
	if hops := p.cfg.Static[strings.ToLower(domain)]; len(hops) > 0 {
		return hops, false
	}
	return p.cfg.Static[CatchAll], true
}

// foreign routes a request for a domain that is not ours and that the
// overlay does not know: to its static peers (the domain's own, else the
// catch-all ones), else to its RFC 3263 DNS targets. A redirect server
// answers 302 with the domain's static peers as next hops, and proxies
// nothing.
func (p *Proxy) foreign(ctx context.Context, req *sip.Request, domain string) decision {
	if hops, catchAll := p.staticHops(domain); len(hops) > 0 && !(catchAll && p.cfg.Mode == Redirecting) {
		if p.cfg.Mode == Redirecting {
			// A domain's own entry only: a catch-all hop (another
			// redirect server) stands for no domain, and a member
			// follows no redirect to a redirect server.
			return redirectVia(req.Recipient, hops)
		}
		// Static peers are alternatives, tried one after the other; those
		// that missed their last keepalive go last.
		var up, down [][]target
		for _, h := range hops {
			var u sip.Uri
			if err := sip.ParseUri(h, &u); err != nil {
				continue
			}
			t, err := uriTarget(u, req.Recipient, viaStatic)
			if err != nil {
				continue
			}
			t.peer = strings.ToLower(domain) // the peer stands for the domain
			if catchAll {
				// A catch-all peer (a federation's redirect server) stands
				// for no domain but its own name.
				t.peer = sipnet.PeerName(u.Host)
			}
			if p.peerDown(h) {
				down = append(down, []target{t})
			} else {
				up = append(up, []target{t})
			}
		}
		groups := append(up, down...)
		return decision{groups: groups, failover: true}
	}
	if p.cfg.Mode == Redirecting {
		return answer(404, "Not Found") // a redirect server proxies nothing
	}
	if p.cfg.DNS != nil {
		ts, err := p.cfg.DNS.Targets(ctx, req.Recipient)
		if err != nil || len(ts) == 0 {
			p.log.Debug("no DNS target", "domain", domain, "err", err)
			return answer(404, "Not Found")
		}
		groups := make([][]target, len(ts))
		for i, t := range ts {
			groups[i] = []target{{uri: req.Recipient, dest: t.Addr, tr: t.Transport, how: viaDNS, peer: strings.ToLower(domain)}}
		}
		return decision{groups: groups, failover: true}
	}
	return answer(404, "Not Found")
}

// redirectVia is a redirect server's answer for a foreign domain
// (speermint-flows §7.1): 302 with the Request-URI as the Contact and one of
// the domain's next hops as a Route in its headers, one Contact per hop,
// in the configured order by q.
func redirectVia(ruri sip.Uri, hops []string) decision {
	to := *ruri.Clone()
	to.Headers = nil
	var cs []lsp.Binding
	for i, h := range hops[:min(len(hops), maxRedirectTargets)] {
		var u sip.Uri
		if err := sip.ParseUri(h, &u); err != nil {
			continue
		}
		if u.UriParams == nil {
			u.UriParams = sip.NewParams()
		}
		if !u.UriParams.Has("lr") {
			u.UriParams.Add("lr", "")
		}
		cs = append(cs, lsp.Binding{Contact: to.String(), Path: []string{"<" + u.String() + ">"}, Q: max(0.1, 1-0.1*float64(i))})
	}
	if len(cs) == 0 {
		return answer(404, "Not Found")
	}
	return decision{code: 302, reason: "Moved Temporarily", contacts: cs}
}

// redirectTarget is the branch a 3xx Contact names (RFC 3261 §8.1.3.4):
// the Contact without its headers is the Request-URI; a Route among its
// headers (§19.1.5: a federation's redirect server naming a domain's next
// hop, a redirect server naming a NAT'd binding's edge proxy) is the path
// the request takes first, as a binding's Path is. A TLS connection to a
// Route's hop must be one of domain, the redirected request's (the hop
// stands for it, as a static peer or a binding's edge proxy does); to the
// Contact, one of its host.
func redirectTarget(c sip.Uri, domain string) (target, error) {
	ruri := *c.Clone()
	ruri.Headers = nil
	next, route := ruri, []string(nil)
	if c.Headers != nil {
		if v, ok := c.Headers.Get("Route"); ok {
			raw, err := url.PathUnescape(v)
			if err != nil {
				return target{}, fmt.Errorf("Route header of a Contact: %w", err)
			}
			if route, next, err = routeSet(splitHeaderValues(raw)); err != nil {
				return target{}, fmt.Errorf("Route header of a Contact: %w", err)
			}
		}
	}
	t, err := uriTarget(next, ruri, viaRedirect)
	if err != nil {
		return target{}, err
	}
	t.route = route
	t.peer = sipnet.PeerName(next.Host)
	if len(route) > 0 {
		t.peer = strings.ToLower(strings.TrimSuffix(domain, "."))
	}
	return t, nil
}

// maxRoutes bounds a route set taken from a binding's Path or a 3xx
// Contact (lsp allows 8 Path entries).
const maxRoutes = 8

// routeSet checks a route set that came from elsewhere (a binding's Path,
// a 3xx Contact's Route header) and rebuilds each value from its parsed
// URI, so nothing but a URI goes out in a Route header: a value with a
// control character (CR LF: a header of its own, or a second message on a
// stream) or text past its name-addr is never copied. It returns the
// values and the first hop's URI.
func routeSet(vals []string) ([]string, sip.Uri, error) {
	if len(vals) == 0 || len(vals) > maxRoutes {
		return nil, sip.Uri{}, fmt.Errorf("%d Route values (want 1 to %d)", len(vals), maxRoutes)
	}
	out := make([]string, len(vals))
	var first sip.Uri
	for i, v := range vals {
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, sip.Uri{}, errors.New("control character in a Route value")
		}
		var u sip.Uri
		if _, err := sip.ParseAddressValue(v, &u, nil); err != nil || strings.Trim(u.Host, "[]") == "" {
			return nil, sip.Uri{}, fmt.Errorf("Route value %q is not a SIP URI", v)
		}
		u.Headers = nil
		out[i] = "<" + u.String() + ">"
		if i == 0 {
			first = u
		}
	}
	return out, first, nil
}

// splitHeaderValues splits a comma-separated header value list (name-addr
// values: commas inside <> or quotes do not split).
func splitHeaderValues(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>' && depth > 0:
			depth--
		case c == ',' && depth == 0:
			if v := strings.TrimSpace(s[start:i]); v != "" {
				out = append(out, v)
			}
			start = i + 1
		}
	}
	if v := strings.TrimSpace(s[start:]); v != "" {
		out = append(out, v)
	}
	return out
}

// escapeHeaderValue escapes a URI header's value (RFC 3261 §25.1 hvalue:
// unreserved and hnv-unreserved characters stay, the rest is %HH).
func escapeHeaderValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.!~*'()[]/?:+$", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// bindingGroups turns bindings into target groups by q, highest first
// (RFC 3261 §16.6: equal q in parallel, lower q after higher q failed).
// A binding without q counts as 1.0.
// A TLS connection to the first hop of a binding's Path (the edge proxy of
// the AOR's registrar) must be one of domain; to a Contact, one of the
// Contact's host when it is a name.
func (p *Proxy) bindingGroups(bs []lsp.Binding, domain string, ruri sip.Uri) [][]target {
	var ts []target
	for _, b := range bs {
		var u sip.Uri
		if err := sip.ParseUri(strings.Trim(b.Contact, "<>"), &u); err != nil {
			continue
		}
		next := u
		var route []string
		if len(b.Path) > 0 {
			// RFC 3327: the request follows the Path to the registrar's
			// edge proxy before the Contact. A domain signed it, but
			// any domain may sign: rebuilt, never copied (routeSet).
			rs, pu, err := routeSet(b.Path)
			if err != nil {
				continue
			}
			next, route = pu, rs
		}
		t, err := uriTarget(next, u, viaOverlay)
		if err != nil {
			continue
		}
		t.route, t.gruu = route, b.Instance != ""
		t.peer = sipnet.PeerName(next.Host)
		t.natted = sipnet.BehindNAT(u.Host, b.Received)
		if len(route) > 0 {
			t.peer = strings.ToLower(domain)
			// Our own flow first in the Path: straight down it.
			var pu sip.Uri
			if _, err := sip.ParseAddressValue(route[0], &pu, nil); err == nil {
				if dest, tr, ok := p.flowTarget(&pu); ok {
					t.dest, t.tr, t.route, t.flow, t.peer = dest, tr, route[1:], true, ""
					p.stats.flowed.Add(1)
				}
			}
		}
		if len(route) == 0 && sipnet.BehindNAT(u.Host, b.Received) {
			// RFC 3581: a NATed UA is reached at the address its REGISTER
			// came from, not the private one in its Contact.
			t.dest = b.Received
		}
		if h, _, err := net.SplitHostPort(b.Received); err == nil && p.ownBinding(b) {
			if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
				t.local = true
			}
		}
		t.q = b.Q
		if t.q == 0 {
			t.q = 1
		}
		ts = append(ts, t)
	}
	return byQ(ts)
}

// ownBinding: b was registered with this proxy's domain (signed by its
// credential, or from the registrar's own in-process store, unsigned), so
// a loopback Received means this host. Another domain's, or an AOR
// certificate's, names its own host at best, and a forged one this
// proxy's services.
func (p *Proxy) ownBinding(b lsp.Binding) bool {
	return b.Signer == "" || strings.EqualFold(b.Signer, p.cfg.Domain)
}

// byQ groups targets by q, highest first (RFC 3261 §16.6: equal q in
// parallel, lower q after higher q failed), keeping their order in a group.
func byQ(ts []target) [][]target {
	slices.SortStableFunc(ts, func(a, b target) int {
		switch {
		case a.q > b.q:
			return -1
		case a.q < b.q:
			return 1
		}
		return 0
	})
	var groups [][]target
	for i := 0; i < len(ts); {
		j := i + 1
		for j < len(ts) && ts[j].q == ts[i].q {
			j++
		}
		groups = append(groups, ts[i:j])
		i = j
	}
	return groups
}

// uriTarget sends ruri to the address next names (its maddr or host, port
// and transport; no DNS: the proxy's SRV work is in Resolver).
func uriTarget(next, ruri sip.Uri, how via) (target, error) {
	host := next.Host
	if m, ok := next.UriParams.Get("maddr"); ok && m != "" {
		host = m
	}
	if !hostName(host) {
		return target{}, fmt.Errorf("bad host %q", host)
	}
	tr := "UDP"
	if v, ok := next.UriParams.Get("transport"); ok && v != "" {
		tr = strings.ToUpper(v)
	}
	if strings.EqualFold(next.Scheme, "sips") {
		tr = "TLS"
	}
	port := next.Port
	if port == 0 {
		port = 5060
		if tr == "TLS" {
			port = 5061
		}
	}
	return target{uri: ruri, dest: net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)), tr: tr, how: how}, nil
}

// hostName: h is an IP address (an IPv6 one in brackets or not) or a DNS
// name's letters, digits, dots, hyphens and underscores (RFC 3261 §25.1
// host, _ as SRV-style names have it).
func hostName(h string) bool {
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// destAllowed is the last check before a request leaves: a destination on
// this host or link, named or resolved, is only for trusted senders, NAT
// flows this proxy keeps and bindings registered from this host. Whatever
// named it (a Contact, a Path, a Route, DNS, an authenticated user's
// Request-URI), requests never reach the node's own services otherwise.
func (p *Proxy) destAllowed(ctx context.Context, req *sip.Request, t target) bool {
	if t.flow || t.local || p.trusted(req) && t.how != viaRedirect {
		// A trusted sender chose its destination; a 3xx's Contact was
		// chosen by whoever answered (a UA behind a static peer that is
		// a proxy): unless the redirect server is on this host or link
		// (recurse sets local), it gets the checks below.
		return true
	}
	host, _, err := net.SplitHostPort(t.dest)
	if err != nil {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return !sipnet.HostOrLink(ip)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return true // it will not be reached either
	}
	for _, a := range ips {
		if sipnet.HostOrLink(a.IP) {
			return false
		}
	}
	return true
}
