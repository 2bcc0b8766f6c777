package sipnet

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func testFlows(t testing.TB, secret, addr, tlsAddr string) *Flows {
	t.Helper()
	f, err := NewFlows([]byte(secret), addr, tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFlowEdge: Edge keeps a NAT'd binding's flow and names it in a Path
// value whose token only these flows accept; a removal, or an expiry,
// forgets it; a bad source or transport gets no flow.
func TestFlowEdge(t *testing.T) {
	f := testFlows(t, "flow secret for tests", "192.0.2.1:5060", "192.0.2.1:5061")
	path := f.Edge("198.51.100.7:40123", "udp", time.Now().Add(time.Minute))
	if !strings.HasPrefix(path, "<sip:") || !strings.HasSuffix(path, "@192.0.2.1:5060;lr;ob>") || f.Len() != 1 {
		t.Fatalf("Edge: %q, %d flows", path, f.Len())
	}
	tok := strings.TrimPrefix(strings.Split(path, "@")[0], "<sip:")
	if dest, tr, ok := f.Parse(tok); !ok || dest != "198.51.100.7:40123" || tr != "UDP" {
		t.Fatalf("Parse(%s) = %s %s %v", tok, dest, tr, ok)
	}
	// Another node's token (another secret) and a tampered one are not ours.
	other := testFlows(t, "another node's secret", "192.0.2.1:5060", "")
	for _, bad := range []string{other.Token("198.51.100.7:40123", "UDP"),
		strings.Replace(tok, "A", "B", 1), tok + "x", "", ".", strings.Repeat("A", 300)} {
		if _, _, ok := f.Parse(bad); ok && bad != tok {
			t.Errorf("token %q accepted", bad)
		}
	}
	// Over TLS the flow names the TLS address.
	if p := f.Edge("198.51.100.7:40124", "tls", time.Now().Add(time.Minute)); !strings.HasSuffix(p, "@192.0.2.1:5061;lr;ob;transport=tls>") {
		t.Fatalf("TLS flow %q", p)
	}
	if p := other.URI("198.51.100.7:40124", "TLS"); !strings.HasSuffix(p, "@192.0.2.1:5060;lr;ob;transport=tls>") {
		t.Fatalf("TLS flow without a TLS address %q", p)
	}
	// A WebSocket's flow is reached over UDP (ws) or TLS (wss): no
	// proxy can open a WebSocket to it; its token keeps the transport.
	if p := f.Edge("198.51.100.7:40125", "ws", time.Now().Add(time.Minute)); !strings.HasSuffix(p, "@192.0.2.1:5060;lr;ob>") {
		t.Fatalf("WS flow %q", p)
	}
	if p := f.URI("198.51.100.7:40126", "WSS"); !strings.HasSuffix(p, "@192.0.2.1:5061;lr;ob;transport=tls>") {
		t.Fatalf("WSS flow %q", p)
	}
	if p := other.URI("198.51.100.7:40126", "WSS"); !strings.HasSuffix(p, "@192.0.2.1:5060;lr;ob;transport=tcp>") {
		t.Fatalf("WSS flow without a TLS address %q", p)
	}
	if dest, tr, ok := f.Parse(strings.TrimPrefix(strings.Split(f.URI("198.51.100.7:40126", "WSS"), "@")[0], "<sip:")); !ok || dest != "198.51.100.7:40126" || tr != "WSS" {
		t.Fatalf("WSS token: %s %s %v", dest, tr, ok)
	}
	f.Edge("198.51.100.7:40125", "WS", time.Time{})
	f.Edge("198.51.100.7:40123", "udp", time.Time{})
	f.Edge("198.51.100.7:40124", "TLS", time.Now().Add(-time.Second))
	if f.Len() != 0 {
		t.Fatalf("%d flows after removal", f.Len())
	}
	if f.Edge("not an address", "udp", time.Now().Add(time.Minute)) != "" || f.Edge("198.51.100.7:1", "sctp", time.Now().Add(time.Minute)) != "" || f.Len() != 0 {
		t.Fatal("Edge accepted a bad source or transport")
	}
}

// TestFlowsLive: Live lists the flows still bound and forgets the others.
func TestFlowsLive(t *testing.T) {
	f := testFlows(t, "flow secret for tests", "192.0.2.1:5060", "")
	now := time.Now()
	f.Edge("198.51.100.7:1", "UDP", now.Add(time.Minute))
	f.Edge("198.51.100.7:2", "TCP", now.Add(2*time.Second))
	live := f.Live(now.Add(time.Second))
	if len(live) != 2 || f.Len() != 2 {
		t.Fatalf("live %+v", live)
	}
	live = f.Live(now.Add(3 * time.Second))
	if len(live) != 1 || live[0] != (Flow{Dest: "198.51.100.7:1", Transport: "UDP", Until: now.Add(time.Minute)}) || f.Len() != 1 {
		t.Fatalf("live after one expired: %+v", live)
	}
}

func TestNewFlowsRefuses(t *testing.T) {
	for _, c := range []struct{ secret, addr, tls string }{
		{"", "192.0.2.1:5060", ""},
		{"s", "192.0.2.1", ""},
		{"s", "192.0.2.1:0", ""},
		{"s", "192.0.2.1:5060", "192.0.2.1:x"},
	} {
		if _, err := NewFlows([]byte(c.secret), c.addr, c.tls); !errors.Is(err, ErrConfig) {
			t.Errorf("NewFlows(%q, %q, %q): %v, want ErrConfig", c.secret, c.addr, c.tls, err)
		}
	}
}

// FuzzFlowToken: parsing never panics, and only tokens these flows made
// (Token of what they name) are accepted.
func FuzzFlowToken(f *testing.F) {
	fl := testFlows(f, "flow secret for tests", "192.0.2.1:5060", "")
	f.Add(fl.Token("198.51.100.7:40123", "UDP"))
	f.Add(fl.Token("[2001:db8::1]:5061", "TLS"))
	f.Add("MTk4LjUxLjEwMC43OjQwMTIzfFVEUA.AAAAAAAAAAAAAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		dest, tr, ok := fl.Parse(tok)
		if ok && fl.Token(dest, tr) != tok {
			t.Fatalf("accepted %q, which is not the token of %s %s", tok, dest, tr)
		}
	})
}
