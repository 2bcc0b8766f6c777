package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/sipnet"
)

// flowProxy is a proxy at 192.0.2.1:5060 with flows keyed by secret, not
// attached to a stack (its routing decisions need none).
func flowProxy(t testing.TB, secret string) *Proxy {
	t.Helper()
	flows, err := sipnet.NewFlows([]byte(secret), "192.0.2.1:5060", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Flows: flows, Location: &memLocation{aor: map[string][]lsp.Binding{}}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	p.self = hostPort{"192.0.2.1", 5060}
	return p
}

// TestFlowEdge: the proxy's routing finds a flow the registrar's Edge
// named in a Path (a lookup) and in a Route (a request from another
// proxy), refuses a token it did not make, does not send a request back
// down the flow it came up, and counts the flows kept alive.
func TestFlowEdge(t *testing.T) {
	p := flowProxy(t, "flow secret for tests")
	path := p.flows.Edge("198.51.100.7:40123", "udp", time.Now().Add(time.Minute))
	if p.Flows() != 1 {
		t.Fatalf("Edge: %q, %d flows", path, p.Flows())
	}
	var u sip.Uri
	if _, err := sip.ParseAddressValue(path, &u, nil); err != nil {
		t.Fatal(err)
	}
	if dest, tr, ok := p.flowTarget(&u); !ok || dest != "198.51.100.7:40123" || tr != "UDP" {
		t.Fatalf("flowTarget(%s) = %s %s %v", path, dest, tr, ok)
	}
	// A token of this node that names another host is no flow of ours.
	elsewhere := u
	elsewhere.Host = "192.0.2.2"
	if _, _, ok := p.flowTarget(&elsewhere); ok {
		t.Fatal("flow token at another host taken as ours")
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
	other := flowProxy(t, "another node's secret")
	forged := "<sip:" + other.flows.Token("203.0.113.9:5060", "UDP") + "@192.0.2.1:5060;lr>"
	if d := p.decide(t.Context(), req(forged), nil); d.code != 403 {
		t.Fatalf("request with a forged flow token: %+v", d)
	}
	// A request that came up the flow is not sent back down it.
	r := req(path)
	r.SetSource("198.51.100.7:40123")
	if d := p.decide(t.Context(), r, nil); len(d.groups) > 0 && d.groups[0][0].flow {
		t.Fatalf("request from the flow sent back down it: %+v", d)
	}
	p.flows.Edge("198.51.100.7:40123", "udp", time.Time{})
	if p.Flows() != 0 {
		t.Fatalf("%d flows after removal", p.Flows())
	}
	// Without flows, a Route with a user part naming us is no flow.
	plain, err := New(Config{Location: &memLocation{aor: map[string][]lsp.Binding{}}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	plain.self = p.self
	if _, _, ok := plain.flowTarget(&u); ok || plain.Flows() != 0 {
		t.Fatal("a proxy without flows found one")
	}
	if !strings.Contains(path, "@192.0.2.1:5060;lr;ob>") {
		t.Fatalf("Edge path %q does not name the proxy", path)
	}
}
