package proxy

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

// callSetup starts a proxy, a caller and a callee bound as
// sip:bob@b.example.
func callSetup(t *testing.T) (*testProxy, *ua, *ua) {
	t.Helper()
	tp := startProxy(t, Proxying, nil)
	caller, callee := newUA(t), newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@" + callee.addr(), Expires: time.Now().Add(time.Hour)})
	return tp, caller, callee
}

// answered makes a call from caller to bob (bound at callee) through tp,
// the callee answering 200 with To tag b, and returns the INVITE as the
// callee got it.
func answered(t *testing.T, tp *testProxy, caller, callee *ua) *sip.Request {
	t.Helper()
	caller.send(tp.addr, caller.request("INVITE", "sip:bob@b.example"))
	inv, ok := callee.recv(3 * time.Second).(*sip.Request)
	if !ok || inv.Method != sip.INVITE {
		t.Fatal("INVITE not forwarded")
	}
	ok200 := sip.NewResponseFromRequest(inv, 200, "OK", nil)
	ok200.To().Params.Add("tag", "b")
	callee.send(tp.addr, ok200.String())
	for { // past the 200 to the last part's BYE
		r := caller.status(3 * time.Second)
		if r.CSeq().MethodName == sip.INVITE {
			if r.StatusCode != 200 {
				t.Fatalf("caller got %d, want the 200", r.StatusCode)
			}
			break
		}
	}
	return inv
}

// next returns the callee's next request, answering a BYE 200 (or the
// proxy retransmits it into the next part of the test).
func next(t *testing.T, tp *testProxy, callee *ua) *sip.Request {
	t.Helper()
	r, ok := callee.recv(3 * time.Second).(*sip.Request)
	if !ok {
		t.Fatal("callee got a response")
	}
	if r.Method == sip.BYE {
		callee.send(tp.addr, sip.NewResponseFromRequest(r, 200, "OK", nil).String())
	}
	return r
}

// inDialog is a request of inv's dialog from the caller to the callee.
func inDialog(caller, callee *ua, inv *sip.Request, method string, cseq int) string {
	return caller.request(method, "sip:bob@"+callee.addr(), "To: <sip:bob@b.example>;tag=b",
		"Call-ID: "+inv.CallID().Value(), "CSeq: "+strconv.Itoa(cseq)+" "+method)
}

// TestByeWaitsForAck: a BYE that reaches the proxy before the ACK of the
// call's 200 (the caller sent them in the other order; a starved proxy
// runs them in either) reaches the callee after that ACK; an ACK of
// another call does not let it go; without any ACK the BYE goes on after
// ackHold. The callee sees the dialog's requests in their order.
func TestByeWaitsForAck(t *testing.T) {
	tp, caller, callee := callSetup(t)

	tp.p.acks.hold.Store(int64(time.Minute)) // the order below is not up to the clock
	inv := answered(t, tp, caller, callee)
	caller.send(tp.addr, inDialog(caller, callee, inv, "BYE", 2))
	waitFor(t, "the BYE held", func() bool { return tp.p.acks.held.Load() == 1 })
	// An ACK of another call does not let it go: a BYE let go with it
	// would reach the callee before the ACK sent after.
	caller.send(tp.addr, caller.request("ACK", "sip:bob@"+callee.addr(), "To: <sip:bob@b.example>;tag=b", "Call-ID: another-call", "CSeq: 1 ACK"))
	if r := next(t, tp, callee); r.Method != sip.ACK || r.CallID().Value() != "another-call" {
		t.Fatalf("callee got %s %s, want the other call's ACK", r.Method, r.CallID().Value())
	}
	time.Sleep(50 * time.Millisecond)
	caller.send(tp.addr, inDialog(caller, callee, inv, "ACK", 1))
	var got []string
	for len(got) < 2 {
		r := next(t, tp, callee)
		got = append(got, string(r.Method)+" "+r.CallID().Value())
	}
	if want := []string{"ACK " + inv.CallID().Value(), "BYE " + inv.CallID().Value()}; !slices.Equal(got, want) {
		t.Fatalf("callee got %q, want %q", got, want)
	}
	if st := tp.p.Stats(); st.AckHeld != 1 || st.AckLate != 0 {
		t.Fatalf("held %d, late %d: want the BYE held once, released by its ACK", st.AckHeld, st.AckLate)
	}

	// No ACK at all: the BYE still goes on, late.
	tp.p.acks.hold.Store(int64(200 * time.Millisecond))
	inv = answered(t, tp, caller, callee)
	caller.send(tp.addr, inDialog(caller, callee, inv, "BYE", 2))
	if r := next(t, tp, callee); r.Method != sip.BYE || r.CallID().Value() != inv.CallID().Value() {
		t.Fatalf("callee got %s %s, want the BYE sent without an ACK", r.Method, r.CallID().Value())
	}
	if st := tp.p.Stats(); st.AckHeld != 2 || st.AckLate != 1 {
		t.Fatalf("held %d, late %d: want the second BYE held and sent on late", st.AckHeld, st.AckLate)
	}
	// Its 2xx is given up on: the dialog's next request is not held.
	caller.send(tp.addr, inDialog(caller, callee, inv, "INFO", 3))
	info := next(t, tp, callee)
	if info.Method != sip.INFO {
		t.Fatalf("callee got %s, want the INFO", info.Method)
	}
	callee.send(tp.addr, sip.NewResponseFromRequest(info, 200, "OK", nil).String())
	if st := tp.p.Stats(); st.AckHeld != 2 {
		t.Fatalf("held %d: a 2xx given up on held the dialog's next request", st.AckHeld)
	}

	// A BYE after the ACK, as usual, is not held; nor is anything once
	// the 2xx are acknowledged.
	inv = answered(t, tp, caller, callee)
	caller.send(tp.addr, inDialog(caller, callee, inv, "ACK", 1))
	if r := next(t, tp, callee); r.Method != sip.ACK {
		t.Fatalf("callee got %s, want the ACK", r.Method)
	}
	waitFor(t, "the ACK's handler done", func() bool { return tp.p.acks.pending() == 0 })
	caller.send(tp.addr, inDialog(caller, callee, inv, "BYE", 2))
	if r := next(t, tp, callee); r.Method != sip.BYE || r.CallID().Value() != inv.CallID().Value() {
		t.Fatalf("callee got %s %s, want the BYE", r.Method, r.CallID().Value())
	}
	if st := tp.p.Stats(); st.AckHeld != 2 || tp.p.acks.pending() != 0 {
		t.Fatalf("held %d, %d 2xx pending: want nothing held after the ACK, and nothing pending", st.AckHeld, tp.p.acks.pending())
	}
}

// waitFor polls cond until it holds, or fails the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// TestAckGateWindows: a 2xx never ACKed is forgotten after two windows;
// the entries of one window are bounded.
func TestAckGateWindows(t *testing.T) {
	g := newAckGate()
	t0 := time.Now()
	g.expect("a", t0)
	g.expect("b", t0.Add(ackWindow)) // a moves to the older window
	if g.pending() != 2 {
		t.Fatalf("%d pending, want 2", g.pending())
	}
	g.expect("c", t0.Add(2*ackWindow)) // a gone, b older
	if g.pending() != 2 || g.prev["b"] == nil || g.cur["c"] == nil {
		t.Fatalf("cur %v prev %v", g.cur, g.prev)
	}
	g.acked("b")
	g.expect("d", t0.Add(5*ackWindow)) // long idle: both windows gone
	if g.pending() != 1 {
		t.Fatalf("%d pending after idle, want 1", g.pending())
	}
	for i := 0; i < ackPendingMax+10; i++ {
		g.expect("x"+time.Duration(i).String(), t0.Add(5*ackWindow))
	}
	if len(g.cur) != ackPendingMax {
		t.Fatalf("%d in a window, want at most %d", len(g.cur), ackPendingMax)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.wait(ctx, "d") // ends with its context
	g.wait(context.Background(), "never expected")
	if g.held.Load() != 1 {
		t.Fatalf("held %d, want 1 (only d was awaited)", g.held.Load())
	}
	// A wait that runs out forgets its 2xx: one wait per 2xx at most.
	g.hold.Store(int64(time.Millisecond))
	g.wait(context.Background(), "d")
	g.wait(context.Background(), "d")
	if g.held.Load() != 2 || g.late.Load() != 1 {
		t.Fatalf("held %d, late %d: want d waited for once more, late, then not", g.held.Load(), g.late.Load())
	}
	long := string(make([]byte, ackMaxCallID+1))
	g.expect(long, t0.Add(5*ackWindow))
	if g.cur[long] != nil {
		t.Fatal("a Call-ID longer than ackMaxCallID kept")
	}
}

// TestAckCopiesKeepTheirBranch: the ACK is forwarded without a
// transaction, so each copy the caller sends (one per retransmission of
// the 2xx) must reach the callee as the same request: the same branch in
// our Via (RFC 3261 §16.11). Another ACK gets another branch, and each
// is one this proxy recognises as its own.
func TestAckCopiesKeepTheirBranch(t *testing.T) {
	tp, caller, callee := callSetup(t)
	inv := answered(t, tp, caller, callee)
	ack := inDialog(caller, callee, inv, "ACK", 1)
	topBranch := func(r *sip.Request) string {
		b, _ := r.Via().Params.Get("branch")
		return b
	}
	// A copy that comes while sipgo still holds the last one's
	// transaction (until its handler has returned) is absorbed, as a
	// retransmission; a caller's copies come with the 2xx's, 0.5 s and
	// more apart. So a copy is sent again until it is forwarded.
	forwarded := func(msg string) *sip.Request {
		t.Helper()
		buf := make([]byte, 65535)
		for try := 0; try < 10; try++ {
			caller.send(tp.addr, msg)
			_ = callee.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if n, _, err := callee.conn.ReadFromUDP(buf); err == nil {
				m, err := sip.ParseMessage(buf[:n])
				if r, ok := m.(*sip.Request); err == nil && ok && r.Method == sip.ACK {
					return r
				}
				t.Fatalf("callee got %v, want an ACK", m)
			}
		}
		t.Fatal("ACK not forwarded")
		return nil
	}
	var got []string
	for _, msg := range []string{ack, ack, strings.Replace(ack, "branch=z9hG4bK", "branch=z9hG4bKother", 1)} {
		r := forwarded(msg)
		if !tp.p.ourBranch(topBranch(r)) {
			t.Fatalf("branch %q is not one the proxy recognises", topBranch(r))
		}
		got = append(got, topBranch(r))
	}
	if got[0] != got[1] || got[1] == got[2] {
		t.Fatalf("branches %q: want the two copies alike and the other ACK's different", got)
	}
	// An RFC 2543 ACK (no magic cookie) is named by its fields.
	old := strings.Replace(ack, "branch=z9hG4bK", "branch=2543", 1)
	var olds []string
	for i := 0; i < 2; i++ {
		olds = append(olds, topBranch(forwarded(old)))
	}
	if olds[0] != olds[1] || olds[0] == got[0] {
		t.Fatalf("RFC 2543 copies: branches %q (the first ACK's %q)", olds, got[0])
	}
}
