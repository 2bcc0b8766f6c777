package registrar

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Digest nonces (RFC 3261 §22, RFC 7616/8760) that no replay can use.
//
// A nonce is minted for one request and is good for its retry only:
//
//	base64url(issued-ms(8) ‖ cseq(4) ‖ algs(1) ‖ HMAC(secret, those ‖ realm ‖ H(request)))[:16]
//
// H(request) covers what the credentials are to authorise: method,
// Call-ID, From, To, Request-URI, every Contact, Path and Route, the
// Expires header, the body, and the IP address the request came from. cseq is the challenged request's CSeq; the
// credentials are accepted only on the request with CSeq one higher (RFC
// 3261 §8.1.3.5: the retry increments it). algs is the set of algorithms
// the challenge offered: an answer with another one is refused.
//
// So a captured Authorization replayed with anything changed (another
// Call-ID, Contact, Expires, CSeq) fails the HMAC, on every front-end of the
// domain (they share the secret), and gets a new challenge. Replayed
// unchanged to another front-end it does what the original did, and the
// location service's Call-ID/CSeq rule (RFC 3261 §10.3 step 7) refuses it
// as out of order once the original is stored. Each front-end also
// remembers the nonces it accepted until they expire (used), so even an
// unchanged replay to the same front-end gets a new challenge. A UA that
// reuses a nonce for its next request (nc=2) gets 401 with stale=true and
// retries with a fresh one without asking its user.
type nonces struct {
	secret []byte
	realm  string
	ttl    time.Duration
	now    func() time.Time
	algs   []string // offered, most preferred first
	// md5Agents: User-Agent substrings (lower case) of UAs that fail on a
	// challenge they cannot answer (baresip's libre gives up on a SHA-256
	// one even beside MD5; sipp 3.6 on a first one that is not MD5): they
	// get one MD5 challenge. noAgent matches requests without User-Agent.
	md5Agents []string
	used      *usedNonces
}

const nonceLen = 8 + 4 + 1 + 16

// Algorithm bits of a nonce.
const (
	algMD5 byte = 1 << iota
	algSHA256
)

func algBit(alg string) byte {
	switch strings.ToUpper(alg) {
	case "", "MD5":
		return algMD5
	case "SHA-256":
		return algSHA256
	}
	return 0
}

// requestHash is H(request) of a SIP request (see nonces), received from
// source ("ip:port"; its IP is bound: a retry comes from the UA's address).
// Each field goes in with its length first, gathered in one buffer and
// hashed once. URIs and name-addr headers are hashed by their parts, not
// formatted: sipgo's formatting parses every host as an IP address (a
// twentieth of a front-end's CPU at its digest-on maximum).
func requestHash(req *sip.Request, source string) []byte {
	var buf [1024]byte // most requests' fields fit: nothing allocated for them
	b := putField(buf[:0], "", string(req.Method))
	b = putURI(b, &req.Recipient)
	if v := req.CallID(); v != nil {
		b = putField(b, "", v.Value())
	}
	if v := req.From(); v != nil {
		b = putNameAddr(b, "f", v.DisplayName, &v.Address, v.Params)
	}
	if v := req.To(); v != nil {
		b = putNameAddr(b, "t", v.DisplayName, &v.Address, v.Params)
	}
	if ip, _, err := net.SplitHostPort(source); err == nil {
		b = putField(b, "s", ip)
	}
	// One pass over the headers (sipgo's GetHeaders lowercases every
	// header's name on each call: 3% of a loaded registrar's CPU), hashed
	// in the same order as three GetHeaders would give.
	var contacts, paths, routes []sip.Header
	for _, v := range req.Headers() {
		switch n := v.Name(); {
		case strings.EqualFold(n, "contact"):
			contacts = append(contacts, v)
		case strings.EqualFold(n, "path"):
			paths = append(paths, v)
		case strings.EqualFold(n, "route"):
			routes = append(routes, v)
		}
	}
	for _, v := range contacts {
		if c, ok := v.(*sip.ContactHeader); ok {
			b = putNameAddr(b, "Contact", c.DisplayName, &c.Address, c.Params)
		} else {
			b = putField(b, "Contact:", v.Value())
		}
	}
	for _, v := range paths {
		b = putField(b, "Path:", v.Value())
	}
	for _, v := range routes {
		b = putField(b, "Route:", v.Value())
	}
	if e := req.GetHeader("Expires"); e != nil {
		b = putField(b, "e", strings.TrimSpace(e.Value()))
	}
	b = putField(b, "", string(req.Body()))
	sum := sha256.Sum256(b)
	return sum[:]
}

// putField appends one field of requestHash, prefix and s, with its
// length first. Functions on a slice, not methods on a buffer: the
// buffer stays on requestHash's stack.
func putField(b []byte, prefix, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(prefix)+len(s)))
	b = append(b, prefix...)
	return append(b, s...)
}

func putURI(b []byte, u *sip.Uri) []byte {
	b = putField(b, "", u.Scheme)
	b = putField(b, "", u.Raw())
	b = putField(b, "", u.User)
	b = putField(b, "", u.Password)
	b = putField(b, "", u.Host)
	if u.HierarhicalSlashes {
		b = putField(b, "", "//")
	} else {
		b = putField(b, "", "")
	}
	var port [4]byte
	binary.BigEndian.PutUint32(port[:], uint32(u.Port))
	b = putField(b, "", string(port[:]))
	b = putParams(b, u.UriParams, ';')
	return putParams(b, u.Headers, '&')
}

func putParams(b []byte, p sip.HeaderParams, sep uint8) []byte {
	if p != nil && p.Length() > 0 {
		return putField(b, "", p.ToString(sep))
	}
	return putField(b, "", "")
}

func putNameAddr(b []byte, kind, display string, u *sip.Uri, p sip.HeaderParams) []byte {
	b = putField(b, "", kind)
	b = putField(b, "", display)
	b = putURI(b, u)
	return putParams(b, p, ';')
}

// digestRequest is what a nonce is bound to: the request's hash and the
// CSeq of the challenged request (the retry must carry cseq+1).
type digestRequest struct {
	hash []byte
	cseq uint32
	// anyCSeq: no CSeq (HTTP): the nonce is bound to method and URI only.
	anyCSeq bool
	// agent is the User-Agent header (challenge choice).
	agent string
}

func sipRequest(req *sip.Request, source string) digestRequest {
	d := digestRequest{hash: requestHash(req, source)}
	if c := req.CSeq(); c != nil {
		d.cseq = c.SeqNo
	}
	if ua := req.GetHeader("User-Agent"); ua != nil {
		d.agent = ua.Value()
	}
	return d
}

func (n *nonces) issue(r digestRequest, algs byte) string {
	b := make([]byte, 13, nonceLen)
	binary.BigEndian.PutUint64(b[:8], uint64(n.now().UnixMilli()))
	binary.BigEndian.PutUint32(b[8:12], r.cseq)
	b[12] = algs
	return base64.RawURLEncoding.EncodeToString(append(b, n.mac(b, r.hash)...))
}

func (n *nonces) mac(head, reqHash []byte) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write(head)
	m.Write([]byte(n.realm))
	m.Write([]byte{0})
	m.Write(reqHash)
	return m.Sum(nil)[:16]
}

// Verdicts of checking a nonce.
const (
	nonceOK     = iota
	nonceForged // not ours at all (or not for this request): challenge
	nonceStale  // ours, but expired, used, or for another request: stale
)

// check judges a nonce answered with alg for request r. A nonce that is
// ours but was minted for another request is stale (the UA holds a good
// password and should retry with a new nonce), not forged.
func (n *nonces) check(nonce, alg string, r digestRequest) (verdict int, issued time.Time) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return nonceForged, time.Time{}
	}
	head := b[:13]
	issued = time.UnixMilli(int64(binary.BigEndian.Uint64(head[:8])))
	if !hmac.Equal(b[13:], n.mac(head, r.hash)) {
		return nonceStale, issued
	}
	if bit := algBit(alg); bit == 0 || head[12]&bit == 0 {
		return nonceForged, issued // an algorithm the challenge did not offer
	}
	if !r.anyCSeq && binary.BigEndian.Uint32(head[8:12])+1 != r.cseq {
		return nonceStale, issued
	}
	age := n.now().Sub(issued)
	if age < -time.Minute || age > n.ttl {
		return nonceStale, issued
	}
	return nonceOK, issued
}

// noAgent in md5Agents matches a request without a User-Agent header
// (test tools such as sipp scenarios; every softphone and desk phone
// sends one).
const noAgent = "-"

// offer returns the algorithms to offer r: all configured ones, or MD5
// alone for a UA that cannot skip a challenge it does not support.
func (n *nonces) offer(r digestRequest) []string {
	if !slices.Contains(n.algs, "MD5") || r.anyCSeq {
		return n.algs
	}
	ua := strings.ToLower(strings.TrimSpace(r.agent))
	for _, a := range n.md5Agents {
		if a == noAgent && ua == "" || a != "" && a != noAgent && strings.Contains(ua, a) {
			return []string{"MD5"}
		}
	}
	return n.algs
}

// challenges returns one challenge per offered algorithm, in order of
// preference (RFC 8760 §2.4), sharing one nonce minted for r.
func (n *nonces) challenges(r digestRequest, stale bool) []string {
	algs := n.offer(r)
	var bits byte
	for _, a := range algs {
		bits |= algBit(a)
	}
	nonce := n.issue(r, bits)
	out := make([]string, 0, len(algs))
	for _, alg := range algs {
		c := digest.Challenge{Realm: n.realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, c.String())
	}
	return out
}

// verifyDigest checks credentials against a user's HA1 (RFC 2617 / 8760).
func verifyDigest(c *digest.Credentials, u *UserHash, method string) bool {
	var ha1 string
	var h func() hash.Hash
	switch strings.ToUpper(c.Algorithm) {
	case "", "MD5":
		ha1, h = u.HA1MD5, md5.New
	case "SHA-256":
		ha1, h = u.HA1SHA256, sha256.New
	default:
		return false
	}
	ha2 := hexHash(h(), method+":"+c.URI)
	var want string
	switch c.QOP {
	case "":
		want = hexHash(h(), ha1+":"+c.Nonce+":"+ha2)
	case "auth":
		nc := fmt.Sprintf("%08x", c.Nc)
		want = hexHash(h(), ha1+":"+c.Nonce+":"+nc+":"+c.Cnonce+":auth:"+ha2)
	default:
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(c.Response))) == 1
}

// usedNonces remembers the nonces this front-end accepted, by the time
// they were issued, in buckets of ttl/8. It is bounded: when full, the
// oldest bucket is dropped and every nonce issued before the next one
// becomes stale (the window in which a nonce is accepted shrinks under
// load; a replay is never let through).
type usedNonces struct {
	mu      sync.Mutex
	width   time.Duration
	max     int
	n       int
	floor   time.Time // nonces issued before are stale
	buckets map[int64]map[[16]byte]struct{}
}

func newUsedNonces(ttl time.Duration, limit int) *usedNonces {
	return &usedNonces{width: max(ttl/8, time.Second), max: limit, buckets: map[int64]map[[16]byte]struct{}{}}
}

// use records a nonce issued at issued; false when it was used before or
// has fallen below the floor.
func (u *usedNonces) use(nonce string, issued, now time.Time, ttl time.Duration) bool {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return false
	}
	key := [16]byte(b[13:])
	u.mu.Lock()
	defer u.mu.Unlock()
	if issued.Before(u.floor) {
		return false
	}
	// Forget buckets whose nonces have all expired.
	oldest := now.Add(-ttl-time.Minute).UnixNano() / int64(u.width)
	for k, m := range u.buckets {
		if k < oldest {
			u.n -= len(m)
			delete(u.buckets, k)
		}
	}
	k := issued.UnixNano() / int64(u.width)
	m := u.buckets[k]
	if _, seen := m[key]; seen {
		return false
	}
	for u.n >= u.max {
		// Forget the oldest bucket older than this nonce's; when there is
		// none, refuse this nonce alone (stale: the UA gets a new one).
		first, found := int64(0), false
		for b := range u.buckets {
			if b < k && (!found || b < first) {
				first, found = b, true
			}
		}
		if !found {
			return false
		}
		u.n -= len(u.buckets[first])
		delete(u.buckets, first)
		u.floor = time.Unix(0, (first+1)*int64(u.width))
	}
	if m == nil {
		m = map[[16]byte]struct{}{}
		u.buckets[k] = m
	}
	m[key] = struct{}{}
	u.n++
	return true
}
