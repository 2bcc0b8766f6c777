package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/relay"
	"github.com/lsnode/lsnode/sipnet"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// memLocation is a location service held in memory: the bindings are the
// test's input, the overlay is not what these tests are about.
type memLocation struct {
	mu    sync.Mutex
	aor   map[string][]lsp.Binding
	n     int           // lookups
	err   error         // a fault to inject: what every lookup fails with
	delay time.Duration // another: how long every lookup takes
}

func (m *memLocation) Publish(_ context.Context, aor string, bs ...lsp.Binding) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := lsp.Canonical(aor)
	if err != nil {
		return err
	}
	m.aor[c] = append(m.aor[c], bs...)
	return nil
}

func (m *memLocation) Lookup(ctx context.Context, aor string) ([]lsp.Binding, error) {
	m.mu.Lock()
	delay := m.delay
	m.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	if m.err != nil {
		return nil, m.err
	}
	c, err := lsp.Canonical(aor)
	if err != nil {
		return nil, err
	}
	return append([]lsp.Binding{}, m.aor[c]...), nil
}

func (m *memLocation) Remove(_ context.Context, aor string, _ ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, _ := lsp.Canonical(aor)
	delete(m.aor, c)
	return nil
}

type testProxy struct {
	p    *Proxy
	addr string
	loc  *memLocation
}

// startProxy runs a proxy for a.example on a stack on loopback.
func startProxy(t *testing.T, mode Mode, mutate func(*Config)) *testProxy {
	t.Helper()
	loc := &memLocation{aor: map[string][]lsp.Binding{}}
	cfg := Config{Domain: "a.example", Location: loc, Mode: mode, Logger: quiet(),
		KnownUser: func(aor string) bool { return aor == "sip:alice@a.example" }}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sipnet.Listen(sipnet.Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// The proxy first: its goroutines may still open connections on the
	// stack until they end.
	t.Cleanup(func() { p.Close(); s.Close() })
	if err := p.Attach(s); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	return &testProxy{p: p, addr: s.Addr(), loc: loc}
}

// proxyAuthorizer is a Config.Authorize for tests: valid
// Proxy-Authorization (MD5 digest, one fixed nonce) of a user of users
// (name → password, AOR sip:name@realm) who is the request's From passes;
// without credentials, or with wrong ones, 407; another user's, 403. The
// registrar's own (AuthorizeProxy: nonces bound to the request, replay
// refused) is tested in its package.
func proxyAuthorizer(realm string, users map[string]string) func(*sip.Request) *sip.Response {
	chal := &digest.Challenge{Realm: realm, Nonce: "proxy-test-nonce", Algorithm: "MD5", QOP: []string{"auth"}}
	challenge := func(req *sip.Request) *sip.Response {
		res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
		res.AppendHeader(sip.NewHeader("Proxy-Authenticate", chal.String()))
		return res
	}
	return func(req *sip.Request) *sip.Response {
		h := req.GetHeader("Proxy-Authorization")
		if h == nil {
			return challenge(req)
		}
		cred, err := digest.ParseCredentials(h.Value())
		if err != nil {
			return sip.NewResponseFromRequest(req, 400, "Bad Proxy-Authorization header", nil)
		}
		pass, known := users[cred.Username]
		want, err := digest.Digest(chal, digest.Options{Method: string(req.Method), URI: cred.URI,
			Username: cred.Username, Password: pass, Count: cred.Nc, Cnonce: cred.Cnonce})
		if !known || err != nil || cred.Realm != realm || cred.Nonce != chal.Nonce || want.Response != cred.Response {
			return challenge(req)
		}
		if aor, err := lsp.Canonical(req.From().Address.String()); err != nil || aor != "sip:"+cred.Username+"@"+realm {
			return sip.NewResponseFromRequest(req, 403, "Not allowed to send as "+req.From().Address.String(), nil)
		}
		return nil
	}
}

// ua is a raw UDP SIP endpoint for tests.
type ua struct {
	t    *testing.T
	conn *net.UDPConn
}

func newUA(t *testing.T) *ua {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &ua{t: t, conn: c}
}

func (u *ua) addr() string { return u.conn.LocalAddr().String() }

// request builds a request from u with extra headers; "" values skip a default.
func (u *ua) request(method, ruri string, headers ...string) string {
	msg := fmt.Sprintf("%s %s SIP/2.0\r\n", method, ruri)
	has := func(name string) bool {
		for _, h := range headers {
			if strings.HasPrefix(strings.ToLower(h), strings.ToLower(name)+":") {
				return true
			}
		}
		return false
	}
	if !has("Via") {
		msg += fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK%d\r\n", u.addr(), time.Now().UnixNano())
	}
	defaults := []string{"Max-Forwards: 70", "From: <sip:carol@c.example>;tag=1", "To: <" + ruri + ">",
		"Call-ID: " + fmt.Sprint(time.Now().UnixNano()), "CSeq: 1 " + method}
	for _, d := range defaults {
		if !has(strings.SplitN(d, ":", 2)[0]) {
			msg += d + "\r\n"
		}
	}
	for _, h := range headers {
		msg += h + "\r\n"
	}
	return msg + "Content-Length: 0\r\n\r\n"
}

func (u *ua) send(to, msg string) {
	u.t.Helper()
	ra, _ := net.ResolveUDPAddr("udp", to)
	if _, err := u.conn.WriteToUDP([]byte(msg), ra); err != nil {
		u.t.Fatal(err)
	}
}

// recv returns the next message that is not a 100 Trying.
func (u *ua) recv(timeout time.Duration) sip.Message {
	u.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(timeout)
	for {
		_ = u.conn.SetReadDeadline(deadline)
		n, _, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			u.t.Fatalf("no message within %v: %v", timeout, err)
		}
		m, err := sip.ParseMessage(buf[:n])
		if err != nil {
			u.t.Fatalf("unparsable message: %v\n%s", err, buf[:n])
		}
		if r, ok := m.(*sip.Response); ok && r.StatusCode == 100 {
			continue
		}
		return m
	}
}

func (u *ua) status(timeout time.Duration) *sip.Response {
	u.t.Helper()
	m := u.recv(timeout)
	r, ok := m.(*sip.Response)
	if !ok {
		u.t.Fatalf("want a response, got %v", m)
	}
	return r
}

func TestLocalAnswers(t *testing.T) {
	tp := startProxy(t, Proxying, nil)
	u := newUA(t)
	self := "sip:" + tp.addr
	cases := []struct {
		name string
		msg  string
		want int
	}{
		{"Max-Forwards 0", u.request("OPTIONS", "sip:alice@a.example", "Max-Forwards: 0"), 483},
		{"no Call-ID", strings.Replace(u.request("MESSAGE", "sip:alice@a.example"), "Call-ID:", "X-Call-ID:", 1), 400},
		{"CSeq method mismatch", u.request("MESSAGE", "sip:alice@a.example", "CSeq: 1 INVITE"), 400},
		{"tel URI", u.request("MESSAGE", "tel:+15551234"), 416},
		{"Proxy-Require", u.request("MESSAGE", "sip:alice@a.example", "Proxy-Require: foo"), 420},
		{"known user, no binding", u.request("MESSAGE", "sip:alice@a.example"), 480},
		{"no such user", u.request("MESSAGE", "sip:nobody@a.example"), 404},
		{"foreign domain, no route", u.request("MESSAGE", "sip:dave@d.example"), 404},
		{"OPTIONS to the proxy", u.request("OPTIONS", self), 200},
		{"INVITE to the proxy itself", u.request("INVITE", self), 404},
		{"CANCEL of nothing", u.request("CANCEL", "sip:alice@a.example"), 481},
	}
	for _, c := range cases {
		u.send(tp.addr, c.msg)
		if r := u.status(3 * time.Second); r.StatusCode != c.want {
			t.Errorf("%s: got %d %s, want %d", c.name, r.StatusCode, r.Reason, c.want)
		}
	}
	// A request that comes back with our own Via and unchanged is a loop.
	raw := u.request("MESSAGE", "sip:dave@d.example")
	req, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	// Our Via second: the request went through us, then another hop.
	loopMsg := strings.Replace(raw, "Max-Forwards:", "Via: SIP/2.0/UDP "+tp.addr+";branch=z9hG4bK"+(&Proxy{}).loopKey(req.(*sip.Request))+".abc\r\nMax-Forwards:", 1)
	u.send(tp.addr, loopMsg)
	if r := u.status(3 * time.Second); r.StatusCode != 482 {
		t.Errorf("loop: got %d, want 482", r.StatusCode)
	}
	if st := tp.p.Stats(); st.Local < int64(len(cases)) || st.Forwarded != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestForwardAndCache: a MESSAGE for a bound AOR reaches the Contact with
// a decremented Max-Forwards and our Via on top; the response comes back
// without it; the second request is answered from the lookup cache.
func TestForwardAndCache(t *testing.T) {
	tp := startProxy(t, Proxying, nil)
	callee, caller := newUA(t), newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@" + callee.addr(), Expires: time.Now().Add(time.Hour)})
	for i := 0; i < 2; i++ {
		caller.send(tp.addr, caller.request("MESSAGE", "sip:bob@b.example", "Max-Forwards: 10"))
		req, ok := callee.recv(3 * time.Second).(*sip.Request)
		if !ok {
			t.Fatal("callee got no request")
		}
		if req.Recipient.String() != "sip:bob@"+callee.addr() || req.MaxForwards().Val() != 9 {
			t.Fatalf("forwarded %s with Max-Forwards %d", req.Recipient.String(), req.MaxForwards().Val())
		}
		vias := req.GetHeaders("Via")
		if len(vias) != 2 || !strings.Contains(vias[0].Value(), tp.addr) {
			t.Fatalf("Vias %v", vias)
		}
		res := sip.NewResponseFromRequest(req, 202, "Accepted", nil)
		callee.send(tp.addr, res.String())
		got := caller.status(3 * time.Second)
		if got.StatusCode != 202 || len(got.GetHeaders("Via")) != 1 {
			t.Fatalf("caller got %d with Vias %v", got.StatusCode, got.GetHeaders("Via"))
		}
	}
	if st := tp.p.Stats(); st.Lookups != 1 || st.CacheHits != 1 || st.Direct != 2 {
		t.Fatalf("stats %+v, want one lookup and one cache hit", st)
	}
}

// TestRedirect: redirect mode answers 302 listing the live Contacts.
func TestRedirect(t *testing.T) {
	tp := startProxy(t, Redirecting, nil)
	u := newUA(t)
	exp := time.Now().Add(time.Hour)
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@192.0.2.1:5060", Expires: exp, Q: 0.5},
		lsp.Binding{Contact: "sip:bob@192.0.2.2:5060", Expires: exp})
	u.send(tp.addr, u.request("INVITE", "sip:bob@b.example"))
	r := u.status(3 * time.Second)
	if r.StatusCode != 302 {
		t.Fatalf("got %d", r.StatusCode)
	}
	var got []string
	for _, h := range r.GetHeaders("Contact") {
		got = append(got, h.Value())
	}
	if len(got) != 2 || !strings.Contains(strings.Join(got, ","), "192.0.2.1:5060>;q=0.5;expires=") {
		t.Fatalf("Contacts %v", got)
	}
	// The ACK for the 302 is absorbed by the transaction layer.
	u.send(tp.addr, u.request("INVITE", "sip:nobody@b.example"))
	if r := u.status(3 * time.Second); r.StatusCode != 404 {
		t.Fatalf("unknown AOR in redirect mode: %d", r.StatusCode)
	}
}

// TestForkFirst2xxWins forks to two contacts; the first 200 goes upstream
// and the other branch is CANCELled after its 180.
func TestForkFirst2xxWins(t *testing.T) {
	tp := startProxy(t, Proxying, nil)
	caller, d1, d2 := newUA(t), newUA(t), newUA(t)
	exp := time.Now().Add(time.Hour)
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@" + d1.addr(), Expires: exp}, lsp.Binding{Contact: "sip:bob@" + d2.addr(), Expires: exp})
	caller.send(tp.addr, caller.request("INVITE", "sip:bob@b.example"))
	inv1 := d1.recv(3 * time.Second).(*sip.Request)
	inv2 := d2.recv(3 * time.Second).(*sip.Request)
	ring := sip.NewResponseFromRequest(inv2, 180, "Ringing", nil)
	ring.To().Params.Add("tag", "d2")
	d2.send(tp.addr, ring.String())
	if r := caller.status(3 * time.Second); r.StatusCode != 180 {
		t.Fatalf("caller got %d, want the 180", r.StatusCode)
	}
	ok := sip.NewResponseFromRequest(inv1, 200, "OK", nil)
	ok.To().Params.Add("tag", "d1")
	d1.send(tp.addr, ok.String())
	if r := caller.status(3 * time.Second); r.StatusCode != 200 || !strings.Contains(r.To().Value(), "d1") {
		t.Fatalf("caller got %d %s, want d1's 200", r.StatusCode, r.To().Value())
	}
	cancel, isReq := d2.recv(3 * time.Second).(*sip.Request)
	if !isReq || cancel.Method != sip.CANCEL || cancel.Via().Value() != inv2.Via().Value() {
		t.Fatalf("d2 got %v, want a CANCEL with the INVITE's Via", cancel)
	}
	d2.send(tp.addr, sip.NewResponseFromRequest(cancel, 200, "OK", nil).String())
	term := sip.NewResponseFromRequest(inv2, 487, "Request Terminated", nil)
	term.To().Params.Add("tag", "d2")
	d2.send(tp.addr, term.String())
	if ack, ok := d2.recv(3 * time.Second).(*sip.Request); !ok || ack.Method != sip.ACK {
		t.Fatalf("d2 got %v, want the ACK of its 487", ack)
	}
}

// TestRelayPolicy: from an untrusted network the proxy is no open relay.
// Calls to its own users pass; anything else needs Proxy-Authorization of
// the user in From (407 first), and a dialog it did not record-route is
// refused.
func TestRelayPolicy(t *testing.T) {
	tp := startProxy(t, Proxying, func(c *Config) {
		c.TrustedNetworks = []*net.IPNet{} // loopback is not trusted here
		c.Authorize = proxyAuthorizer("a.example", map[string]string{"alice": "secret-a"})
	})
	u := newUA(t)
	asAlice := "From: <sip:alice@a.example>;tag=7"
	u.send(tp.addr, u.request("MESSAGE", "sip:dave@d.example", asAlice, "Call-ID: relay-1", "CSeq: 1 MESSAGE"))
	chal := u.status(3 * time.Second)
	if chal.StatusCode != 407 || chal.GetHeader("Proxy-Authenticate") == nil {
		t.Fatalf("relay without credentials: %d, want 407 with a challenge", chal.StatusCode)
	}
	c, err := digest.ParseChallenge(chal.GetHeader("Proxy-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(c, digest.Options{Method: "MESSAGE", URI: "sip:dave@d.example",
		Username: "alice", Password: "secret-a", Count: 1, Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	authz := "Proxy-Authorization: " + cred.String()
	// The retry of the challenged request (same Call-ID, CSeq + 1: the
	// nonce is minted for it).
	u.send(tp.addr, u.request("MESSAGE", "sip:dave@d.example", asAlice, authz, "Call-ID: relay-1", "CSeq: 2 MESSAGE"))
	if r := u.status(3 * time.Second); r.StatusCode != 404 {
		t.Fatalf("authenticated relay: %d, want it routed (404: no route to d.example)", r.StatusCode)
	}
	u.send(tp.addr, u.request("MESSAGE", "sip:dave@d.example", "From: <sip:mallory@c.example>;tag=8", authz, "Call-ID: relay-1", "CSeq: 2 MESSAGE"))
	if r := u.status(3 * time.Second); r.StatusCode != 403 && r.StatusCode != 407 {
		t.Fatalf("alice's credentials in mallory's request: %d, want 403/407", r.StatusCode)
	}
	u.send(tp.addr, u.request("MESSAGE", "sip:alice@a.example"))
	if r := u.status(3 * time.Second); r.StatusCode != 480 {
		t.Fatalf("call to our own user: %d, want it routed (480: not registered)", r.StatusCode)
	}
	u.send(tp.addr, u.request("BYE", "sip:dave@192.0.2.8", "To: <sip:dave@d.example>;tag=x"))
	if r := u.status(3 * time.Second); r.StatusCode != 403 {
		t.Fatalf("foreign in-dialog request without our Route: %d, want 403", r.StatusCode)
	}
	if st := tp.p.Stats(); st.Refused != 3 || st.Forwarded != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestStaticPeerKeepalive: static peers get OPTIONS; one that does not
// answer is marked down and tried after the one that does, even though it
// is listed first.
func TestStaticPeerKeepalive(t *testing.T) {
	silent, live := newUA(t), newUA(t)
	got := make(chan string, 16)
	live.serve(func(req *sip.Request, reply func(*sip.Response)) { // 200 to everything; reports the methods
		select {
		case got <- string(req.Method):
		default:
		}
		reply(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	silentURI, liveURI := "sip:"+silent.addr(), "sip:"+live.addr()
	tp := startProxy(t, Proxying, func(c *Config) {
		c.Static = map[string][]string{"d.example": {silentURI, liveURI}}
		c.KeepaliveInterval, c.KeepaliveTimeout = 200*time.Millisecond, 300*time.Millisecond
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		sUp, sKnown := tp.p.PeerUp(silentURI)
		lUp, lKnown := tp.p.PeerUp(liveURI)
		if sKnown && lKnown && !sUp && lUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepalive state: silent %v/%v live %v/%v", sUp, sKnown, lUp, lKnown)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := <-got; m != "OPTIONS" {
		t.Fatalf("live peer first got %s, want OPTIONS", m)
	}
	u := newUA(t)
	u.send(tp.addr, u.request("MESSAGE", "sip:dave@d.example"))
	if r := u.status(3 * time.Second); r.StatusCode != 200 {
		t.Fatalf("MESSAGE through the live peer: %d", r.StatusCode)
	}
	if st := tp.p.Stats(); st.Static != 1 || st.Failovers != 0 {
		t.Fatalf("stats %+v: want one request to the live peer and no failover", st)
	}
}

func sdpBody(rtpPort int) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", rtpPort)
}

// withSDP puts an SDP body into a request built by ua.request.
func withSDP(msg string, rtpPort int) string { return withSDPAt(msg, "127.0.0.1", rtpPort) }

// withSDPAt is withSDP with the media at addr.
func withSDPAt(msg, addr string, rtpPort int) string {
	return withBody(msg, strings.ReplaceAll(sdpBody(rtpPort), "IN IP4 127.0.0.1", "IN IP4 "+addr))
}

// withBody puts the SDP body sdp into a request built by ua.request.
func withBody(msg, sdp string) string {
	return strings.Replace(msg, "Content-Length: 0\r\n\r\n",
		fmt.Sprintf("Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(sdp), sdp), 1)
}

func mediaPort(t *testing.T, body []byte) int {
	t.Helper()
	for _, l := range strings.Split(string(body), "\r\n") {
		if strings.HasPrefix(l, "m=audio ") {
			var p int
			fmt.Sscanf(l, "m=audio %d", &p)
			return p
		}
	}
	t.Fatalf("no m=audio in %q", body)
	return 0
}

// TestMediaAnchored: with media policy "always" both SDPs point at the
// relay; RTP from each party reaches the other only through it (from the
// relay's address), a stranger's packets are dropped, and the session is
// gone after BYE.
func TestMediaAnchored(t *testing.T) {
	tp, media := alwaysAnchoring(t, 41000, 41099, 0, nil)
	caller, callee := newUA(t), newUA(t)
	rtpA, rtpB := newUA(t), newUA(t) // each party's RTP socket
	portOf := func(u *ua) int { return u.conn.LocalAddr().(*net.UDPAddr).Port }
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@" + callee.addr(), Expires: time.Now().Add(time.Hour)})

	caller.send(tp.addr, withSDP(caller.request("INVITE", "sip:bob@b.example"), portOf(rtpA)))
	inv := callee.recv(3 * time.Second).(*sip.Request)
	toRelayB := mediaPort(t, inv.Body())
	if toRelayB == portOf(rtpA) || !strings.Contains(string(inv.Body()), "c=IN IP4 127.0.0.1") {
		t.Fatalf("offer not anchored:\n%s", inv.Body())
	}
	ok := sip.NewResponseFromRequest(inv, 200, "OK", []byte(sdpBody(portOf(rtpB))))
	ok.To().Params.Add("tag", "b")
	ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	callee.send(tp.addr, ok.String())
	ans := caller.status(3 * time.Second)
	toRelayA := mediaPort(t, ans.Body())
	if ans.StatusCode != 200 || toRelayA == portOf(rtpB) {
		t.Fatalf("answer not anchored: %d\n%s", ans.StatusCode, ans.Body())
	}

	relayA := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: toRelayA}
	relayB := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: toRelayB}
	expect := func(to *ua, from *net.UDPAddr, payload string) {
		t.Helper()
		buf := make([]byte, 1500)
		_ = to.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, src, err := to.conn.ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != payload || src.Port != from.Port {
			t.Fatalf("want %q from the relay's %v, got %q from %v (%v)", payload, from, buf[:n], src, err)
		}
	}
	// A party that has sent nothing gets a few packets at most: the SDP is
	// the sender's word, and b's address could be anyone's.
	for i := 0; i < 40; i++ {
		_, _ = rtpA.conn.WriteToUDP([]byte("rtp a->b, b silent"), relayA)
	}
	got := 0
	for {
		_ = rtpB.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := rtpB.conn.ReadFromUDP(make([]byte, 1500)); err != nil {
			break
		}
		got++
	}
	if got == 0 || got > 16 {
		t.Fatalf("b, silent, got %d of a's 40 packets, want 1 to 16", got)
	}
	_, _ = rtpB.conn.WriteToUDP([]byte("rtp b->a"), relayB)
	expect(rtpA, relayA, "rtp b->a")
	_, _ = rtpA.conn.WriteToUDP([]byte("rtp a->b"), relayA)
	expect(rtpB, relayB, "rtp a->b")
	stranger := newUA(t)
	_, _ = stranger.conn.WriteToUDP([]byte("injected"), relayA)
	_, _ = rtpA.conn.WriteToUDP([]byte("rtp a->b 2"), relayA)
	expect(rtpB, relayB, "rtp a->b 2") // the injected packet never arrived first
	if media.Dropped() < 1 {
		t.Fatalf("stranger's packet not dropped (dropped %d)", media.Dropped())
	}

	bye := caller.request("BYE", "sip:bob@"+callee.addr(), "To: <sip:bob@b.example>;tag=b", "Call-ID: "+inv.CallID().Value(), "CSeq: 2 BYE")
	caller.send(tp.addr, bye)
	if r, ok := callee.recv(3 * time.Second).(*sip.Request); !ok || r.Method != sip.BYE {
		t.Fatal("BYE not forwarded")
	}
	deadline := time.Now().Add(3 * time.Second)
	for media.Sessions() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d media sessions after BYE", media.Sessions())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := tp.p.Stats(); st.Anchored != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMediaAuto: policy "auto" anchors an offer from a private address,
// and one from a public address to a NAT'd callee (speermint §8), and
// leaves a public one to a public callee alone, and an offer a NAT'd
// caller's proxy already anchored on an overlay relay too (one relay
// serves the call).
func TestMediaAuto(t *testing.T) {
	media, err := relay.NewMedia(relay.MediaConfig{IP: "127.0.0.1", MinPort: 41100, MaxPort: 41199, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	announced := map[peer.ID][]string{"relay-b": {relay.MediaService, relay.MediaEndpoint(net.ParseIP("192.0.2.50"), 40000, 40999)}}
	tp := startProxy(t, Proxying, func(c *Config) {
		c.Media, c.MediaPolicy = media, "auto"
		c.AtRelay = func(ip net.IP, port int) bool { return relay.AtRelay(announced, ip, port) }
	})
	caller, callee := newUA(t), newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@" + callee.addr(), Expires: time.Now().Add(time.Hour)})
	// dave is behind a NAT: a private Contact, registered from the
	// callee's (public here: loopback) socket, where requests go.
	_ = tp.loc.Publish(context.Background(), "sip:dave@b.example",
		lsp.Binding{Contact: "sip:dave@10.0.0.7:5060", Received: callee.addr(), Expires: time.Now().Add(time.Hour)})
	natted := "Contact: <sip:carol@10.0.0.5:5060>"
	for _, c := range []struct {
		addr     string
		port     int
		contact  string
		to       string
		anchored bool
	}{
		{"192.0.2.10", 5004, "", "bob", false},
		{"10.0.0.5", 5004, "", "bob", true},
		{"192.0.2.50", 40010, natted, "bob", false}, // NAT'd caller, media already at relay b
		{"192.0.2.50", 5004, natted, "bob", true},   // the relay's host, not its media ports
		{"192.0.2.10", 5006, "", "dave", true},      // a public caller to a NAT'd callee
	} {
		callID := fmt.Sprintf("auto-%s-%d", c.addr, c.port)
		hdrs := []string{"Call-ID: " + callID}
		if c.contact != "" {
			hdrs = append(hdrs, c.contact)
		}
		msg := withSDPAt(caller.request("INVITE", "sip:"+c.to+"@b.example", hdrs...), c.addr, c.port)
		caller.send(tp.addr, msg)
		var inv *sip.Request
		for inv == nil || inv.CallID().Value() != callID { // skip an earlier call's retransmission
			inv = callee.recv(3 * time.Second).(*sip.Request)
		}
		got := !strings.Contains(string(inv.Body()), fmt.Sprintf("m=audio %d ", c.port))
		if got != c.anchored {
			t.Errorf("offer from %s:%d: anchored %v, want %v\n%s", c.addr, c.port, got, c.anchored, inv.Body())
		}
		busy := sip.NewResponseFromRequest(inv, 486, "Busy Here", nil)
		busy.To().Params.Add("tag", "busy")
		callee.send(tp.addr, busy.String())
		if r := caller.status(3 * time.Second); r.StatusCode != 486 {
			t.Fatalf("caller got %d", r.StatusCode)
		}
	}
	if n := media.Sessions(); n != 0 {
		t.Fatalf("%d sessions left after failed calls", n)
	}
	if st := tp.p.Stats(); st.Anchored != 3 || st.Relayed != 1 {
		t.Fatalf("stats: %d anchored, %d relayed; want 3, 1", st.Anchored, st.Relayed)
	}
}
