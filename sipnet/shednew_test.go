package sipnet

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func invite(via, callID, toParams string) string {
	return "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP " + via + ";branch=z9hG4bK" + callID + "\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:bob@b.example>" + toParams + "\r\nFrom: <sip:alice@a.example>;tag=a1\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@" + via + ">\r\nContent-Length: 0\r\n\r\n"
}

func ack(via, callID, branch, toTag string) string {
	return "ACK sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP " + via + ";branch=z9hG4bK" + branch + "\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:bob@b.example>;tag=" + toTag + "\r\nFrom: <sip:alice@a.example>;tag=a1\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
}

// TestShedNew: while the hook says busy, a new INVITE over UDP is answered
// 503 on the reader (its handler never runs), with a To tag its Call-ID
// mints, the same for a retransmission; the ACK of that 503 is absorbed,
// an ACK with a made-up tag of the same form is not. Not busy, an INVITE
// is let in, and its retransmission is not shed once busy again (it
// belongs to sipgo's transaction); an INVITE in a dialog and a method
// without a hook are never shed, and the hook is asked only of new
// requests.
func TestShedNew(t *testing.T) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ringing := make(chan struct{})
	t.Cleanup(func() { close(ringing) }) // before Close, which waits for the handlers
	var invites, acks, optionsSeen, asked atomic.Int64
	var busy atomic.Bool
	var counts StatusCounts
	s.Handle(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
		invites.Add(1)
		// A provisional answer, and the transaction held open (sipgo ends
		// it when the handler returns), as a proxy's is while the callee
		// rings; a final answer would leave it retransmitting when the
		// stack closes.
		_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		<-ringing
	})
	s.Handle(sip.ACK, func(*sip.Request, sip.ServerTransaction) { acks.Add(1) })
	s.Handle(sip.OPTIONS, func(req *sip.Request, tx sip.ServerTransaction) {
		optionsSeen.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	s.ShedNew(sip.INVITE, func(in ShedInfo) time.Duration {
		asked.Add(1)
		if in.Backlog() < 0 {
			t.Errorf("backlog %v", in.Backlog())
		}
		if busy.Load() {
			return 9 * time.Second
		}
		return 0
	}, &counts)
	s.Serve()
	c := udpPeer(t, s.udp.LocalAddr().String())
	local := c.LocalAddr().String()

	busy.Store(true)
	first := invite(local, "n1", "")
	res := parseResponse(t, []byte(roundTrip(t, c, first)))
	tag, _ := res.To().Params.Get("tag")
	if res.StatusCode != 503 || res.GetHeader("Retry-After").Value() != "9" || !strings.HasPrefix(tag, shedTagPrefix) {
		t.Fatalf("busy: %d, Retry-After %v, To tag %q; want 503, 9, %s…", res.StatusCode, res.GetHeader("Retry-After"), tag, shedTagPrefix)
	}
	echoes(t, "busy", parseRequest(t, first), res)
	again := parseResponse(t, []byte(roundTrip(t, c, first)))
	if again2, _ := again.To().Params.Get("tag"); again.StatusCode != 503 || again2 != tag {
		t.Fatalf("retransmission: %d with tag %q, want 503 with %q", again.StatusCode, again2, tag)
	}
	// The ACK of the 503, then one whose tag has the form but not the
	// Call-ID's, then an OPTIONS: the handlers see them in order, so once
	// the OPTIONS is answered the first ACK would have been seen.
	for _, m := range []string{ack(local, "n1", "n1", tag), ack(local, "n1", "n1", shedTagPrefix+"0123456789abcdef")} {
		if _, err := c.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if st := parseResponse(t, []byte(roundTrip(t, c, options("UDP "+local)))); st.StatusCode != 200 {
		t.Fatalf("OPTIONS while busy: %d, want 200 (no hook)", st.StatusCode)
	}
	deadline := time.Now().Add(3 * time.Second)
	for acks.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if st := s.StatelessStats(); invites.Load() != 0 || acks.Load() != 1 || st.ShedAcks != 1 || st.Shed != 2 {
		t.Fatalf("handlers saw %d INVITEs and %d ACKs, stack shed %d and absorbed %d ACKs; want 0, 1 (the made-up tag), 2, 1",
			invites.Load(), acks.Load(), st.Shed, st.ShedAcks)
	}
	n503 := countOf(&counts, "INVITE", 503)
	if n503 != 2 {
		t.Fatalf("%d 503s to INVITE counted, want 2", n503)
	}

	// Let in, then busy: its retransmission goes to the transaction
	// (which answers it with its 180 again: RFC 3261 §17.2.1), not to a 503.
	busy.Store(false)
	second := invite(local, "n2", "")
	if r := parseResponse(t, []byte(roundTrip(t, c, second))); r.StatusCode != 180 {
		t.Fatalf("not busy: %d, want the handler's 180", r.StatusCode)
	}
	busy.Store(true)
	if r := parseResponse(t, []byte(roundTrip(t, c, second))); r.StatusCode != 180 {
		t.Fatalf("retransmission of an INVITE let in: %d, want the transaction's 180", r.StatusCode)
	}
	// In a dialog (a To tag and a Route), or a To the reader does not
	// read: never shed, and the hook is not asked.
	before := asked.Load()
	routed := strings.Replace(invite(local, "n3", ";tag=b7"), "Max-Forwards", "Route: <sip:"+s.udp.LocalAddr().String()+";lr>\r\nMax-Forwards", 1)
	quoted := invite(local, "n4", `;tag=b7;x="y"`)
	far := strings.Replace(invite(local, "n5", ";tag=b7"), "Max-Forwards", strings.Repeat("X-F: 1\r\n", maxRawHeaders)+"Max-Forwards", 1)
	for name, m := range map[string]string{"routed": routed, "quoted To": quoted, "To past the lines read": far} {
		if r := parseResponse(t, []byte(roundTrip(t, c, m))); r.StatusCode != 180 {
			t.Fatalf("%s re-INVITE while busy: %d, want the handler's 180", name, r.StatusCode)
		}
	}
	if asked.Load() != before {
		t.Fatalf("the hook was asked of a request in a dialog")
	}
	if invites.Load() != 4 {
		t.Fatalf("handler ran %d times, want 4", invites.Load())
	}
	// A To tag without a Route proves no dialog: shed like a new one,
	// keeping its tag.
	made := invite(local, "n6", ";tag=mine")
	r := parseResponse(t, []byte(roundTrip(t, c, made)))
	if tag, _ := r.To().Params.Get("tag"); r.StatusCode != 503 || tag != "mine" {
		t.Fatalf("tagged INVITE without a Route while busy: %d with tag %q, want 503 with its own", r.StatusCode, tag)
	}
	// A retransmission of one refused is refused again once not busy:
	// the same request gets the same answer.
	busy.Store(false)
	if r := parseResponse(t, []byte(roundTrip(t, c, first))); r.StatusCode != 503 || r.GetHeader("Retry-After") == nil {
		t.Fatalf("retransmission of a refused INVITE, not busy: %d, want 503 again", r.StatusCode)
	}
	if invites.Load() != 4 {
		t.Fatalf("handler ran %d times, want 4", invites.Load())
	}
}

// TestSocketBacklog: the kernel's count of a socket's unread datagrams,
// as a share of its buffer, grows as datagrams wait and is 0 once read.
func TestSocketBacklog(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if b := socketBacklog(c); b != 0 {
		t.Fatalf("backlog of an empty socket %v", b)
	}
	w := udpPeer(t, c.LocalAddr().String())
	msg := make([]byte, 1000)
	for range 20 {
		if _, err := w.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	var b float64
	for deadline := time.Now().Add(2 * time.Second); b == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		b = socketBacklog(c)
	}
	if b <= 0 || b > 1 {
		t.Fatalf("backlog with 20 KB waiting: %v", b)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2000)
	for range 20 {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if after := socketBacklog(c); after != 0 {
		t.Fatalf("backlog once read: %v (was %v)", after, b)
	}
}

// TestRecentKeys: a key is known for keysWindow at least, and the older
// keys go once a window holds keysLimit.
func TestRecentKeys(t *testing.T) {
	p := newRecentKeys()
	t0 := time.Unix(1000, 0)
	p.add(1, t0)
	p.add(2, t0.Add(keysWindow-time.Second))
	if !p.has(1) || !p.has(2) || p.has(3) {
		t.Fatal("keys of this window")
	}
	p.add(3, t0.Add(keysWindow)) // a new window: 1 and 2 are the old one
	if !p.has(1) || !p.has(3) {
		t.Fatal("keys of the last window are kept")
	}
	p.add(4, t0.Add(2*keysWindow)) // 1 and 2 go
	if p.has(1) || p.has(2) || !p.has(3) || !p.has(4) {
		t.Fatal("keys two windows old are forgotten")
	}
	q := newRecentKeys()
	for k := range uint64(keysLimit + 1) {
		q.add(k, t0)
	}
	if len(q.cur) != 1 || len(q.old) != keysLimit {
		t.Fatalf("full window: %d new, %d old", len(q.cur), len(q.old))
	}
}

// FuzzShedAck: whatever an ACK holds, it is absorbed only when its To tag
// is the one its Call-ID mints (checked against sipgo's reading of it).
func FuzzShedAck(f *testing.F) {
	st := newStateless()
	tag := string(st.mintTag(nil, []byte("c1")))
	f.Add([]byte(ack("192.0.2.1:5070", "c1", "b1", tag)))
	f.Add([]byte(ack("192.0.2.1:5070", "c1", "b1", shedTagPrefix+"00")))
	f.Add([]byte("ACK sip:a SIP/2.0\nt: <sip:b>;tag=" + tag + "\ni: c1\n\n"))
	f.Add([]byte("ACK sip:a SIP/2.0\r\n\r\n"))
	s := &Stack{stateless: st}
	st.shedNew["INVITE"] = shedHook{}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !s.shedAck(data) {
			return
		}
		m, err := sip.NewParser().ParseSIP(data)
		req, isReq := m.(*sip.Request)
		if err != nil || !isReq || req.To() == nil || req.CallID() == nil {
			return // sipgo would not have read it either
		}
		got, _ := req.To().Params.Get("tag")
		if want := string(st.mintTag(nil, []byte(req.CallID().Value()))); got != want {
			t.Fatalf("absorbed an ACK with tag %q for Call-ID %q (mints %q)", got, req.CallID().Value(), want)
		}
	})
}
