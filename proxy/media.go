package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/relay"
	"github.com/lsnode/lsnode/sipnet"
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
// media policy says so, and reports whether it made a session (only then
// may the INVITE's failure end it). The callee is told to send to leg 1; what the
// caller wants comes from its SDP. "auto" anchors when either side is
// behind a NAT: the caller (privateParty) or a callee among the targets
// (natted; speermint-flows §8: a public caller's media would go to the
// NAT'd callee's private address), the relay latching its real one.
func (p *Proxy) anchorOffer(req *sip.Request, groups [][]target) bool {
	if p.cfg.MediaPolicy == "off" || req.Method != sip.INVITE || req.To().Params.Has("tag") || !hasSDP(req) {
		return false
	}
	id := mediaKey(req)
	if id == "" || p.anchored(id) {
		return false // no From tag, or a session of this call exists: not ours to change
	}
	if webRTC(req.Body()) {
		p.log.Debug("media relay: offer not anchored: ICE or secure media (WebRTC) finds its own way, through TURN", "call", id)
		return false
	}
	_, streams, err := relay.RewriteSDP(req.Body(), "127.0.0.1", nil) // where the caller wants media
	if err != nil {
		p.log.Debug("media relay: offer not anchored", "call", id, "err", err)
		return false
	}
	ip, port := streams[0].IP, streams[0].Port
	if port == 0 {
		return false // the first stream decides, and holds the call's session
	}
	if p.cfg.MediaPolicy == "auto" {
		if !p.privateParty(req, ip) && !nattedCallee(groups) {
			return false
		}
		if p.cfg.AtRelay != nil && p.cfg.AtRelay(ip, port) {
			p.stats.relayed.Add(1)
			p.log.Debug("media relay: offer already at an overlay relay", "call", id, "addr", net.JoinHostPort(ip.String(), fmt.Sprint(port)))
			return false
		}
	}
	src, budget := p.reserve(req, streams)
	if budget == 0 {
		p.log.Debug("media relay: offer not anchored: its source holds its share of relay sessions", "call", id, "source", src)
		return false
	}
	var charged []string
	defer func(reserved int) { p.anchors.settle(src, reserved, charged) }(budget)
	// Every stream (audio, video, ...; the first MaxStreams) gets a
	// session; the body names one relay address, so a stream whose session
	// is elsewhere (another overlay relay) is declined, as one without a
	// session is. Without the first, nothing is anchored. A stream at
	// another address than the first's is declined too: a party's streams
	// share its address, and the relay would send the callee's media
	// (video, at its rate) wherever the offer names, to a third party.
	rip, ports := "", make([]int, len(streams))
	for k, st := range streams[:min(len(streams), relay.MaxStreams)] {
		if st.Port == 0 || !st.IP.Equal(ip) || k > 0 && budget == 0 {
			continue
		}
		key := relay.StreamKey(id, k)
		r, rp, err := p.cfg.Media.Offer(p.ctx, key, st.IP, st.Port)
		switch {
		case err != nil && k == 0:
			p.log.Warn("media relay: no session", "call", id, "err", err)
			return false
		case err != nil:
			p.log.Debug("media relay: stream declined", "call", id, "stream", k, "err", err)
			continue
		case rip != "" && r != rip:
			p.cfg.Media.End(key)
			continue
		}
		rip, ports[k] = r, rp
		charged = append(charged, key)
		budget = max(0, budget-1)
	}
	body, _, err := relay.RewriteSDP(req.Body(), rip, ports)
	if err != nil {
		p.unanchor(id)
		return false
	}
	req.SetBody(body)
	p.stats.anchored.Add(1)
	return true
}

// reserve takes the share of relay sessions an offer's streams may need
// (active, at the first stream's address) from its source network's
// (src; "" for a trusted network's proxy, which speaks for many callers).
func (p *Proxy) reserve(req *sip.Request, streams []relay.Stream) (src string, n int) {
	if !p.trusted(req) {
		src = sourceGroup(req.Source())
	}
	want := 0
	for _, st := range streams[:min(len(streams), relay.MaxStreams)] {
		if st.Port != 0 && st.IP.Equal(streams[0].IP) {
			want++
		}
	}
	return src, p.anchors.take(src, want, p.cfg.Media.Has)
}

// webRTC: an SDP body whose media the RTP relay must not anchor: it uses
// ICE (its candidates, not c=, say where media goes; a browser behind a NAT
// gets a TURN relay instead) or secure RTP (SAVP, SAVPF: DTLS-SRTP or
// SDES, which a plain RTP relay would only break).
func webRTC(body []byte) bool {
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "a=ice-ufrag:") || strings.HasPrefix(l, "a=candidate:") {
			return true
		}
		if f := strings.Fields(l); strings.HasPrefix(l, "m=") && len(f) > 2 && strings.Contains(strings.ToUpper(f[2]), "SAVP") {
			return true
		}
	}
	return false
}

// nattedCallee: a target is a binding behind a NAT.
func nattedCallee(groups [][]target) bool {
	for _, g := range groups {
		for _, t := range g {
			if t.natted {
				return true
			}
		}
	}
	return false
}

// privateParty: the offer's connection address (media), the caller's
// Contact or its Via is a private (NAT'd) address.
func (p *Proxy) privateParty(req *sip.Request, media net.IP) bool {
	if sipnet.PrivateAddr(media) {
		return true
	}
	if c := req.Contact(); c != nil {
		if ip := net.ParseIP(strings.Trim(c.Address.Host, "[]")); ip != nil && sipnet.PrivateAddr(ip) {
			return true
		}
	}
	if v := req.Via(); v != nil {
		if ip := net.ParseIP(strings.Trim(v.Host, "[]")); ip != nil && sipnet.PrivateAddr(ip) {
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
	id := mediaKey(res)
	if id == "" || !p.anchored(id) {
		return
	}
	_, streams, err := relay.RewriteSDP(res.Body(), "127.0.0.1", nil)
	if err != nil {
		return
	}
	// The callee's streams share one address too (its first active
	// stream's). A stream it declines keeps its session: a later answer
	// (the 200 after a 183, another fork's) may take it; BYE, CANCEL, a
	// failed INVITE or 60 s idle end it.
	var at net.IP
	for _, st := range streams {
		if st.Port != 0 {
			at = st.IP
			break
		}
	}
	rip, ports := "", make([]int, len(streams))
	for k, st := range streams[:min(len(streams), relay.MaxStreams)] {
		key := relay.StreamKey(id, k)
		if !p.cfg.Media.Has(key) || st.Port == 0 || !st.IP.Equal(at) {
			continue // not relayed (the offer declined it), or declined here
		}
		r, rp, err := p.cfg.Media.Answer(p.ctx, key, st.IP, st.Port)
		if err != nil {
			p.log.Warn("media relay: answer not anchored", "call", id, "stream", k, "err", err)
			continue
		}
		rip, ports[k] = r, rp
	}
	if rip == "" {
		return
	}
	if body, _, err := relay.RewriteSDP(res.Body(), rip, ports); err == nil {
		res.SetBody(body)
	}
}

// mediaKey names a call's relay session: its Call-ID and the caller's From
// tag (what a response to the INVITE carries too), so knowing a Call-ID is
// not enough to touch a session. "" for a message without either.
func mediaKey(m interface {
	CallID() *sip.CallIDHeader
	From() *sip.FromHeader
}) string {
	c, f := m.CallID(), m.From()
	if c == nil || f == nil {
		return ""
	}
	tag, _ := f.Params.Get("tag")
	if tag == "" || strings.ContainsRune(c.Value()+tag, '#') {
		return "" // '#' is in no Call-ID or tag (RFC 3261 word, token): StreamKey's
	}
	return c.Value() + "|" + tag
}

// dialogMediaKeys are the keys an in-dialog request's session may have:
// sent by the caller (its From tag) or by the callee (its To tag is the
// caller's).
func dialogMediaKeys(req *sip.Request) []string {
	var keys []string
	if k := mediaKey(req); k != "" {
		keys = append(keys, k)
	}
	if c, to := req.CallID(), req.To(); c != nil && to != nil {
		if tag, _ := to.Params.Get("tag"); tag != "" {
			keys = append(keys, c.Value()+"|"+tag)
		}
	}
	return keys
}

// anchored reports whether the call (a mediaKey) has a relay session.
func (p *Proxy) anchored(key string) bool {
	return key != "" && p.cfg.Media != nil && p.cfg.Media.Has(key)
}

// unanchor ends a call's relay sessions, one per stream (BYE, CANCEL,
// failed INVITE).
func (p *Proxy) unanchor(keys ...string) {
	if p.cfg.Media == nil {
		return
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		for i := range relay.MaxStreams {
			p.cfg.Media.End(relay.StreamKey(k, i))
		}
	}
}

// maxAnchoredPerSource bounds the relay sessions (one per stream) calls
// from one untrusted source network (IPv4 /24, IPv6 /56) hold at once:
// four streams per call made one sender able to take a relay's every port
// pair with the requests it may have in flight, and 64 a source let four
// addresses (spoofable, over UDP) take a default relay's 250 sessions.
const maxAnchoredPerSource = 16

// maxAnchorSources bounds the source networks anchorQuota keeps; beyond
// it (after dropping ended sessions) a new network anchors nothing.
const maxAnchorSources = 4096

// sourceGroup is the network a source address counts against: its IPv4
// /24 or IPv6 /56 (one host or customer holds many addresses of either).
func sourceGroup(source string) string {
	host, _, err := net.SplitHostPort(source)
	if err != nil {
		host = source
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	bits := 56 // an IPv6 customer's usual delegation (a /64 each let one take 16 shares)
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// anchorQuota counts the relay sessions of each untrusted source network,
// and the share its offers in flight have taken (the relay may be a
// remote one, a round trip away: counted only once made, concurrent
// offers each saw the whole share free). A session the relay ended (BYE,
// idle) is dropped when its source is next counted: the relay (Has) is
// what is true.
type anchorQuota struct {
	mu   sync.Mutex
	by   map[string][]string // source network → stream session keys
	held map[string]int      // source network → sessions its offers in flight may still open
}

// take reserves up to want of src's share for one offer and returns how
// many it got (src "" is unbounded); settle gives back the reservation.
// A new source when maxAnchorSources hold sessions gets none: forgetting
// them would let each open its share again.
func (q *anchorQuota) take(src string, want int, has func(string) bool) int {
	if src == "" {
		return want
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.by[src]; !ok && len(q.by) >= maxAnchorSources {
		for s := range q.by {
			q.prune(s, has)
		}
		if len(q.by) >= maxAnchorSources {
			return 0
		}
	}
	q.prune(src, has)
	n := min(want, maxAnchoredPerSource-len(q.by[src])-q.held[src])
	if n <= 0 {
		return 0
	}
	q.held[src] += n
	if q.by[src] == nil {
		q.by[src] = []string{} // counted among the sources while it holds a reservation
	}
	return n
}

// prune drops src's ended sessions, and src when nothing is left.
func (q *anchorQuota) prune(src string, has func(string) bool) {
	keys := slices.DeleteFunc(q.by[src], func(k string) bool { return !has(k) })
	if len(keys) == 0 && q.held[src] == 0 {
		delete(q.by, src)
		return
	}
	q.by[src] = keys
}

// settle ends an offer's reservation of reserved sessions, charging the
// ones it made (keys).
func (q *anchorQuota) settle(src string, reserved int, keys []string) {
	if src == "" {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.held[src] -= reserved; q.held[src] <= 0 {
		delete(q.held, src)
	}
	q.by[src] = append(q.by[src], keys...)
	if len(q.by[src]) == 0 && q.held[src] == 0 {
		delete(q.by, src)
	}
}
