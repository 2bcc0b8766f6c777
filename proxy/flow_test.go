package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

func flowProxy(t testing.TB) *Proxy {
	t.Helper()
	p, err := New(Config{FlowSecret: []byte("flow secret for tests"), Location: &memLocation{aor: map[string][]lsp.Binding{}}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	p.self = hostPort{"192.0.2.1", 5060}
	return p
}

// TestFlowEdge: Edge keeps a NAT'd binding's flow and names it in a Path
// value; the proxy's routing finds the flow in that Path (a lookup) and in
// a Route (a request from another proxy), refuses a token it did not
// make, and forgets the flow once the binding is removed.
func TestFlowEdge(t *testing.T) {
	p := flowProxy(t)
	path := p.Edge("198.51.100.7:40123", "udp", time.Now().Add(time.Minute))
	if !strings.HasPrefix(path, "<sip:") || !strings.Contains(path, "@192.0.2.1:5060;lr;ob>") || p.Flows() != 1 {
		t.Fatalf("Edge: %q, %d flows", path, p.Flows())
	}
	var u sip.Uri
	if _, err := sip.ParseAddressValue(path, &u, nil); err != nil {
		t.Fatal(err)
	}
	if dest, tr, ok := p.flowTarget(&u); !ok || dest != "198.51.100.7:40123" || tr != "UDP" {
		t.Fatalf("flowTarget(%s) = %s %s %v", path, dest, tr, ok)
	}
	// Another node's token (another secret) and a tampered one are not ours.
	other := flowProxy(t)
	other.cfg.FlowSecret = []byte("another node's secret")
	for _, tok := range []string{other.flowToken("198.51.100.7:40123", "UDP"),
		strings.Replace(u.User, "A", "B", 1), u.User + "x", "", "."} {
		if _, _, ok := p.parseFlowToken(tok); ok && tok != u.User {
			t.Errorf("token %q accepted", tok)
		}
	}
	// A request routed to us with the token goes down the flow; with a
	// token we did not make it gets 403.
	req := func(route string) *sip.Request {
		m, err := sip.ParseMessage([]byte("INVITE sip:bob@192.168.1.11:5060 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKflow\r\nRoute: " + route + "\r\n" +
			"From: <sip:carol@b.example>;tag=1\r\nTo: <sip:bob@a.example>\r\nCall-ID: flow-test\r\n" +
			"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		r := m.(*sip.Request)
		r.SetSource("192.0.2.99:5060")
		return r
	}
	d := p.decide(t.Context(), req(path), nil)
	if d.code != 0 || len(d.groups) != 1 || d.groups[0][0].dest != "198.51.100.7:40123" || !d.groups[0][0].flow {
		t.Fatalf("request with our flow token: %+v", d)
	}
	forged := "<sip:" + other.flowToken("203.0.113.9:5060", "UDP") + "@192.0.2.1:5060;lr>"
	if d := p.decide(t.Context(), req(forged), nil); d.code != 403 {
		t.Fatalf("request with a forged flow token: %+v", d)
	}
	// A request that came up the flow is not sent back down it.
	r := req(path)
	r.SetSource("198.51.100.7:40123")
	if d := p.decide(t.Context(), r, nil); len(d.groups) > 0 && d.groups[0][0].flow {
		t.Fatalf("request from the flow sent back down it: %+v", d)
	}
	p.Edge("198.51.100.7:40123", "udp", time.Time{})
	if p.Flows() != 0 {
		t.Fatalf("%d flows after removal", p.Flows())
	}
	if p.Edge("not an address", "udp", time.Now().Add(time.Minute)) != "" || p.Edge("198.51.100.7:1", "sctp", time.Now().Add(time.Minute)) != "" {
		t.Fatal("Edge accepted a bad source or transport")
	}
}

// FuzzFlowToken: parsing never panics, and only tokens this proxy made
// (flowToken of what they name) are accepted.
func FuzzFlowToken(f *testing.F) {
	p := flowProxy(f)
	f.Add(p.flowToken("198.51.100.7:40123", "UDP"))
	f.Add(p.flowToken("[2001:db8::1]:5061", "TLS"))
	f.Add("MTk4LjUxLjEwMC43OjQwMTIzfFVEUA.AAAAAAAAAAAAAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		dest, tr, ok := p.parseFlowToken(tok)
		if ok && p.flowToken(dest, tr) != tok {
			t.Fatalf("accepted %q, which is not the token of %s %s", tok, dest, tr)
		}
	})
}
