package proxy

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

// answerAll makes u a UAS that answers every request with 200 and hands
// the requests it got to the returned channel.
func answerAll(u *ua) <-chan *sip.Request {
	got := make(chan *sip.Request, 16)
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
			select {
			case got <- req:
			default:
			}
			_, _ = u.conn.WriteToUDP([]byte(sip.NewResponseFromRequest(req, 200, "OK", nil).String()), from)
		}
	}()
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
	go func() { // fed answers INVITEs 302 via bProxy and reports what it gets
		buf := make([]byte, 65535)
		for {
			n, from, err := fed.conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(buf[:n])
			req, ok := m.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			seen <- req
			if req.Method == sip.INVITE {
				res := sip.NewResponseFromRequest(req, 302, "Moved Temporarily", nil)
				res.AppendHeader(sip.NewHeader("Contact", "<sip:bob@b.example?Route="+escapeHeaderValue("<sip:"+bProxy.addr()+";lr>")+">"))
				_, _ = fed.conn.WriteToUDP([]byte(res.String()), from)
			}
		}
	}()
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
	go func() { // lure answers every request 302 to the victim
		buf := make([]byte, 65535)
		for {
			n, from, err := lure.conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(buf[:n])
			req, ok := m.(*sip.Request)
			if err != nil || !ok || req.Method == sip.ACK {
				continue
			}
			res := sip.NewResponseFromRequest(req, 302, "Moved", nil)
			res.AppendHeader(sip.NewHeader("Contact", "<sip:x@victim.example?Route="+escapeHeaderValue("<sip:"+victim.addr()+";lr>")+">"))
			_, _ = lure.conn.WriteToUDP([]byte(res.String()), from)
		}
	}()
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
		if tg.dest == "" || tg.uri.Headers != nil && tg.uri.Headers.Length() > 0 {
			t.Fatalf("%q: target %+v", s, tg)
		}
		for _, v := range splitHeaderValues(s) {
			if strings.TrimSpace(v) == "" {
				t.Fatalf("%q: blank value", s)
			}
		}
	})
}
