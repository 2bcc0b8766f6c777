package proxy

import (
	"context"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

// TestMaxInFlight: with MaxInFlight requests pending on a UA that never
// answers, the next one gets 503 with Retry-After at once and is never
// sent on; once the pending one ends, requests are routed again.
func TestMaxInFlight(t *testing.T) {
	tp := startProxy(t, Proxying, func(c *Config) {
		c.MaxInFlight, c.RetryAfter = 1, 7*time.Second
		c.TrustedNetworks = []*net.IPNet{} // loopback senders are not exempt here
	})
	silent := newUA(t) // alice's Contact: reads nothing, answers nothing
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + silent.addr(), Expires: time.Now().Add(time.Hour), Received: silent.addr()})
	u := newUA(t)
	first := u.request("MESSAGE", "sip:alice@a.example", "Call-ID: pending")
	u.send(tp.addr, first)
	if _, ok := silent.recv(3 * time.Second).(*sip.Request); !ok {
		t.Fatal("the first request was not sent on")
	}
	u.send(tp.addr, u.request("MESSAGE", "sip:alice@a.example", "Call-ID: shed"))
	r := u.statusOf("shed", 3*time.Second)
	if r.StatusCode != 503 || r.GetHeader("Retry-After") == nil || r.GetHeader("Retry-After").Value() != "7" {
		t.Fatalf("second request: %d %s, Retry-After %v; want 503 with Retry-After: 7", r.StatusCode, r.Reason, r.GetHeader("Retry-After"))
	}
	// The first request is counted once its transaction is made, a moment
	// after alice has it (CI under load read the stats first).
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := tp.p.Stats()
		if st.Shed == 1 && st.Forwarded == 1 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("stats: shed %d forwarded %d, want 1 and 1", st.Shed, st.Forwarded)
		}
	}
	// alice answers the pending request (its retransmissions included):
	// the slot is free again.
	got := silent.recv(3 * time.Second)
	silent.send(tp.addr, okTo(t, got))
	if r := u.statusOf("pending", 3*time.Second); r.StatusCode != 200 {
		t.Fatalf("pending request: %d", r.StatusCode)
	}
	// The slot is given back once the answer is relayed, a moment after
	// the caller has it (CI under load once sent the next request first).
	for end := time.Now().Add(3 * time.Second); tp.p.Stats().InFlight != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the pending request's slot was not given back: %d in flight", tp.p.Stats().InFlight)
		}
	}
	u.send(tp.addr, u.request("MESSAGE", "sip:alice@a.example", "Call-ID: after"))
	got = silent.recv(3 * time.Second)
	silent.send(tp.addr, okTo(t, got))
	if r := u.statusOf("after", 3*time.Second); r.StatusCode != 200 {
		t.Fatalf("request after the pending one ended: %d %s", r.StatusCode, r.Reason)
	}
}

// okTo is a 200 for the request m.
func okTo(t *testing.T, m sip.Message) string {
	t.Helper()
	req, ok := m.(*sip.Request)
	if !ok {
		t.Fatalf("want a request, got %v", m)
	}
	return sip.NewResponseFromRequest(req, 200, "OK", nil).String()
}

// TestInflightShares: one source, or one target, gets at most its share
// of MaxInFlight; others still get in; trusted senders are never shed;
// released slots are free again.
func TestInflightShares(t *testing.T) {
	f := newInflight(64) // share 16
	req := func(source, user string) *sip.Request {
		r := sip.NewRequest(sip.MESSAGE, sip.Uri{User: user, Host: "a.example"})
		r.SetSource(source)
		return r
	}
	type slot struct{ s, t string }
	var held []slot
	take := func(r *sip.Request, trusted bool) bool {
		s, tg, ok := f.acquire(r, trusted)
		if ok {
			held = append(held, slot{s, tg})
		}
		return ok
	}
	for i := range 16 {
		if !take(req("192.0.2.1:5060", "alice"), false) {
			t.Fatalf("request %d refused within the share", i)
		}
	}
	if take(req("192.0.2.1:5061", "alice"), false) {
		t.Fatal("17th request of one source to one target admitted")
	}
	if take(req("192.0.2.2:5060", "alice"), false) {
		t.Fatal("another source got past the target's share")
	}
	if take(req("192.0.2.1:5060", "bob"), false) {
		t.Fatal("the source got past its share with another target")
	}
	if !take(req("192.0.2.2:5060", "bob"), false) {
		t.Fatal("another source to another target refused")
	}
	if !take(req("10.0.0.1:5060", "alice"), true) {
		t.Fatal("a trusted sender was shed")
	}
	for _, h := range held {
		f.release(h.s, h.t)
	}
	if f.all != 0 || len(f.bySource) != 0 || len(f.byTarget) != 0 {
		t.Fatalf("after release: %d in flight, %v, %v", f.all, f.bySource, f.byTarget)
	}
	if !take(req("192.0.2.1:5060", "alice"), false) {
		t.Fatal("refused after the slots were released")
	}
}

// TestLookupUnavailable: when the location service cannot answer (this
// node has not joined its overlay), a request for one of the domain's
// AORs gets 503 with Retry-After, not a "no such user".
func TestLookupUnavailable(t *testing.T) {
	tp := startProxy(t, Proxying, func(c *Config) { c.RetryAfter = 7 * time.Second })
	tp.loc.mu.Lock()
	tp.loc.err = lsp.ErrNotJoined
	tp.loc.mu.Unlock()
	u := newUA(t)
	u.send(tp.addr, u.request("MESSAGE", "sip:alice@a.example", "Call-ID: not-joined"))
	r := u.statusOf("not-joined", 3*time.Second)
	if r.StatusCode != 503 || r.GetHeader("Retry-After") == nil || r.GetHeader("Retry-After").Value() != "7" {
		t.Fatalf("%d %s, Retry-After %v; want 503 with Retry-After: 7", r.StatusCode, r.Reason, r.GetHeader("Retry-After"))
	}
}

// TestShedShare: no INVITE is shed below the threshold, a share rising
// in a straight line above it, all of them from halfway to a full buffer;
// a threshold of 0 or less sheds nothing, one of 1 everything once full.
func TestShedShare(t *testing.T) {
	for _, tc := range []struct{ backlog, from, want float64 }{
		{0, 0.5, 0}, {0.49, 0.5, 0}, {0.5, 0.5, 0}, {0.625, 0.5, 0.5}, {0.75, 0.5, 1}, {1, 0.5, 1},
		{0.2, 0.1, 0.2222222222222222}, {0.9, -1, 0}, {1, 0, 0}, {1, 1, 1}, {0.99, 1, 0},
	} {
		if got := shedShare(tc.backlog, tc.from); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("shedShare(%v, %v) = %v, want %v", tc.backlog, tc.from, got, tc.want)
		}
	}
}

// TestSlowLookupOneTrying: an INVITE whose lookup takes longer than
// sipgo's 200 ms provisional timer gets one 100 Trying, the proxy's own,
// sent before the routing decision rewrites the request (its Route naming
// the proxy popped). Before, the transaction's timer sent
// a 100 from the request while the handler rewrote it (the race detector
// caught it under load) and the proxy sent a second one after the lookup.
func TestSlowLookupOneTrying(t *testing.T) {
	tp := startProxy(t, Proxying, nil)
	callee := newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + callee.addr(), Expires: time.Now().Add(time.Hour), Received: callee.addr()})
	tp.loc.mu.Lock()
	tp.loc.delay = 600 * time.Millisecond
	tp.loc.mu.Unlock()
	caller := newUA(t)
	caller.send(tp.addr, caller.request("INVITE", "sip:alice@a.example", "Call-ID: slow-lookup", "Route: <sip:"+tp.addr+";lr>"))
	inv, ok := callee.recv(5 * time.Second).(*sip.Request)
	if !ok || inv.Method != sip.INVITE {
		t.Fatal("INVITE not forwarded")
	}
	for _, r := range inv.GetHeaders("Route") {
		if strings.Contains(r.Value(), tp.addr) {
			t.Fatalf("forwarded with the proxy's own Route: %s", r.Value())
		}
	}
	// Everything the caller got until well after the INVITE went on: a
	// second 100 would have been sent by now (the proxy's, after the
	// lookup; the timer's, 200 ms in).
	var trying int
	buf := make([]byte, 65535)
	_ = caller.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		n, _, err := caller.conn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		m, err := sip.ParseMessage(buf[:n])
		if err != nil {
			t.Fatalf("unparsable message: %v\n%s", err, buf[:n])
		}
		r, ok := m.(*sip.Response)
		if !ok {
			t.Fatalf("caller got a request: %v", m)
		}
		if r.StatusCode != 100 {
			t.Fatalf("caller got %d %s before the callee answered", r.StatusCode, r.Reason)
		}
		trying++
	}
	if trying != 1 {
		t.Fatalf("caller got %d 100 Trying, want 1", trying)
	}
}
