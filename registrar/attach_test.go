package registrar

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/lsnode/lsnode/sipnet"
)

// attached serves r on a stack on loopback, closed with the test.
func attached(t *testing.T, r *Registrar) *sipnet.Stack {
	t.Helper()
	s, err := sipnet.Listen(sipnet.Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r.Attach(s)
	s.Serve()
	return s
}

// TestAttach: attached to a stack on loopback, the registrar answers
// REGISTER over UDP and TCP and any other method with 405 and Allow:
// REGISTER, and counts its responses.
func TestAttach(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	s := attached(t, r)
	send := func(network, method string) *sip.Response {
		t.Helper()
		c, err := net.Dial(network, s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		via := strings.ToUpper(network) + " " + c.LocalAddr().String()
		msg := method + " sip:a.example SIP/2.0\r\nVia: SIP/2.0/" + via + ";branch=z9hG4bK" + network + method + "\r\n" +
			"Max-Forwards: 70\r\nTo: <sip:alice@a.example>\r\nFrom: <sip:alice@a.example>;tag=1\r\n" +
			"Call-ID: attach-" + network + "\r\nCSeq: 1 " + method + "\r\nContact: <sip:alice@" + c.LocalAddr().String() + ">\r\n" +
			"Content-Length: 0\r\n\r\n"
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(c)
		var raw strings.Builder
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("%s %s: %v after %q", network, method, err, raw.String())
			}
			raw.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		m, err := sip.ParseMessage([]byte(raw.String()))
		if err != nil {
			t.Fatal(err)
		}
		return m.(*sip.Response)
	}
	if res := send("udp", "REGISTER"); res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 1 {
		t.Fatalf("REGISTER over UDP: %s", res)
	}
	if res := send("tcp", "REGISTER"); res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 2 {
		t.Fatalf("REGISTER over TCP: %s", res)
	}
	if res := send("udp", "MESSAGE"); res.StatusCode != 405 || res.GetHeader("Allow") == nil || res.GetHeader("Allow").Value() != "REGISTER" {
		t.Fatalf("MESSAGE: %s", res)
	}
	got := map[string]int64{}
	r.Responses().Each(func(m string, code int, n int64) { got[m+" "+string(rune('0'+code/100))] += n })
	if got["REGISTER 2"] != 2 || got["MESSAGE 4"] != 1 {
		t.Fatalf("responses counted %v", got)
	}
	// At MaxInFlight a REGISTER over UDP is refused on the reader, from its
	// bytes, and counted like the others; over TCP by Handle.
	r.inflight.Store(int64(r.cfg.MaxInFlight))
	for _, network := range []string{"udp", "tcp"} {
		if res := send(network, "REGISTER"); res.StatusCode != 503 || res.GetHeader("Retry-After") == nil || res.GetHeader("Retry-After").Value() != "5" {
			t.Fatalf("REGISTER over %s at MaxInFlight: %s", network, res)
		}
	}
	if shed := s.StatelessStats().Shed; shed != 1 {
		t.Fatalf("%d REGISTERs shed on the reader, want 1 (the UDP one)", shed)
	}
	got = map[string]int64{}
	r.Responses().Each(func(m string, code int, n int64) { got[m+" "+strconv.Itoa(code)] += n })
	if got["REGISTER 503"] != 2 {
		t.Fatalf("responses counted %v", got)
	}
	// The REGISTERs the stack holds count too, handled or not yet.
	r.inflight.Store(0)
	if r.overloaded(sipnet.ShedInfo{InHand: 2*r.cfg.MaxInFlight - 1}) != 0 || r.overloaded(sipnet.ShedInfo{InHand: 2 * r.cfg.MaxInFlight}) != r.cfg.RetryAfter {
		t.Fatal("overloaded does not shed at MaxInFlight requests in hand")
	}
	// A MaxInFlight beyond half the stack's limit sheds before the limit.
	big := newTestRegistrar(t, false, nil)
	big.cfg.MaxInFlight = sipnet.StatelessLimit
	if big.overloaded(sipnet.ShedInfo{InHand: sipnet.StatelessLimit - 1}) != big.cfg.RetryAfter {
		t.Fatal("with MaxInFlight at the stack's limit, nothing is shed before the stack drops")
	}
}

// TestAdmittedOnReader: over UDP the reader's shed hook is a REGISTER's
// admission. With digest on and half of MaxInFlight waiting, a REGISTER
// without credentials (it would be challenged) is refused there, from
// its bytes, and one with credentials is let in; a REGISTER let in is
// not refused for load again once parsed (Handle's own bound is for TCP
// and TLS), even if MaxInFlight are waiting by then.
func TestAdmittedOnReader(t *testing.T) {
	r := newTestRegistrar(t, true, nil)
	half, full := int64(r.cfg.MaxInFlight/2), int64(r.cfg.MaxInFlight)
	advance := fakeClock(r)
	authz := sipnet.ShedInfo{Request: []byte("REGISTER sip:a.example SIP/2.0\r\nAuthorization: Digest username=\"alice\"\r\n\r\n")}
	for _, c := range []struct {
		inflight int64
		in       sipnet.ShedInfo
		shed     bool
	}{

		{half - 1, sipnet.ShedInfo{}, false},
		{half, sipnet.ShedInfo{}, true},
		{half, authz, false},
		{full - 1, authz, false},
		{full, authz, true},
	} {
		r.inflight.Store(c.inflight)
		r.queueStands(c.inflight) // this many have waited since now...
		advance(standingQueue)    // ...for long enough: a queue that stands
		if got := r.overloaded(c.in) > 0; got != c.shed {
			t.Errorf("%d waiting, %+v: shed %v, want %v", c.inflight, c.in, got, c.shed)
		}
	}
	// An open registrar (nothing to challenge): every REGISTER is new
	// work, shed once the queue stands, credentials or not, until fewer
	// than a quarter of MaxInFlight wait.
	open := newTestRegistrar(t, false, nil)
	openAdvance := fakeClock(open)
	quarter := int64(open.cfg.MaxInFlight / 4)
	openShed := func(n int64, in sipnet.ShedInfo) bool {
		open.inflight.Store(n)
		return open.overloaded(in) > 0
	}
	if openShed(half, sipnet.ShedInfo{}) {
		t.Error("an open registrar sheds as half of MaxInFlight begin to wait")
	}
	openAdvance(standingQueue)
	if !openShed(half, sipnet.ShedInfo{}) || !openShed(half, authz) {
		t.Error("an open registrar does not shed once half of MaxInFlight have waited for standingQueue")
	}
	if !openShed(quarter, sipnet.ShedInfo{}) {
		t.Error("an open registrar stopped shedding before its queue drained to a quarter of MaxInFlight")
	}
	if openShed(quarter-1, sipnet.ShedInfo{}) || openShed(half, sipnet.ShedInfo{}) {
		t.Error("an open registrar still sheds after its queue drained (or at once when it is half full again)")
	}

	// Over a stack: the hook sees whether the datagram carries credentials.
	s := attached(t, r)
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(callID, extra string) *sip.Response {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		msg := "REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=z9hG4bK" + callID + ";rport\r\n" +
			"Max-Forwards: 70\r\nTo: <sip:alice@a.example>\r\nFrom: <sip:alice@a.example>;tag=1\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@" + c.LocalAddr().String() + ">\r\n" + extra +
			"Expires: 600\r\nUser-Agent: lsnode-test/1.0 (a 503 is never longer than its request)\r\nContent-Length: 0\r\n\r\n"
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%v (%+v)", err, s.StatelessStats())
		}
		m, err := sip.ParseMessage(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return m.(*sip.Response)
	}
	r.inflight.Store(half)
	r.queueStands(half)
	advance(standingQueue)
	if res := send("adm1", ""); res.StatusCode != 503 || s.StatelessStats().Shed != 1 {
		t.Fatalf("without credentials at half of MaxInFlight: %d, %d shed on the reader; want 503, 1", res.StatusCode, s.StatelessStats().Shed)
	}
	// A proxy's credentials are not the registrar's.
	if res := send("adm1p", `Proxy-Authorization: Digest username="alice", realm="a.example", nonce="AAAA", uri="sip:a.example", response="00000000000000000000000000000000"`+"\r\n"); res.StatusCode != 503 || s.StatelessStats().Shed != 2 {
		t.Fatalf("with Proxy-Authorization alone at half of MaxInFlight: %d, %d shed on the reader; want 503, 2", res.StatusCode, s.StatelessStats().Shed)
	}
	made := `Authorization: Digest username="alice", realm="a.example", nonce="AAAA", uri="sip:a.example", response="00000000000000000000000000000000", algorithm=MD5` + "\r\n"
	// Let in on the reader, it is checked (a made-up nonce is challenged
	// anew, which Handle still refuses as a new challenge: 503, but after
	// the parse, so not counted as shed on the reader).
	if res := send("adm2", made); res.StatusCode != 503 || s.StatelessStats().Shed != 2 {
		t.Fatalf("with credentials at half of MaxInFlight: %d, %d shed on the reader; want 503 from Handle, 2", res.StatusCode, s.StatelessStats().Shed)
	}
	// Admitted, a REGISTER is served however many wait by the time its
	// handler runs; not admitted (TCP, TLS), it is refused at MaxInFlight.
	req := register(t, "sip:alice@a.example", "adm3", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	r.inflight.Store(0)
	chal := do(r, req)
	want(t, chal, 401)
	answered := authorize(t, req, chal, "MD5", "alice", "secret-a")
	r.inflight.Store(2*full - 1) // Handle adds its own: twice MaxInFlight
	want(t, r.handle(context.Background(), answered, "192.0.2.9:40000", false), 503)
	want(t, r.handle(context.Background(), answered, "192.0.2.9:40000", true), 200)
	// Past twice MaxInFlight (readers admitting at once, TCP sharing the
	// count), even an admitted REGISTER is refused.
	r.inflight.Store(2 * full)
	want(t, r.handle(context.Background(), answered, "192.0.2.9:40000", true), 503)
}

// fakeClock gives r's queueStands a clock that stands still unless
// moved by the function it returns.
func fakeClock(r *Registrar) (advance func(time.Duration)) {
	var off atomic.Int64
	base := time.Now()
	r.now = func() time.Time { return base.Add(time.Duration(off.Load())) }
	return func(d time.Duration) { off.Add(int64(d)) }
}

// TestChallengesPauseOnStandingQueue: with digest on, a REGISTER that
// would be challenged is refused 503 only once half of MaxInFlight have
// been waiting for standingQueue: a burst that drains sooner is served
// (the register bench lost 351 of 30000 digest-on registrations at 6000/s
// to one such burst), a dip below half starts the wait again, and one
// with credentials is let in throughout. Once it stood, the queue stands
// until fewer than a quarter wait.
func TestChallengesPauseOnStandingQueue(t *testing.T) {
	r := newTestRegistrar(t, true, nil)
	advance := fakeClock(r)
	half := int64(r.cfg.MaxInFlight / 2)
	authz := sipnet.ShedInfo{Request: []byte("REGISTER sip:a.example SIP/2.0\r\nAuthorization: Digest username=\"alice\"\r\n\r\n")}
	shed := func(n int64, in sipnet.ShedInfo) bool {
		r.inflight.Store(n)
		return r.overloaded(in) > 0
	}
	if shed(half, sipnet.ShedInfo{}) {
		t.Fatal("shed as half of MaxInFlight began to wait")
	}
	advance(standingQueue - time.Millisecond)
	if shed(half+100, sipnet.ShedInfo{}) {
		t.Fatal("shed before the queue stood for standingQueue")
	}
	if shed(half-1, sipnet.ShedInfo{}) {
		t.Fatal("shed below half")
	}
	advance(time.Millisecond) // standingQueue since it began, but it dipped
	if shed(half, sipnet.ShedInfo{}) {
		t.Fatal("a dip below half did not start the wait again")
	}
	advance(standingQueue)
	if !shed(half, sipnet.ShedInfo{}) {
		t.Fatal("not shed with half of MaxInFlight waiting for standingQueue")
	}
	if shed(half, authz) {
		t.Fatal("a REGISTER with credentials shed while challenges pause")
	}
	// Handle's own check: a REGISTER that gets as far as its 401 is
	// refused instead while the queue stands (inflight counts its slot).
	req := register(t, "sip:alice@a.example", "stand1", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	r.inflight.Store(half)
	want(t, do(r, req), 503)
	r.inflight.Store(0)
	want(t, do(r, req), 401)

	// A count that sheds anyway (MaxInFlight waiting) is sampled all the
	// same: falling to half after it, the queue has stood all along.
	shed(int64(r.cfg.MaxInFlight), sipnet.ShedInfo{})
	advance(standingQueue)
	if !shed(half, sipnet.ShedInfo{}) {
		t.Fatal("the queue at MaxInFlight was not counted as standing")
	}
	// Once it stood, the queue stands until it drains: a REGISTER leaving
	// with fewer than half waiting does not end it, one leaving with fewer
	// than a quarter does, as one arriving does.
	quarter := int64(r.cfg.MaxInFlight / 4)
	r.inflight.Store(half)
	r.release()
	if !shed(half-1, sipnet.ShedInfo{}) {
		t.Fatal("a standing queue ended above a quarter of MaxInFlight")
	}
	r.inflight.Store(quarter)
	r.release()
	if shed(half, sipnet.ShedInfo{}) {
		t.Fatal("a REGISTER leaving below a quarter did not end the standing queue")
	}
	advance(standingQueue)
	if !shed(half, sipnet.ShedInfo{}) {
		t.Fatal("half waiting for standingQueue again did not stand")
	}
	shed(quarter-1, sipnet.ShedInfo{}) // an arriving REGISTER's sample ends it too
	if shed(half, sipnet.ShedInfo{}) {
		t.Fatal("a REGISTER arriving below a quarter did not end the standing queue")
	}
	// A REGISTER taking its slot in Handle (over TCP or TLS, no reader
	// before it) samples the count too, credentials or not: the queue
	// has stood since an authenticated one found half waiting.
	r.inflight.Store(0)
	req2 := register(t, "sip:alice@a.example", "stand2", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	answered := authorize(t, req2, do(r, req2), "MD5", "alice", "secret-a")
	r.inflight.Store(half)
	want(t, do(r, answered), 200)
	advance(standingQueue)
	if !shed(half, sipnet.ShedInfo{}) {
		t.Fatal("a REGISTER taking its slot at half did not start the wait")
	}
}

// TestAuthorizeProxy: the proxy's check of a request for relaying: 407
// with a challenge first, then the retry with Proxy-Authorization of the
// user in From passes once; another From, or the same credentials again,
// do not; a registrar without users refuses all.
func TestAuthorizeProxy(t *testing.T) {
	r, err := New(Config{Domain: "a.example", Mode: Local, Logger: quiet(), Algorithms: []string{"MD5"},
		Users: &UsersFile{Realm: "a.example", Users: []UserHash{
			NewUserHash("alice", "sip:alice@a.example", "a.example", "secret-a")}},
		NonceSecret: []byte("0123456789abcdef0123")})
	if err != nil {
		t.Fatal(err)
	}
	message := func(from string, cseq int, authz string) *sip.Request {
		raw := "MESSAGE sip:dave@d.example SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKap" + string(rune('0'+cseq)) + "\r\n" +
			"Max-Forwards: 70\r\nTo: <sip:dave@d.example>\r\nFrom: <" + from + ">;tag=1\r\nCall-ID: relay-1\r\n" +
			"CSeq: " + string(rune('0'+cseq)) + " MESSAGE\r\n"
		if authz != "" {
			raw += "Proxy-Authorization: " + authz + "\r\n"
		}
		m, err := sip.ParseMessage([]byte(raw + "Content-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		req.SetSource("198.51.100.7:5060")
		return req
	}
	res := r.AuthorizeProxy(message("sip:alice@a.example", 1, ""))
	if res == nil || res.StatusCode != 407 || res.GetHeader("Proxy-Authenticate") == nil {
		t.Fatalf("without credentials: %v, want 407 with a challenge", res)
	}
	chal, err := digest.ParseChallenge(res.GetHeader("Proxy-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "MESSAGE", URI: "sip:dave@d.example",
		Username: "alice", Password: "secret-a", Count: 1, Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	if res := r.AuthorizeProxy(message("sip:alice@a.example", 2, cred.String())); res != nil {
		t.Fatalf("alice's retry with credentials: %d %s, want nil", res.StatusCode, res.Reason)
	}
	if res := r.AuthorizeProxy(message("sip:alice@a.example", 2, cred.String())); res == nil || res.StatusCode != 407 {
		t.Fatalf("the same credentials replayed: %v, want 407", res)
	}
	if res := r.AuthorizeProxy(message("sip:mallory@c.example", 2, cred.String())); res == nil || res.StatusCode != 403 && res.StatusCode != 407 {
		t.Fatalf("alice's credentials in mallory's request: %v, want 403/407", res)
	}
	open := newTestRegistrar(t, false, nil)
	if res := open.AuthorizeProxy(message("sip:alice@a.example", 1, "")); res == nil || res.StatusCode != 403 {
		t.Fatalf("registrar without users: %v, want 403", res)
	}
}

// TestOpenDrainsEveryTransport: while an open registrar's queue stands,
// a REGISTER not admitted on a UDP reader (TCP, TLS, WS) is refused 503
// in Handle as the reader refuses one over UDP, so one transport cannot
// hold the drain open against another; below a quarter waiting it is
// served again.
func TestOpenDrainsEveryTransport(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	advance := fakeClock(r)
	half, quarter := int64(r.cfg.MaxInFlight/2), int64(r.cfg.MaxInFlight/4)
	cseq := 0
	req := func() *sip.Request { // each a new registration of the same binding
		cseq++
		return register(t, "sip:alice@a.example", "od1", cseq, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	}
	r.inflight.Store(half)
	want(t, do(r, req()), 200) // half waiting begins: a burst, served
	advance(standingQueue)
	r.inflight.Store(half)
	want(t, do(r, req()), 503) // it stood: refused over TCP too
	r.inflight.Store(quarter)
	want(t, do(r, req()), 503) // a quarter waiting besides it: still draining
	r.inflight.Store(quarter - 1)
	want(t, do(r, req()), 200) // drained
}
