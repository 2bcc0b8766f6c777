package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

// TestMaxInFlight: with MaxInFlight requests pending on a UA that never
// answers, the next one gets 503 with Retry-After at once and is never
// sent on; once the pending one ends, requests are routed again.
func TestMaxInFlight(t *testing.T) {
	tp := startProxy(t, Proxying, func(c *Config) { c.MaxInFlight, c.RetryAfter = 1, 7*time.Second })
	silent := newUA(t) // alice's Contact: reads nothing, answers nothing
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + silent.addr(), Expires: time.Now().Add(time.Hour)})
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
	if st := tp.p.Stats(); st.Shed != 1 || st.Forwarded != 1 {
		t.Fatalf("stats: shed %d forwarded %d, want 1 and 1", st.Shed, st.Forwarded)
	}
	// alice answers the pending request (its retransmissions included):
	// the slot is free again.
	got := silent.recv(3 * time.Second)
	silent.send(tp.addr, okTo(t, got))
	if r := u.statusOf("pending", 3*time.Second); r.StatusCode != 200 {
		t.Fatalf("pending request: %d", r.StatusCode)
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
