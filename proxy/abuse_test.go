package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/relay"
)

// victim is a UDP socket on another loopback address: what an attacker
// wants the proxy to send to. It counts every datagram it gets.
func victim(t *testing.T) (*net.UDPConn, string) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 77)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().String()
}

// loopbackMedia is an RTP relay on 127.0.0.1 ports lo–hi that may send to
// loopback (where the tests' parties are).
func loopbackMedia(t *testing.T, lo, hi int) *relay.Media {
	t.Helper()
	media, err := relay.NewMedia(relay.MediaConfig{IP: "127.0.0.1", MinPort: lo, MaxPort: hi, Logger: quiet(),
		Allow: []*net.IPNet{{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)}}, AllowSelf: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	return media
}

// silent reports whether c got nothing within d.
func silent(c *net.UDPConn, d time.Duration) (bool, string) {
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		return true, ""
	}
	return false, string(buf[:min(n, 200)])
}

// TestOpenRelay is the abuse suite of the SIP edge: requests from a sender
// outside trusted_networks, without credentials, that try to make the
// proxy carry them to a target that is not one of its domain's users. Each
// is answered with the right code and the target gets no packet. Calls to
// the domain's own users and dialogs the proxy record-routed still pass.
func TestOpenRelay(t *testing.T) {
	media := loopbackMedia(t, 41200, 41299)
	_, other, _ := net.ParseCIDR("10.255.0.0/16")
	tp := startProxy(t, Proxying, func(c *Config) {
		c.TrustedNetworks = []*net.IPNet{other} // the senders below are untrusted
		c.Authorize = proxyAuthorizer("a.example", map[string]string{"alice": "secret-a"})
		c.Media, c.MediaPolicy = media, "always"
		c.RecordRoute = true
	})
	vc, target := victim(t)
	alice := newUA(t) // a registered user of a.example
	// (registered from this host: its received address is loopback)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + alice.addr(), Expires: time.Now().Add(time.Hour), Received: alice.addr()})
	// Bindings naming this host that did not come from it (through a
	// Path, a name, a replica's word): never a destination for outsiders.
	local := newUA(t)
	_, lport, _ := net.SplitHostPort(local.addr())
	_ = tp.loc.Publish(context.Background(), "sip:bob@a.example",
		lsp.Binding{Contact: "sip:bob@" + target, Expires: time.Now().Add(time.Hour), Received: "203.0.113.5:5060"})
	_ = tp.loc.Publish(context.Background(), "sip:carol@a.example",
		lsp.Binding{Contact: "sip:carol@localhost:" + lport, Expires: time.Now().Add(time.Hour), Received: "203.0.113.5:5060"})
	// Another domain's word that the UA registered from "this" host (its
	// own loopback at best): no exemption here.
	_ = tp.loc.Publish(context.Background(), "sip:dave@a.example",
		lsp.Binding{Contact: "sip:dave@10.9.9.9", Expires: time.Now().Add(time.Hour), Received: local.addr(), Signer: "b.example"})
	u := newUA(t) // the attacker
	self := tp.addr
	// A Via naming the target's host: the answer goes to the packet's
	// source address (with the Via's port, RFC 3263 §5), never the target.
	_, uport, _ := net.SplitHostPort(u.addr())
	spoofVia := "Via: SIP/2.0/UDP 127.0.0.77:" + uport + ";branch=z9hG4bKspoof1"

	cases := []struct {
		name string
		msg  string
		want int // 0: no answer expected (ACK)
	}{
		{"Route naming this proxy's address", u.request("MESSAGE", "sip:x@"+target, "Route: <sip:"+self+";lr>"), 407},
		{"Route naming this proxy's domain", u.request("MESSAGE", "sip:x@"+target, "Route: <sip:a.example;lr>"), 407},
		{"local user, then a foreign Route", u.request("MESSAGE", "sip:alice@a.example", "Route: <sip:"+target+";lr>"), 407},
		{"our Route, then a foreign one", u.request("MESSAGE", "sip:alice@a.example", "Route: <sip:"+self+";lr>, <sip:"+target+";lr>"), 407},
		{"address in the Request-URI", u.request("OPTIONS", "sip:x@"+target), 407},
		{"SUBSCRIBE with Route games", u.request("SUBSCRIBE", "sip:x@"+target, "Route: <sip:"+self+";lr>", "Event: presence"), 407},
		{"INVITE to an external number", u.request("INVITE", "sip:+442071234567@pstn.example", "Contact: <sip:u@127.0.0.1>"), 407},
		{"INVITE to an external number, our Route", u.request("INVITE", "sip:+442071234567@"+target, "Route: <sip:"+self+";lr>", "Contact: <sip:u@127.0.0.1>"), 407},
		{"in-dialog, our Route without a token", u.request("BYE", "sip:x@"+target, "To: <sip:x@b.example>;tag=t", "Route: <sip:"+self+";lr>"), 403},
		{"in-dialog, forged token", u.request("BYE", "sip:x@"+target, "To: <sip:x@b.example>;tag=t", "Route: <sip:"+self+";lr;lsrr=AAAAAAAAAAAAAAAAAAAAAA>"), 403},
		{"in-dialog, address only", u.request("INFO", "sip:x@"+target, "To: <sip:x@b.example>;tag=t"), 403},
		{"ACK with our Route", u.request("ACK", "sip:x@"+target, "To: <sip:x@b.example>;tag=t", "Route: <sip:"+self+";lr>"), 0},
		{"ACK to an address", u.request("ACK", "sip:x@"+target, "To: <sip:x@b.example>;tag=t"), 0},
		{"Max-Forwards 0", u.request("MESSAGE", "sip:alice@a.example", "Max-Forwards: 0"), 483},
		{"BYE outside a dialog to our user", u.request("BYE", "sip:alice@a.example"), 481},
		{"INFO outside a dialog to our user", u.request("INFO", "sip:alice@a.example"), 481},
		{"spoofed Via", u.request("MESSAGE", "sip:x@"+target, spoofVia), 407},
		{"Proxy-Require", u.request("MESSAGE", "sip:x@"+target, "Proxy-Require: evil"), 420},
		{"huge header", u.request("MESSAGE", "sip:x@"+target, "X-Pad: "+strings.Repeat("a", 20000)), 407},
		{"our user bound to this host", u.request("MESSAGE", "sip:bob@a.example"), 403},
		{"our user bound to a name of this host", u.request("MESSAGE", "sip:carol@a.example"), 403},
		{"a binding another domain signed, received on loopback", u.request("MESSAGE", "sip:dave@a.example"), 403},
	}
	for _, c := range cases {
		t.Log(c.name)
		u.send(self, c.msg)
		if c.want != 0 {
			r := u.statusOf(callIDOf(t, c.msg), 3*time.Second)
			if r.StatusCode != c.want {
				t.Errorf("%s: %d %s, want %d", c.name, r.StatusCode, r.Reason, c.want)
			}
			if c.want == 420 && (r.GetHeader("Unsupported") == nil || r.GetHeader("Unsupported").Value() != "evil") {
				t.Errorf("%s: 420 without Unsupported: evil", c.name)
			}
		}
		if ok, got := silent(vc, 150*time.Millisecond); !ok {
			t.Fatalf("%s: the target got a packet:\n%s", c.name, got)
		}
	}
	if ok, got := silent(alice.conn, 10*time.Millisecond); !ok {
		t.Fatalf("alice got a request that should have been refused:\n%s", got)
	}
	if ok, got := silent(local.conn, 10*time.Millisecond); !ok {
		t.Fatalf("a service on this host got:\n%s", got)
	}

	// A call to our own user passes without credentials; the proxy
	// record-routes it, and its 200 carries the caller's route set with a
	// token for the callee's hops (its Contact) alone.
	inv := u.request("INVITE", "sip:alice@a.example", "Call-ID: call-ok", "Contact: <sip:attacker@"+u.addr()+">") // no SDP
	u.send(self, inv)
	got, ok := alice.recv(3 * time.Second).(*sip.Request)
	if !ok || got.Method != sip.INVITE {
		t.Fatalf("alice did not get the INVITE: %v", got)
	}
	if rr := got.GetHeader("Record-Route"); rr == nil || !strings.Contains(rr.Value(), rrParam+"=") {
		t.Fatalf("no Record-Route with a token: %v", rr)
	}
	ok200 := sip.NewResponseFromRequest(got, 200, "OK", nil)
	ok200.To().Params.Add("tag", "a")
	ok200.AppendHeader(sip.NewHeader("Contact", "<sip:alice@"+alice.addr()+">"))
	alice.send(self, ok200.String())
	res := u.statusOf("call-ok", 3*time.Second)
	rr := res.GetHeader("Record-Route")
	if res.StatusCode != 200 || rr == nil || !strings.Contains(rr.Value(), rrParam+"=") {
		t.Fatalf("caller got %d with Record-Route %v", res.StatusCode, rr)
	}
	// The dialog's token lets its BYE through to the callee...
	u.send(self, u.request("BYE", "sip:alice@"+alice.addr(), "To: <sip:alice@a.example>;tag=a", "Call-ID: call-ok", "CSeq: 2 BYE",
		"Route: "+rr.Value()))
	if r, ok := alice.recv(3 * time.Second).(*sip.Request); !ok || r.Method != sip.BYE {
		t.Fatal("in-dialog BYE with the minted Route not forwarded")
	}
	// ...but nowhere else: not to another host in the same dialog, not in
	// another dialog, and not as a new request.
	for _, c := range []struct{ name, msg string }{
		{"same dialog, another host", u.request("MESSAGE", "sip:x@"+target, "To: <sip:x@b.example>;tag=a", "Call-ID: call-ok", "CSeq: 3 MESSAGE", "Route: "+rr.Value())},
		{"another dialog", u.request("MESSAGE", "sip:alice@"+alice.addr(), "To: <sip:x@b.example>;tag=t", "Call-ID: call-other", "Route: "+rr.Value())},
		{"a new request", u.request("INVITE", "sip:+882123456@"+target, "Call-ID: call-ok", "CSeq: 4 INVITE", "Route: "+rr.Value())},
	} {
		u.send(self, c.msg)
		want := 403
		if strings.HasPrefix(c.msg, "INVITE") {
			want = 407
		}
		r := u.statusOf(callIDOf(t, c.msg), 3*time.Second)
		for r.StatusCode == 200 { // the 200 of the INVITE, retransmitted until ACKed
			r = u.statusOf(callIDOf(t, c.msg), 3*time.Second)
		}
		if r.StatusCode != want {
			t.Fatalf("token used for %s: %d, want %d", c.name, r.StatusCode, want)
		}
		if ok, got := silent(vc, 150*time.Millisecond); !ok {
			t.Fatalf("token used for %s reached the target:\n%s", c.name, got)
		}
	}
	if ok, got := silent(alice.conn, 10*time.Millisecond); !ok && !strings.HasPrefix(got, "SIP/2.0 200") && !strings.Contains(got, "BYE") {
		t.Fatalf("alice got:\n%s", got)
	}
}

func callIDOf(t *testing.T, msg string) string {
	t.Helper()
	m, err := sip.ParseMessage([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return m.CallID().Value()
}

// statusOf returns the next response of the call callID, skipping others
// (an unacknowledged 407 to an INVITE is retransmitted).
func (u *ua) statusOf(callID string, timeout time.Duration) *sip.Response {
	u.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := u.status(time.Until(deadline))
		if r.CallID() != nil && r.CallID().Value() == callID {
			return r
		}
	}
}

// TestForeignByeKeepsMedia: a BYE from an untrusted sender that knows an
// anchored call's Call-ID but has no Route this proxy minted for it does not
// end the call's media session.
func TestForeignByeKeepsMedia(t *testing.T) {
	media := loopbackMedia(t, 41300, 41399)
	_, other, _ := net.ParseCIDR("10.255.0.0/16")
	tp := startProxy(t, Proxying, func(c *Config) {
		c.TrustedNetworks = []*net.IPNet{other}
		c.Media, c.MediaPolicy = media, "always"
	})
	caller, callee, rtp := newUA(t), newUA(t), newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + callee.addr(), Expires: time.Now().Add(time.Hour), Received: callee.addr()})
	caller.send(tp.addr, withSDP(caller.request("INVITE", "sip:alice@a.example", "Call-ID: anchored-1"), rtp.conn.LocalAddr().(*net.UDPAddr).Port))
	if inv, ok := callee.recv(3 * time.Second).(*sip.Request); !ok || inv.Method != sip.INVITE {
		t.Fatal("INVITE not forwarded")
	}
	if media.Sessions() != 1 {
		t.Fatalf("%d media sessions, want the call's", media.Sessions())
	}
	mallory := newUA(t)
	mallory.send(tp.addr, mallory.request("BYE", "sip:alice@"+callee.addr(), "To: <sip:alice@a.example>;tag=a", "Call-ID: anchored-1", "CSeq: 9 BYE"))
	if r := mallory.status(3 * time.Second); r.StatusCode != 403 {
		t.Fatalf("foreign BYE: %d, want 403", r.StatusCode)
	}
	if media.Sessions() != 1 {
		t.Fatal("a foreign BYE ended the call's media")
	}
	// Addressed to the AOR (open: our user), with the Call-ID and either
	// tag: forwarded to alice, but without our Route it ends no media.
	for _, tags := range [][2]string{{"x", "a"}, {"a", "x"}} {
		mallory.send(tp.addr, mallory.request("BYE", "sip:alice@a.example", "From: <sip:m@c.example>;tag="+tags[0],
			"To: <sip:alice@a.example>;tag="+tags[1], "Call-ID: anchored-1", "CSeq: 10 BYE"))
		if r, ok := callee.recv(3 * time.Second).(*sip.Request); !ok || r.Method != sip.BYE {
			t.Fatal("BYE to our user not forwarded")
		}
	}
	if media.Sessions() != 1 {
		t.Fatal("a BYE to the AOR with the call's Call-ID ended its media")
	}
	// A second INVITE with the Call-ID (another From tag) does not take
	// the session over, and its failure does not end it.
	mallory.send(tp.addr, withSDP(mallory.request("INVITE", "sip:alice@a.example", "Call-ID: anchored-1", "CSeq: 11 INVITE"), 9))
	inv2, ok := callee.recv(3 * time.Second).(*sip.Request)
	if !ok || inv2.Method != sip.INVITE {
		t.Fatal("second INVITE not forwarded")
	}
	busy := sip.NewResponseFromRequest(inv2, 486, "Busy Here", nil)
	busy.To().Params.Add("tag", "z")
	callee.send(tp.addr, busy.String())
	if r := mallory.statusOf("anchored-1", 3*time.Second); r.StatusCode != 486 {
		t.Fatalf("second INVITE: %d", r.StatusCode)
	}
	if media.Sessions() != 2 && media.Sessions() != 1 {
		t.Fatalf("%d media sessions", media.Sessions())
	}
	if !tp.p.anchored("anchored-1|1") {
		t.Fatal("the first call's media session is gone")
	}
}

// TestProxyAuthorizationConsumed: credentials of our realm never travel
// downstream, whether or not the policy needed them, however the header's
// name is written; another realm's do.
func TestProxyAuthorizationConsumed(t *testing.T) {
	tp := startProxy(t, Proxying, nil)
	alice, u := newUA(t), newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + alice.addr(), Expires: time.Now().Add(time.Hour)})
	ours := `Proxy-Authorization: Digest username="carol", realm="a.example", nonce="n", uri="sip:alice@a.example", response="0"`
	lower := `proxy-authorization: Digest username="dave", realm="a.example", nonce="n", uri="sip:alice@a.example", response="0"`
	theirs := `Proxy-Authorization: Digest username="carol", realm="c.example", nonce="n", uri="sip:alice@a.example", response="0"`
	u.send(tp.addr, u.request("MESSAGE", "sip:alice@a.example", ours, lower, theirs))
	got, ok := alice.recv(3 * time.Second).(*sip.Request)
	if !ok {
		t.Fatal("MESSAGE not forwarded")
	}
	hs := got.GetHeaders("Proxy-Authorization")
	if len(hs) != 1 || !strings.Contains(hs[0].Value(), `realm="c.example"`) {
		t.Fatalf("forwarded Proxy-Authorization: %v, want c.example's alone", hs)
	}
}

// TestTimerCRestarts: a provisional response restarts Timer C (RFC 3261
// §16.7 step 2): a callee that keeps ringing past Timer C is not cancelled.
func TestTimerCRestarts(t *testing.T) {
	tp := startProxy(t, Proxying, func(c *Config) { c.InviteTimeout = 600 * time.Millisecond })
	caller, callee := newUA(t), newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + callee.addr(), Expires: time.Now().Add(time.Hour)})
	caller.send(tp.addr, caller.request("INVITE", "sip:alice@a.example", "Contact: <sip:c@"+caller.addr()+">"))
	inv, ok := callee.recv(3 * time.Second).(*sip.Request)
	if !ok || inv.Method != sip.INVITE {
		t.Fatal("INVITE not forwarded")
	}
	ring := sip.NewResponseFromRequest(inv, 180, "Ringing", nil)
	ring.To().Params.Add("tag", "c")
	// Ring for three times Timer C, every half of it.
	for range 6 {
		callee.send(tp.addr, ring.String())
		if ok, got := silent(callee.conn, 300*time.Millisecond); !ok && strings.HasPrefix(got, "CANCEL") {
			t.Fatalf("branch cancelled while ringing:\n%s", got)
		}
	}
	okRes := sip.NewResponseFromRequest(inv, 200, "OK", nil)
	okRes.To().Params.Add("tag", "c")
	callee.send(tp.addr, okRes.String())
	for {
		r := caller.status(3 * time.Second)
		if r.StatusCode >= 200 {
			if r.StatusCode != 200 {
				t.Fatalf("caller got %d, want the 200", r.StatusCode)
			}
			return
		}
	}
}
