package proxy

import (
	"context"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

// serve runs u as a UAS until its socket closes: each request it reads
// goes to answer, with reply to send responses to where it came from.
func (u *ua) serve(answer func(req *sip.Request, reply func(*sip.Response))) {
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := u.conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(buf[:n])
			req, ok := m.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			answer(req, func(res *sip.Response) { _, _ = u.conn.WriteToUDP([]byte(res.String()), from) })
		}
	}()
}

// answerAll makes u a UAS that answers every request with 200 and hands
// the requests it got to the returned channel.
func answerAll(u *ua) <-chan *sip.Request {
	got := make(chan *sip.Request, 16)
	u.serve(func(req *sip.Request, reply func(*sip.Response)) {
		select {
		case got <- req:
		default:
		}
		reply(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	return got
}

// TestFederationRedirect is speermint-flows §7.1 with raw UAs: a member
// proxy sends what it cannot place to its catch-all static peer, the
// federation's redirect server, which answers 302 naming the destination
// domain's next hop as a Route in the Contact's headers; the member proxy
// follows it: the request reaches the next hop with the AOR as Request-URI
// and the Route, and the caller gets the next hop's 200.
func TestFederationRedirect(t *testing.T) {
	bProxy := newUA(t)
	got := answerAll(bProxy)
	fed := startProxy(t, Redirecting, func(c *Config) {
		c.Domain = "fed.example"
		c.Static = map[string][]string{"b.example": {"sip:" + bProxy.addr()}}
	})
	member := startProxy(t, Proxying, func(c *Config) {
		c.Static = map[string][]string{CatchAll: {"sip:" + fed.addr}}
	})
	u := newUA(t)
	u.send(member.addr, u.request("MESSAGE", "sip:bob@b.example"))
	if r := u.status(5 * time.Second); r.StatusCode != 200 {
		t.Fatalf("MESSAGE through the federation: %d %s", r.StatusCode, r.Reason)
	}
	req := <-got
	if req.Recipient.String() != "sip:bob@b.example" {
		t.Errorf("the next hop got Request-URI %s, want the AOR", req.Recipient.String())
	}
	if r := req.Route(); r == nil || r.Address.HostPort() != bProxy.addr() || !r.Address.UriParams.Has("lr") {
		t.Errorf("the next hop got Route %v, want itself (loose routing)", req.Route())
	}
	if st := member.p.Stats(); st.Static != 1 || st.Followed != 1 || st.Forwarded != 2 {
		t.Errorf("member proxy %+v: want one request to the redirect server, one to the Contact it named", st)
	}
	if st := fed.p.Stats(); st.Redirected != 1 || st.Forwarded != 0 {
		t.Errorf("redirect server %+v: want one 302 and nothing proxied", st)
	}

	// A domain missing from the federation's table: refused, not proxied
	// (the member proxy passes the redirect server's answer on).
	u.send(member.addr, u.request("MESSAGE", "sip:carl@c.example"))
	if r := u.status(5 * time.Second); r.StatusCode != 404 {
		t.Fatalf("a domain the federation does not know: %d, want 404", r.StatusCode)
	}
	if st := fed.p.Stats(); st.Forwarded != 0 {
		t.Errorf("redirect server %+v: proxied a request", st)
	}
}

// TestFederationRedirectACK: the member proxy acknowledges the redirect
// server's 302 (RFC 3261 §17.1.1.3: an ACK in the INVITE's transaction,
// same branch) before its INVITE goes to the next hop the 302 names.
func TestFederationRedirectACK(t *testing.T) {
	fed, bProxy := newUA(t), newUA(t)
	got := answerAll(bProxy)
	seen := make(chan *sip.Request, 8)
	fed.serve(func(req *sip.Request, reply func(*sip.Response)) { // 302 to INVITEs, via bProxy; reports what it gets
		seen <- req
		if req.Method == sip.INVITE {
			res := sip.NewResponseFromRequest(req, 302, "Moved Temporarily", nil)
			res.AppendHeader(sip.NewHeader("Contact", "<sip:bob@b.example?Route="+escapeHeaderValue("<sip:"+bProxy.addr()+";lr>")+">"))
			reply(res)
		}
	})
	member := startProxy(t, Proxying, func(c *Config) {
		c.Static = map[string][]string{CatchAll: {"sip:" + fed.addr()}}
	})
	u := newUA(t)
	u.send(member.addr, u.request("INVITE", "sip:bob@b.example"))
	if r := u.status(5 * time.Second); r.StatusCode != 200 {
		t.Fatalf("INVITE through the federation: %d %s", r.StatusCode, r.Reason)
	}
	inv, ack := <-seen, <-seen
	branch := func(r *sip.Request) string { b, _ := r.Via().Params.Get("branch"); return b }
	if inv.Method != sip.INVITE || ack.Method != sip.ACK || branch(ack) != branch(inv) {
		t.Fatalf("the redirect server got %s then %s (branches %v, %v): want INVITE, then its ACK", inv.Method, ack.Method, inv.Via(), ack.Via())
	}
	if req := <-got; req.Method != sip.INVITE || req.Recipient.String() != "sip:bob@b.example" {
		t.Fatalf("the next hop got %s %s", req.Method, req.Recipient.String())
	}
}

// TestRedirectFollowedOnlyFromStaticPeers: a 3xx from a binding's Contact
// (any UA registered anywhere) is passed upstream, not followed: its Route
// would send this proxy's requests wherever the UA likes.
func TestRedirectFollowedOnlyFromStaticPeers(t *testing.T) {
	lure, victim := newUA(t), newUA(t)
	got := answerAll(victim)
	lure.serve(func(req *sip.Request, reply func(*sip.Response)) { // 302 to the victim
		if req.Method == sip.ACK {
			return
		}
		res := sip.NewResponseFromRequest(req, 302, "Moved", nil)
		res.AppendHeader(sip.NewHeader("Contact", "<sip:x@victim.example?Route="+escapeHeaderValue("<sip:"+victim.addr()+";lr>")+">"))
		reply(res)
	})
	tp := startProxy(t, Proxying, nil)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + lure.addr(), Expires: time.Now().Add(time.Hour)})
	u := newUA(t)
	u.send(tp.addr, u.request("MESSAGE", "sip:alice@a.example"))
	if r := u.status(5 * time.Second); r.StatusCode != 302 {
		t.Fatalf("a UA's 302: %d, want it passed upstream", r.StatusCode)
	}
	select {
	case req := <-got:
		t.Fatalf("a UA's 302 was followed: the victim got %s", req.Method)
	case <-time.After(300 * time.Millisecond):
	}
	if st := tp.p.Stats(); st.Followed != 0 {
		t.Fatalf("stats %+v: followed a UA's redirect", st)
	}
}

// TestRedirectCarriesPath: in redirect mode, a binding registered through
// an edge proxy (a NAT'd UA's flow) is answered with its Path as a Route
// in the Contact's headers, and the bindings' q and expires; the Route is
// what redirectTarget reads back.
func TestRedirectCarriesPath(t *testing.T) {
	tp := startProxy(t, Redirecting, nil)
	path := []string{"sip:flow1@192.0.2.9:5060;lr;ob", "<sip:edge2.a.example;lr>"} // as the registrar stores an edge's: bare
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@10.0.0.5:5060", Path: path, Q: 0.7, Expires: time.Now().Add(time.Hour)})
	u := newUA(t)
	u.send(tp.addr, u.request("INVITE", "sip:alice@a.example"))
	r := u.status(3 * time.Second)
	if r.StatusCode != 302 {
		t.Fatalf("got %d", r.StatusCode)
	}
	c, ok := r.GetHeader("Contact").(*sip.ContactHeader)
	if !ok {
		t.Fatalf("Contact %v", r.GetHeader("Contact"))
	}
	if q, _ := c.Params.Get("q"); q != "0.7" {
		t.Errorf("q %q", q)
	}
	if _, ok := c.Params.Get("expires"); !ok {
		t.Error("no expires")
	}
	tg, err := redirectTarget(c.Address, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	if tg.uri.String() != "sip:alice@10.0.0.5:5060" || tg.dest != "192.0.2.9:5060" || strings.Join(tg.route, ",") != "<"+path[0]+">,"+path[1] {
		t.Fatalf("followed: Request-URI %s, to %s, Route %v; want the Contact, through the Path", tg.uri.String(), tg.dest, tg.route)
	}
	if tg.peer != "a.example" {
		t.Errorf("a TLS connection to the edge proxy must be one of %q, want a.example", tg.peer)
	}
}

func TestRedirectTargetRefuses(t *testing.T) {
	for _, c := range []string{
		"sip:bob@b.example?Route=",                               // empty Route
		"sip:bob@b.example?Route=%zz",                            // bad escape
		"sip:bob@b.example?Route=" + url.PathEscape("<sip:;lr>"), // no host
		"sip:bob@b.example?Route=%3Csip:hop;lr%3E%0D%0AP-Asserted-Identity:%20%3Csip:boss@a.example%3E",                                                   // a header of its own
		"sip:bob@b.example?Route=%3Csip:hop;lr%3E%00",                                                                                                     // NUL
		"sip:bob@b.example?Route=" + url.PathEscape("<sip:a;lr>,<sip:b;lr>,<sip:c;lr>,<sip:d;lr>,<sip:e;lr>,<sip:f;lr>,<sip:g;lr>,<sip:h;lr>,<sip:i;lr>"), // 9 hops
		"sip:bob@b.example;maddr=[]", // no host once the brackets go
	} {
		var u sip.Uri
		if err := sip.ParseUri(c, &u); err != nil {
			continue // refused earlier: fine
		}
		if tg, err := redirectTarget(u, "b.example"); err == nil {
			t.Errorf("%s: followed to %s", c, tg.dest)
		}
	}
}

// FuzzRedirectTarget: any Contact URI either is refused or gives a target
// with a destination; splitting never loses a non-blank value's text.
func FuzzRedirectTarget(f *testing.F) {
	f.Add("sip:bob@b.example?Route=%3Csip%3A127.0.0.1%3A5070%3Blr%3E")
	f.Add("sips:bob@b.example?Route=%3Csip%3Aa%3Blr%3E%2C%3Csip%3Ab%3Blr%3E&Subject=x")
	f.Add("sip:bob@10.0.0.1:5060;transport=tcp")
	f.Fuzz(func(t *testing.T, s string) {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			return
		}
		tg, err := redirectTarget(u, "b.example")
		if err != nil {
			return
		}
		if h, _, err := net.SplitHostPort(tg.dest); err != nil || h == "" || tg.uri.Headers != nil && tg.uri.Headers.Length() > 0 {
			t.Fatalf("%q: target %+v", s, tg)
		}
		// What goes out as Route headers: name-addrs that parse back,
		// no control character, at most maxRoutes.
		if len(tg.route) > maxRoutes {
			t.Fatalf("%q: %d routes", s, len(tg.route))
		}
		for _, v := range tg.route {
			var r sip.Uri
			if strings.ContainsAny(v, "\r\n\x00") || !strings.HasPrefix(v, "<") || !strings.HasSuffix(v, ">") {
				t.Fatalf("%q: Route value %q", s, v)
			}
			if _, err := sip.ParseAddressValue(v, &r, nil); err != nil {
				t.Fatalf("%q: Route value %q does not parse: %v", s, v, err)
			}
		}
	})
}

// TestPathRebuilt: a binding whose Path carries CR LF (lsp refuses to
// store one; a store that did not) is not routed with it: the Route sent
// is rebuilt from the parsed URI, or the binding is skipped.
func TestPathRebuilt(t *testing.T) {
	callee := newUA(t)
	got := answerAll(callee)
	tp := startProxy(t, Proxying, nil)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example", lsp.Binding{Contact: "sip:alice@" + callee.addr(),
		Path: []string{"<sip:" + callee.addr() + ";lr>\r\nP-Asserted-Identity: <sip:boss@a.example>"}, Expires: time.Now().Add(time.Hour)})
	u := newUA(t)
	u.send(tp.addr, u.request("MESSAGE", "sip:alice@a.example"))
	if r := u.status(3 * time.Second); r.StatusCode == 200 {
		req := <-got
		if req.GetHeader("P-Asserted-Identity") != nil {
			t.Fatalf("a Path's CR LF became a header: %v", req.GetHeader("P-Asserted-Identity"))
		}
	}
	select {
	case req := <-got:
		t.Fatalf("the callee got %s", req.Method)
	default:
	}
}

// TestRedirectedDestination: a trusted sender's request is sent anywhere
// it names, but a target a 3xx named is checked as an untrusted sender's
// would be (this host and link refused) unless the redirect server that
// answered is itself on this host or link (recurse sets local).
func TestRedirectedDestination(t *testing.T) {
	tp := startProxy(t, Proxying, nil)
	u := newUA(t)
	var req *sip.Request
	m, err := sip.ParseMessage([]byte(u.request("INVITE", "sip:bob@b.example")))
	if err != nil {
		t.Fatal(err)
	}
	req = m.(*sip.Request)
	req.SetSource(u.addr()) // loopback: trusted
	if !tp.p.trusted(req) {
		t.Fatal("a loopback sender is not trusted: this test shows nothing")
	}
	loop := target{dest: "127.0.0.1:6379", tr: "TCP"}
	for _, c := range []struct {
		how   via
		local bool
		want  bool
	}{{viaStatic, false, true}, {viaURI, false, true}, {viaRedirect, false, false}, {viaRedirect, true, true}} {
		tg := loop
		tg.how, tg.local = c.how, c.local
		if got := tp.p.destAllowed(context.Background(), req, tg); got != c.want {
			t.Errorf("%v to %s (local %v) from a trusted sender: allowed %v, want %v", c.how, tg.dest, c.local, got, c.want)
		}
	}
}

// TestNoRecursionAfterCancel: a 302 that comes after the caller's CANCEL
// is not followed (RFC 3261 §16.10: no new branch once cancelled), so the
// target it names never rings with nobody to cancel it.
func TestNoRecursionAfterCancel(t *testing.T) {
	fed, target := newUA(t), newUA(t)
	got := answerAll(target)
	cancelled := make(chan struct{})
	var invite *sip.Request                                       // the serving goroutine's alone
	fed.serve(func(req *sip.Request, reply func(*sip.Response)) { // 180 to the INVITE; on CANCEL, 200 to it and then 302 to the INVITE
		switch req.Method {
		case sip.INVITE:
			invite = req
			reply(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		case sip.CANCEL:
			reply(sip.NewResponseFromRequest(req, 200, "OK", nil))
			res := sip.NewResponseFromRequest(invite, 302, "Moved Temporarily", nil)
			res.AppendHeader(sip.NewHeader("Contact", "<sip:bob@b.example?Route="+escapeHeaderValue("<sip:"+target.addr()+";lr>")+">"))
			reply(res)
			close(cancelled)
		}
	})
	member := startProxy(t, Proxying, func(c *Config) {
		c.Static = map[string][]string{CatchAll: {"sip:" + fed.addr()}}
	})
	u := newUA(t)
	via := "Via: SIP/2.0/UDP " + u.addr() + ";branch=z9hG4bKcancel1"
	inv := u.request("INVITE", "sip:bob@b.example", via, "Call-ID: cancel1", "From: <sip:carol@c.example>;tag=1")
	u.send(member.addr, inv)
	if r := u.status(3 * time.Second); r.StatusCode != 180 {
		t.Fatalf("want 180 first, got %d", r.StatusCode)
	}
	u.send(member.addr, u.request("CANCEL", "sip:bob@b.example", via, "Call-ID: cancel1", "From: <sip:carol@c.example>;tag=1", "CSeq: 1 CANCEL"))
	select {
	case <-cancelled:
	case <-time.After(3 * time.Second):
		t.Fatal("the member proxy sent no CANCEL to the redirect server")
	}
	select {
	case req := <-got:
		t.Fatalf("the 302 after CANCEL was followed: the target got %s", req.Method)
	case <-time.After(500 * time.Millisecond):
	}
	if st := member.p.Stats(); st.Followed != 0 {
		t.Fatalf("stats %+v: followed a redirect after CANCEL", st)
	}
}
