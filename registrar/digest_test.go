package registrar

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/lsnode/lsnode/lsp"
)

// frontEnds returns n stateless registrars of a.example sharing one
// location service and the nonce secret, as a domain's front-ends do.
func frontEnds(t *testing.T, n int, loc lsp.LocationService, algs ...string) []*Registrar {
	t.Helper()
	var out []*Registrar
	for range n {
		r, err := New(Config{Domain: "a.example", Mode: Stateless, Location: loc, Logger: quiet(), Algorithms: algs,
			Users: &UsersFile{Realm: "a.example", Users: []UserHash{
				NewUserHash("alice", "sip:alice@a.example", "a.example", "secret-a")}},
			NonceSecret: []byte("0123456789abcdef0123")})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func challengeOf(t *testing.T, res *sip.Response, alg string) *digest.Challenge {
	t.Helper()
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatal(err)
		}
		if c.Algorithm == alg {
			return c
		}
	}
	t.Fatalf("no %s challenge in\n%s", alg, res)
	return nil
}

// TestDigestReplay: a captured REGISTER with valid credentials, replayed
// to the same or another front-end of the domain, unchanged or with
// another Contact, Call-ID, CSeq or Expires, registers nothing.
func TestDigestReplay(t *testing.T) {
	loc := newLocalStore()
	fe := frontEnds(t, 2, loc)
	alice := "sip:alice@a.example"
	first := register(t, alice, "call-1", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	ok := authorize(t, first, do(fe[0], first), "SHA-256", "alice", "secret-a")
	want(t, do(fe[0], ok), 200)

	lookup := func() []string {
		bs, err := loc.Lookup(context.Background(), alice)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range bs {
			out = append(out, b.Contact)
		}
		return out
	}
	authz := ok.GetHeader("Authorization").Value()
	forge := func(callID string, cseq int, headers ...string) *sip.Request {
		r := register(t, alice, callID, cseq, headers...)
		r.AppendHeader(sip.NewHeader("Authorization", authz))
		return r
	}
	evil := "Contact: <sip:mallory@203.0.113.66:5060>"
	for _, tc := range []struct {
		name string
		fe   int
		req  *sip.Request
		code int
	}{
		{"unchanged, same front-end", 0, ok.Clone(), 401},
		{"unchanged, other front-end", 1, ok.Clone(), 500}, // out of order: the original is stored
		{"other contact, same", 0, forge("call-1", 2, evil, "Expires: 600"), 401},
		{"other contact, other", 1, forge("call-1", 2, evil, "Expires: 600"), 401},
		{"other Call-ID", 1, forge("call-2", 2, evil, "Expires: 600"), 401},
		{"higher CSeq", 1, forge("call-1", 9, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600"), 401},
		{"removal (Expires: 0)", 1, forge("call-1", 2, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 0"), 401},
		{"longer expiry", 1, forge("call-1", 2, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 7200"), 401},
		{"another contact beside", 1, forge("call-1", 2, "Contact: <sip:alice@192.0.2.9:5060>", evil, "Expires: 600"), 401},
		{"unchanged to front-end 1 again", 1, ok.Clone(), 401},
	} {
		res := do(fe[tc.fe], tc.req)
		if res.StatusCode != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, res.StatusCode, res.Reason, tc.code)
		}
	}
	// From the attacker's own address (it would become the binding's
	// received address and NAT flow); with a Path of its own, which an
	// untrusted sender's REGISTER never stores.
	fresh := register(t, alice, "call-9", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	okFresh := authorize(t, fresh, do(fe[1], fresh), "SHA-256", "alice", "secret-a")
	want(t, fe[0].Handle(context.Background(), okFresh.Clone(), "203.0.113.66:5060"), 401)
	withPath := okFresh.Clone()
	withPath.AppendHeader(sip.NewHeader("Path", "<sip:203.0.113.66;lr>"))
	want(t, do(fe[0], withPath), 200) // what alice asked for, without the Path
	if bs, _ := loc.Lookup(context.Background(), alice); len(bs) != 1 || len(bs[0].Path) != 0 {
		t.Fatalf("a Path from an untrusted sender was stored: %+v", bs)
	}
	if got := lookup(); len(got) != 1 || got[0] != "sip:alice@192.0.2.9:5060" {
		t.Fatalf("bindings after the replays: %v", got)
	}

	// A UA that reuses its nonce for the next request (nc=2) is told
	// stale=true and gets a fresh nonce; with it the refresh registers.
	chal := challengeOf(t, do(fe[0], first), "SHA-256")
	reuse := register(t, alice, "call-1", 5, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.example", Username: "alice", Password: "secret-a", Count: 2, Cnonce: "ab"})
	if err != nil {
		t.Fatal(err)
	}
	reuse.AppendHeader(sip.NewHeader("Authorization", cred.String()))
	res := do(fe[1], reuse)
	want(t, res, 401)
	if !strings.Contains(res.GetHeader("WWW-Authenticate").Value(), "stale=true") {
		t.Fatalf("a nonce of another request: no stale=true\n%s", res)
	}
	want(t, do(fe[1], authorize(t, reuse, res, "SHA-256", "alice", "secret-a")), 200)
}

// TestDigestChecks: the uri must name the Request-URI, and the answer must
// use an algorithm the challenge offered.
func TestDigestChecks(t *testing.T) {
	alice := "sip:alice@a.example"
	req := register(t, alice, "u1", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	r := frontEnds(t, 1, newLocalStore())[0]
	res := do(r, req)
	for _, uri := range []string{"sip:b.example", "sip:evil@a.example", "sip:a.example:5099", "tel:+1555"} {
		want(t, do(r, authorizeURI(t, req, res, "SHA-256", "alice", "secret-a", uri)), 401)
	}
	want(t, do(r, authorizeURI(t, req, res, "SHA-256", "alice", "secret-a", "SIP:A.EXAMPLE")), 200)

	// Only SHA-256 offered: an MD5 answer to its nonce is refused.
	sha := frontEnds(t, 1, newLocalStore(), "SHA-256")[0]
	req2 := register(t, alice, "u2", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	res = do(sha, req2)
	if n := len(res.GetHeaders("WWW-Authenticate")); n != 1 {
		t.Fatalf("%d challenges, want SHA-256 alone", n)
	}
	chal := challengeOf(t, res, "SHA-256")
	want(t, do(sha, withCredentials(t, req2, chal, "MD5", "alice", "secret-a", "sip:a.example")), 401)
	want(t, do(sha, withCredentials(t, req2, chal, "SHA-256", "alice", "secret-a", "sip:a.example")), 200)

	// Both offered in one 401: one nonce, either answer works.
	both := frontEnds(t, 1, newLocalStore())[0]
	req3 := register(t, alice, "u3", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600", "User-Agent: Linphone/5.1.65")
	res = do(both, req3)
	hs := res.GetHeaders("WWW-Authenticate")
	if len(hs) != 2 || !strings.Contains(hs[0].Value(), "SHA-256") {
		t.Fatalf("want SHA-256 then MD5:\n%s", res)
	}
	want(t, do(both, withCredentials(t, req3, challengeOf(t, res, "SHA-256"), "MD5", "alice", "secret-a", "sip:a.example")), 200)
}

// TestDigestMD5Agents: baresip (which gives up on any challenge it cannot
// answer) is offered MD5 alone; other UAs SHA-256 first.
func TestDigestMD5Agents(t *testing.T) {
	r := frontEnds(t, 1, newLocalStore())[0]
	ua := func(agent string) []string {
		req := register(t, "sip:alice@a.example", "ua-"+agent, 1, "Contact: <sip:alice@192.0.2.9:5060>", "User-Agent: "+agent)
		var algs []string
		for _, h := range do(r, req).GetHeaders("WWW-Authenticate") {
			c, err := digest.ParseChallenge(h.Value())
			if err != nil {
				t.Fatal(err)
			}
			algs = append(algs, c.Algorithm)
		}
		return algs
	}
	if got := ua("baresip v1.0.0 (x86_64/linux)"); len(got) != 1 || got[0] != "MD5" {
		t.Fatalf("baresip offered %v", got)
	}
	if got := ua("Linphone/3.12.0 (belle-sip/1.6.3)"); len(got) != 2 || got[0] != "SHA-256" {
		t.Fatalf("linphone offered %v", got)
	}
	if got := ua("sipp/3.6"); len(got) != 1 || got[0] != "MD5" {
		t.Fatalf("sipp offered %v", got)
	}
	// Without a User-Agent header (sipp's scenarios send none): MD5 alone.
	req := register(t, "sip:alice@a.example", "ua-none", 1, "Contact: <sip:alice@192.0.2.9:5060>")
	req.RemoveHeader("User-Agent")
	if hs := do(r, req).GetHeaders("WWW-Authenticate"); len(hs) != 1 || !strings.Contains(hs[0].Value(), "MD5") {
		t.Fatalf("no User-Agent: %v", hs)
	}
}

// TestUsedNoncesBound: a full cache forgets its oldest nonces by making
// them stale; no nonce is accepted twice.
func TestUsedNoncesBound(t *testing.T) {
	n := &nonces{secret: []byte("0123456789abcdef"), realm: "r", ttl: 8 * time.Second, now: time.Now, algs: []string{"MD5"}}
	u := newUsedNonces(n.ttl, 4)
	base := time.Now()
	var issued []string
	var at []time.Time
	for i := range 12 {
		n.now = func() time.Time { return base.Add(time.Duration(i) * 500 * time.Millisecond) }
		issued = append(issued, n.issue(digestRequest{cseq: uint32(i)}, algMD5))
		at = append(at, n.now())
	}
	now := base.Add(6 * time.Second)
	accepted := 0
	for i, nonce := range issued {
		if u.use(nonce, at[i], now, n.ttl) {
			accepted++
		}
		if u.use(nonce, at[i], now, n.ttl) {
			t.Fatalf("nonce %d accepted twice", i)
		}
	}
	if u.n > 4 {
		t.Fatalf("%d nonces remembered, bound 4", u.n)
	}
	for i, nonce := range issued {
		if u.use(nonce, at[i], now, n.ttl) {
			t.Fatalf("nonce %d accepted again after the cache filled", i)
		}
	}
	if accepted == 0 {
		t.Fatal("nothing accepted")
	}
}

// TestContactAndExpires: Contacts naming the node's own host or the link
// are refused from remote senders; an Expires beyond 2^32-1 is the maximum.
func TestContactAndExpires(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	alice := "sip:alice@a.example"
	for _, c := range []string{"<sip:x@127.0.0.1:22>", "<sip:x@[::1]:5060>", "<sip:x@169.254.169.254>", "<sip:x@0.0.0.0>",
		"<sip:x@localhost:5060>", "<sip:x@192.0.2.1;maddr=192.0.2.1>", "<sip:x@a.example>", "<sip:x@224.0.0.1>"} {
		want(t, do(r, register(t, alice, "c-"+c, 1, "Contact: "+c)), 403)
	}
	// Another public address than the sender's: refused (a registered
	// user would aim every call to its AOR at a victim).
	want(t, r.Handle(context.Background(), register(t, alice, "victim", 1, "Contact: <sip:x@203.0.113.9:5060>"), "198.51.100.7:5060"), 403)
	want(t, r.Handle(context.Background(), register(t, alice, "own", 1, "Contact: <sip:x@198.51.100.7:5062>"), "198.51.100.7:5060"), 200)
	want(t, r.Handle(context.Background(), register(t, alice, "lo", 1, "Contact: <sip:x@127.0.0.1:5070>"), "127.0.0.1:5070"), 200)
	want(t, do(r, register(t, alice, "private", 1, "Contact: <sip:x@10.1.2.3:5060>")), 200)
	for _, e := range []string{"4294967296", "99999999999999999999999"} {
		res := do(r, register(t, alice, "e"+e, 1, "Contact: <sip:a@192.0.2.1>", "Expires: "+e))
		want(t, res, 200)
		if !strings.Contains(strings.Join(contacts(res), " "), "expires=7200") {
			t.Fatalf("Expires %s: %v, want the maximum 7200", e, contacts(res))
		}
	}
	want(t, do(r, register(t, alice, "neg", 1, "Contact: <sip:a@192.0.2.1>", "Expires: -1")), 400)
}

// BenchmarkDigestRegister: one authenticated registration as a UA does it
// (REGISTER → 401 → REGISTER with credentials → 200), in-process with a
// local store: what nonce binding, the used-nonce cache and verification
// cost per registration. SHA-256 and MD5.
func BenchmarkDigestRegister(b *testing.B) {
	for _, alg := range []string{"SHA-256", "MD5"} {
		b.Run(alg, func(b *testing.B) {
			r, err := New(Config{Domain: "a.example", Mode: Local, Logger: quiet(),
				Users: &UsersFile{Realm: "a.example", Users: []UserHash{
					NewUserHash("alice", "sip:alice@a.example", "a.example", "secret-a")}},
				NonceSecret: []byte("0123456789abcdef0123")})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				req := register(b, "sip:alice@a.example", fmt.Sprintf("bench-%d", i), 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
				res := do(r, req)
				if res.StatusCode != 401 {
					b.Fatal(res.StatusCode)
				}
				if ok := do(r, authorize(b, req, res, alg, "alice", "secret-a")); ok.StatusCode != 200 {
					b.Fatal(ok.StatusCode)
				}
			}
		})
	}
}

// TestRequestHashBinds: a nonce is bound to every part of the request it
// was minted for: the same request (parsed again) hashes the same, and a
// change in any part it covers hashes differently.
func TestRequestHashBinds(t *testing.T) {
	const base = "REGISTER sip:a.example;transport=udp SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1;rport\r\n" +
		"To: \"Alice\" <sip:alice@a.example>\r\nFrom: <sip:alice@a.example>;tag=x\r\n" +
		"Call-ID: c1\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:alice@[2001:db8::9]:5060;transport=tcp>;expires=60\r\n" +
		"Path: <sip:edge.a.example;lr>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
	hash := func(raw, source string) []byte {
		t.Helper()
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatalf("parse: %v\n%s", err, raw)
		}
		return requestHash(m.(*sip.Request), source)
	}
	const src = "192.0.2.9:5060"
	h0 := hash(base, src)
	if !bytes.Equal(h0, hash(base, "192.0.2.9:6000")) {
		t.Fatal("the same request from another port of the same address hashes differently")
	}
	if !bytes.Equal(h0, hash(strings.Replace(base, "Path:", "PATH:", 1), src)) {
		t.Fatal("a header name in other case hashes differently")
	}
	for _, c := range [][2]string{
		{"sip:a.example;transport=udp SIP", "sip:b.example;transport=udp SIP"},
		{"sip:a.example;transport=udp SIP", "sip:a.example:5070;transport=udp SIP"},
		{"sip:a.example;transport=udp SIP", "sip:a.example;transport=tcp SIP"},
		{"sip:a.example;transport=udp SIP", "sips:a.example;transport=udp SIP"},
		{"\"Alice\" <sip:alice", "\"Mallory\" <sip:alice"},
		{"From: <sip:alice@a.example>;tag=x", "From: <sip:alice@a.example>;tag=y"},
		{"From: <sip:alice@a.example>", "From: <sip:bob@a.example>"},
		{"Call-ID: c1", "Call-ID: c2"},
		{"[2001:db8::9]:5060", "[2001:db8::10]:5060"},
		{";transport=tcp>;expires=60", ";transport=tcp>;expires=61"},
		{"<sip:edge.a.example;lr>", "<sip:evil.example;lr>"},
		{"Expires: 600", "Expires: 601"},
	} {
		changed := strings.Replace(base, c[0], c[1], 1)
		if changed == base {
			t.Fatalf("the test's change %q does not apply", c[0])
		}
		if bytes.Equal(h0, hash(changed, src)) {
			t.Errorf("%q → %q: the same hash", c[0], c[1])
		}
	}
	if bytes.Equal(h0, hash(base, "192.0.2.10:5060")) {
		t.Error("another source address: the same hash")
	}
}

// TestDigestDuplicateParameter: credentials that name a parameter twice
// are refused 400 and change nothing (a proxy in front may have checked
// the other one; sipnet.ParseDigest); the same credentials once are taken.
func TestDigestDuplicateParameter(t *testing.T) {
	loc := newLocalStore()
	r := frontEnds(t, 1, loc)[0]
	alice := "sip:alice@a.example"
	req := register(t, alice, "d1", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	ok := authorize(t, req, do(r, req), "SHA-256", "alice", "secret-a")
	dup := register(t, alice, "d1", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	dup.AppendHeader(sip.NewHeader("Authorization", ok.GetHeader("Authorization").Value()+`, username="bob"`))
	want(t, do(r, dup), 400)
	if bs, err := loc.Lookup(context.Background(), alice); err != nil || len(bs) != 0 {
		t.Fatalf("after the refused REGISTER: %v, %v", bs, err)
	}
	want(t, do(r, ok), 200)
}
