package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/sipnet"
)

// Record-Route tokens. A Route naming this proxy is trusted (it lets a
// request from any sender go on) only inside a dialog, only when it is a
// Record-Route this proxy put into that very dialog, and only towards the
// dialog's own hops. Its URI carries rrParam: one MAC per hop, each an HMAC
// of the dialog's Call-ID and the hop (host:port) under the proxy's key:
//   - in the Record-Route the INVITE carries downstream (the callee's
//     route set), the caller's side: its Contact and the address the
//     INVITE came from (an upstream proxy);
//   - in the Record-Route of the responses going upstream (the caller's
//     route set), the callee's side: the response's Contact and where the
//     proxy sent the INVITE (a downstream proxy).
//
// A Route an outsider pre-loads with our address or domain, or a token of
// one dialog used in another or towards another host, is popped like any
// Route naming us, and the next hop is then judged as if it had not been
// there: no token opens a new request, or a destination outside its
// dialog.

// A hop on this host or its link (a party registered from this host, or a
// trusted caller there) is named twice: as itself, and as localHop(hop),
// which lets outsiders' in-dialog requests reach it (destAllowed).

// localHop is the name a hop on this host has in a token.
func localHop(hop string) string { return "local:" + hop }

// rrParam is the Record-Route URI parameter holding the token.
const rrParam = "lsrr"

// maxHopMACs bounds the MACs one token may carry.
const maxHopMACs = 4 // two hops, each also as localHop

// hopMAC is base64url(HMAC-SHA256(key, "rr" 0 callID 0 hop))[:8 bytes].
func (p *Proxy) hopMAC(callID, hop string) string {
	return p.macOf(8, "rr\x00", callID, "\x00", strings.ToLower(hop))
}

// macOf is base64url of the first n bytes of HMAC-SHA256 under rrKey of
// the parts, one after the other. The HMACs are kept for reuse (macs):
// a new one hashes the key twice before the first byte, and every
// forwarded request asks for two to five of them.
func (p *Proxy) macOf(n int, parts ...string) string {
	m, ok := p.macs.Get().(*macState)
	if ok {
		m.h.Reset()
	} else {
		m = &macState{h: hmac.New(sha256.New, p.rrKey)}
	}
	defer p.macs.Put(m)
	in := m.in[:0]
	for _, s := range parts {
		in = append(in, s...)
	}
	m.h.Write(in)
	return string(base64.RawURLEncoding.AppendEncode(m.out[:0], m.h.Sum(m.sum[:0])[:n]))
}

// macState is a reusable HMAC and the buffers macOf fills, which would
// otherwise go to the heap on every call (the hash is an interface).
type macState struct {
	h   hash.Hash
	in  [256]byte
	sum [sha256.Size]byte
	out [44]byte // base64 of a whole sum
}

// rrToken is the token of a dialog (callID) for its hops ("" hops are
// skipped).
func (p *Proxy) rrToken(callID string, hops ...string) string {
	var macs []string
	for _, h := range hops {
		if h != "" && len(macs) < maxHopMACs {
			macs = append(macs, p.hopMAC(callID, h))
		}
	}
	if len(macs) == 0 {
		macs = append(macs, p.hopMAC(callID, "-"))
	}
	return strings.Join(macs, ".")
}

// rrTokenAllows reports whether tok, minted by this proxy for callID, names
// hop.
func (p *Proxy) rrTokenAllows(tok, callID, hop string) bool {
	if tok == "" || callID == "" || hop == "" || len(tok) > 16*maxHopMACs {
		return false
	}
	want := []byte(p.hopMAC(callID, hop))
	for _, m := range strings.Split(tok, ".") {
		if hmac.Equal([]byte(m), want) {
			return true
		}
	}
	return false
}

// contactHop is where a message's Contact is reached ("" without one).
func contactHop(m interface{ Contact() *sip.ContactHeader }) string {
	c := m.Contact()
	if c == nil {
		return ""
	}
	if h := gruuHop(c.Address); h != "" {
		return h
	}
	t, err := uriTarget(c.Address, c.Address, viaURI)
	if err != nil {
		return ""
	}
	return t.dest
}

// gruuHop is the hop a GRUU Contact (RFC 5627 §4.2) names in a token: the
// GRUU itself, canonical AOR and instance, for its host stands for every
// user of a domain; "" when u is no GRUU.
func gruuHop(u sip.Uri) string {
	gr, ok := sipnet.GRUU(&u)
	if !ok {
		return ""
	}
	aor, err := lsp.Canonical(sipnet.AOROf(u))
	if err != nil {
		return ""
	}
	return "gruu:" + aor + ";gr=" + strings.ToLower(gr)
}

// withToken is a Record-Route value with its token replaced by tok.
func withToken(rr, tok string) string {
	rr = strings.TrimSuffix(strings.TrimSpace(rr), ">")
	if i := strings.Index(rr, ";"+rrParam+"="); i >= 0 {
		j := i + 1
		for j < len(rr) && rr[j] != ';' && rr[j] != '>' {
			j++
		}
		rr = rr[:i] + rr[j:]
	}
	return rr + ";" + rrParam + "=" + tok + ">"
}

// retoken gives our Record-Routes in a response to a dialog-forming
// request the token of the callee's side: the response's Contact and
// where the request was sent (t; the caller's route set gets them). When t
// was on this host by right (a local binding, a flow), so are they.
func (p *Proxy) retoken(res *sip.Response, t *target) {
	hs := res.GetHeaders("Record-Route")
	if len(hs) == 0 || res.CallID() == nil {
		return
	}
	hops := []string{contactHop(res)}
	if t != nil {
		hops = append(hops, t.dest)
		if t.local || t.flow {
			hops = append(hops, localHop(hops[0]), localHop(t.dest))
		}
	}
	tok := p.rrToken(res.CallID().Value(), hops...)
	vals := make([]string, len(hs))
	changed := false
	for i, h := range hs {
		vals[i] = h.Value()
		var u sip.Uri
		if _, err := sip.ParseAddressValue(h.Value(), &u, nil); err != nil || !p.isSelf(&u) {
			continue
		}
		if _, ok := u.UriParams.Get(rrParam); ok {
			vals[i], changed = withToken(h.Value(), tok), true
		}
	}
	if !changed {
		return
	}
	for res.RemoveHeader("Record-Route") {
	}
	for _, v := range vals {
		res.AppendHeader(sip.NewHeader("Record-Route", v))
	}
}

// branchMAC tags the random part of a Via branch this proxy writes, so a
// response arriving outside any transaction (a 2xx retransmission) is
// passed on only if its top Via is really ours.
func (p *Proxy) branchMAC(rnd string) string {
	return p.macOf(6, "branch\x00", rnd)
}

// ourBranch reports whether a Via branch is one this proxy wrote:
// magic cookie, loop key, ".", random part and its branchMAC.
func (p *Proxy) ourBranch(b string) bool {
	b = strings.TrimPrefix(b, sip.RFC3261BranchMagicCookie)
	_, rest, ok := strings.Cut(b, ".")
	if !ok || len(rest) <= 8 || len(rest) > 64 {
		return false
	}
	rnd, mac := rest[:len(rest)-8], rest[len(rest)-8:]
	return hmac.Equal([]byte(mac), []byte(p.branchMAC(rnd)))
}
