package sipnet

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func register(via, branch string) string {
	return "REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/" + via + ";branch=z9hG4bK" + branch + "\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:x@a.example>\r\nFrom: <sip:x@a.example>;tag=1\r\nCall-ID: " + branch + "-test\r\n" +
		"CSeq: 1 REGISTER\r\nContact: <sip:x@192.0.2.1>\r\nContent-Length: 0\r\n\r\n"
}

// statelessStack serves REGISTER statelessly: each call waits for a
// value on release (if set) and answers 200 with an X-Call header
// counting the calls.
func statelessStack(t *testing.T, release chan struct{}) (*Stack, *atomic.Int64) {
	t.Helper()
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var calls atomic.Int64
	s.HandleStateless(sip.REGISTER, func(req *sip.Request, _ bool) *sip.Response {
		n := calls.Add(1)
		if release != nil {
			<-release
		}
		var body []byte
		if req.CallID().Value() == "big-test" { // an amplifier's answer
			body = bytes.Repeat([]byte{'x'}, 4000)
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", body)
		res.AppendHeader(sip.NewHeader("X-Call", string(rune('0'+n))))
		res.AppendHeader(sip.NewHeader("X-Transport", req.Transport()+" "+req.Source()))
		return res
	})
	s.Serve()
	return s, &calls
}

func udpPeer(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ra, _ := net.ResolveUDPAddr("udp", addr)
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	return c
}

func roundTrip(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// TestStatelessUDP: a REGISTER over UDP is answered without a server
// transaction, with the source and transport a transaction would have
// given the handler; a retransmission (the same bytes from the same
// address) gets the same response again without running the handler; a
// new request, or the same bytes from another address, runs it again.
// Over TCP the same handler answers within sipgo's transaction.
func TestStatelessUDP(t *testing.T) {
	s, calls := statelessStack(t, nil)
	c := udpPeer(t, s.Addr())
	req := register("UDP "+c.LocalAddr().String(), "a1")
	first := roundTrip(t, c, req)
	if !strings.HasPrefix(first, "SIP/2.0 200 OK") || !strings.Contains(first, "X-Call: 1") ||
		!strings.Contains(first, "X-Transport: UDP "+c.LocalAddr().String()) {
		t.Fatalf("first answer:\n%s", first)
	}
	if again := roundTrip(t, c, req); again != first {
		t.Fatalf("retransmission answered\n%s\nnot as the first:\n%s", again, first)
	}
	if replayed := s.StatelessStats().Replayed; replayed != 1 || calls.Load() != 1 {
		t.Fatalf("replayed %d, handler ran %d times", replayed, calls.Load())
	}
	if other := roundTrip(t, c, register("UDP "+c.LocalAddr().String(), "a2")); !strings.Contains(other, "X-Call: 2") {
		t.Fatalf("a new request was not handled:\n%s", other)
	}
	// The same bytes from elsewhere are another request (answered at the
	// Via's port: c's).
	c2 := udpPeer(t, s.Addr())
	if _, err := c2.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 4096)
	if n, err := c.Read(reply); err != nil || !strings.Contains(string(reply[:n]), "X-Call: 3") {
		t.Fatalf("the same bytes from another address were not handled: %q %v", reply[:n], err)
	}
	// Without rport the response goes to the Via's port at the source IP
	// (RFC 3261 §18.2.2), with rport to the source port (RFC 3581).
	other := udpPeer(t, s.Addr())
	viaElsewhere := register("UDP "+other.LocalAddr().String(), "v1")
	if _, err := c.Write([]byte(viaElsewhere)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for i := 0; i < 2; i++ { // the answer, then the one to the retransmission: the same port
		if n, err := other.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "X-Call: 4") {
			t.Fatalf("no answer at the Via's port: %q %v", buf[:n], err)
		}
		if _, err := c.Write([]byte(viaElsewhere)); i == 0 && err != nil {
			t.Fatal(err)
		}
	}
	rport := strings.Replace(register("UDP "+other.LocalAddr().String(), "v2"), ";branch", ";rport;branch", 1)
	if got := roundTrip(t, c, rport); !strings.Contains(got, "X-Call: 5") {
		t.Fatalf("with rport, not answered at the source: %q", got)
	}
	// A response over three times the request (and 1300 bytes) is not
	// sent over UDP.
	big := strings.Replace(register("UDP "+c.LocalAddr().String(), "b1"), "Call-ID: b1-test", "Call-ID: big-test", 1)
	if _, err := c.Write([]byte(big)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for oversize := s.StatelessStats().Oversize; oversize == 0 && time.Now().Before(deadline); oversize = s.StatelessStats().Oversize {
		time.Sleep(5 * time.Millisecond)
	}
	if oversize := s.StatelessStats().Oversize; oversize != 1 {
		t.Fatal("the oversize response was not counted")
	}
	// OPTIONS is not taken: sipgo answers it (405, no handler).
	if st := roundTrip(t, c, options("UDP "+c.LocalAddr().String())); !strings.HasPrefix(st, "SIP/2.0 405") {
		t.Fatalf("OPTIONS: %q", st)
	}
	tcp, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	_ = tcp.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := tcp.Write([]byte(register("TCP "+tcp.LocalAddr().String(), "t1"))); err != nil {
		t.Fatal(err)
	}
	if st := readStatus(t, tcp); st != "SIP/2.0 200 OK" || calls.Load() != 7 {
		t.Fatalf("TCP: %q after %d calls", st, calls.Load())
	}
}

// TestStatelessPending: a retransmission that arrives while its request
// is being answered is dropped (the one answer serves both), and
// unparsable datagrams of the method are dropped without a handler.
func TestStatelessPending(t *testing.T) {
	release := make(chan struct{})
	s, calls := statelessStack(t, release)
	c := udpPeer(t, s.Addr())
	req := []byte(register("UDP "+c.LocalAddr().String(), "p1"))
	for i := 0; i < 3; i++ {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write([]byte("REGISTER garbage\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for calls.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the copies are read by now
	close(release)
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200 OK")) {
		t.Fatalf("answer %q, %v", buf[:n], err)
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("a second answer: %q", buf[:n])
	}
	if calls.Load() != 1 {
		t.Fatalf("handler ran %d times for one request and its copies", calls.Load())
	}
}

// TestReplayCache: responses are kept for the window (one bucket a
// second) and then forgotten; the chunks held never exceed the budget,
// the oldest seconds going first; requests being answered are never
// evicted; a request answered again later is not forgotten with its
// older answer's second; a response bigger than a chunk is not kept.
func TestReplayCache(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newReplayCache(32, 2*replayChunk, t0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	state := func(key uint64, now time.Time) replayState {
		_, _, st := c.lookup(key, now, nil)
		return st
	}
	if !c.claim(1) || c.claim(1) {
		t.Fatal("claim: the first should succeed, a second not")
	}
	if state(1, at(0.5)) != replayPending || state(2, at(0.5)) != replayNew {
		t.Fatal("pending")
	}
	c.done(1, []byte("one"), 5070, at(1.5)) // answered in a later second than it came
	if c.claim(1) {
		t.Fatal("claim of an answered request: another reader's copy would be answered again")
	}
	if got, port, st := c.lookup(1, at(31), nil); st != replayDone || string(got) != "one" || port != 5070 {
		t.Fatalf("at 31 s: %q %d %v", got, port, st)
	}
	if state(1, at(34.1)) != replayNew {
		t.Fatal("kept past the window")
	}
	big := bytes.Repeat([]byte{'x'}, 40<<10) // one a chunk
	c.claim(99)                              // being answered all along
	for i := 0; i < 5; i++ {
		c.claim(uint64(10 + i))
		c.done(uint64(10+i), big, 5060, at(40+float64(i)))
		if _, held := c.len(); held > 2 {
			t.Fatalf("%d chunks held, budget 2", held)
		}
	}
	if state(10, at(45)) != replayNew || state(12, at(45)) != replayNew || state(13, at(45)) != replayDone ||
		state(14, at(45)) != replayDone || state(99, at(45)) != replayPending {
		t.Fatal("budget: the oldest answers should have gone first, and only answers")
	}
	c.done(14, []byte("again"), 5060, at(46)) // answered anew: its older second's end must not forget it
	if got, _, st := c.lookup(14, at(77.5), nil); st != replayDone || string(got) != "again" {
		t.Fatalf("re-answered key lost with its older second: %q %v", got, st)
	}
	c.done(20, bytes.Repeat([]byte{'y'}, replayChunk+1), 5060, at(78))
	if state(20, at(78)) != replayNew {
		t.Fatal("a response over a chunk was kept")
	}
	c.forget(99)
	c.done(21, []byte("z"), 5060, at(1000)) // a long idle gap empties every bucket
	if n, held := c.len(); n != 1 || held > 1 {
		t.Fatalf("after a gap: %d entries, %d chunks", n, held)
	}
}

// TestStatelessClose: Close waits for a handler still answering (and the
// stack's goroutines end: TestMain checks).
func TestStatelessClose(t *testing.T) {
	release := make(chan struct{})
	s, calls := statelessStack(t, release)
	c := udpPeer(t, s.Addr())
	if _, err := c.Write([]byte(register("UDP "+c.LocalAddr().String(), "c1"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for calls.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a handler ran")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not return after the handler did")
	}
}

// FuzzStatelessFilter: whatever datagram arrives, the filter neither
// panics nor fails (an error would stop sipgo's reader), and passes on
// everything that does not start with a stateless method.
func FuzzStatelessFilter(f *testing.F) {
	f.Add([]byte(register("UDP 127.0.0.1:5060", "f1")))
	f.Add([]byte("REGISTER "))
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
	f.Add([]byte{})
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	s.HandleStateless(sip.REGISTER, func(req *sip.Request, _ bool) *sip.Response {
		return sip.NewResponseFromRequest(req, 200, "OK", nil)
	})
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} // discard
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := s.readFilter(sip.TransportReadProps{Transport: "UDP", LocalAddr: s.udp.LocalAddr(), RemoteAddr: from}, data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("REGISTER ")) && !bytes.Equal(out, data) {
			t.Fatalf("%q passed on as %q", data, out)
		}
	})
}

// len is the number of requests the cache knows, answered or pending,
// and the chunks it holds.
func (c *replayCache) len() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idx) + len(c.pend), c.held
}

// TestStatelessCopiesAcrossReaders: the UDP socket has several readers,
// so a request and its retransmissions are read at once by different
// goroutines; the handler still runs at most once per request. (Copies
// may be dropped by the kernel where socket buffers are small, so the
// test counts runs per request, not answers.)
func TestStatelessCopiesAcrossReaders(t *testing.T) {
	if udpReaders() < 2 {
		t.Fatalf("%d UDP readers", udpReaders())
	}
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var mu sync.Mutex
	runs := map[string]int{}
	s.HandleStateless(sip.REGISTER, func(req *sip.Request, _ bool) *sip.Response {
		mu.Lock()
		runs[req.CallID().Value()]++
		mu.Unlock()
		return sip.NewResponseFromRequest(req, 200, "OK", nil)
	})
	s.Serve()
	c := udpPeer(t, s.Addr())
	const requests, copies = 300, 6
	for i := range requests {
		req := []byte(register("UDP "+c.LocalAddr().String(), "c"+strconv.Itoa(i)))
		for range copies {
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
		}
		if i%20 == 19 {
			time.Sleep(2 * time.Millisecond) // within small default socket buffers
		}
	}
	total := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range runs {
			n += k
		}
		return n
	}
	for last := -1; ; time.Sleep(100 * time.Millisecond) { // until quiet
		if n := total(); n == last {
			break
		} else {
			last = n
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(runs) < requests/2 {
		t.Fatalf("only %d of %d requests handled", len(runs), requests)
	}
	for id, n := range runs {
		if n != 1 {
			t.Errorf("the handler ran %d times for %s", n, id)
		}
	}
}

// TestStatelessAdmitted: a handler is told a request was admitted only
// when it came over UDP through its method's shed hook: not for a method
// without a hook, not over TCP, not for a datagram too big for the
// stateless path (sipgo's transaction handles it).
func TestStatelessAdmitted(t *testing.T) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var mu sync.Mutex
	admitted := map[string]bool{}
	h := func(req *sip.Request, in bool) *sip.Response {
		mu.Lock()
		admitted[req.CallID().Value()] = in
		mu.Unlock()
		return sip.NewResponseFromRequest(req, 200, "OK", nil)
	}
	s.HandleStateless(sip.REGISTER, h)
	s.HandleStateless(sip.OPTIONS, h)
	s.ShedStateless(sip.REGISTER, func(ShedInfo) time.Duration { return 0 }, nil)
	s.Serve()
	c := udpPeer(t, s.Addr())
	local := c.LocalAddr().String()
	roundTrip(t, c, register("UDP "+local, "adm-udp"))
	roundTrip(t, c, strings.ReplaceAll(register("UDP "+local, "adm-options"), "REGISTER", "OPTIONS"))
	big := strings.Replace(register("UDP "+local, "adm-big"), "Content-Length", "X-Pad: "+strings.Repeat("x", statelessMaxDatagram)+"\r\nContent-Length", 1)
	if _, err := c.Write([]byte(big)); err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	_ = tcp.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := tcp.Write([]byte(register("TCP "+tcp.LocalAddr().String(), "adm-tcp"))); err != nil {
		t.Fatal(err)
	}
	readStatus(t, tcp)
	want := map[string]bool{"adm-udp-test": true, "adm-options-test": false, "adm-big-test": false, "adm-tcp-test": false}
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(admitted)
		mu.Unlock()
		if n == len(want) || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, w := range want {
		if got, ok := admitted[id]; !ok || got != w {
			t.Errorf("%s: handled %v, admitted %v; want admitted %v", id, ok, got, w)
		}
	}
}

// TestStatelessWorkersReused: requests answered one after another run on
// the worker that answered the first (its stack already grown), not on a
// goroutine each; past maxIdleWorkers waiting, a worker ends with its
// request; and Close ends the idle workers (it would wait for
// them forever otherwise; TestMain finds any left).
func TestStatelessWorkersReused(t *testing.T) {
	s, calls := statelessStack(t, nil)
	c := udpPeer(t, s.Addr())
	const n = 40
	for i := 0; i < n; i++ {
		if got := roundTrip(t, c, register("UDP "+c.LocalAddr().String(), "w"+strconv.Itoa(i))); !strings.HasPrefix(got, "SIP/2.0 200 OK") {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	// One worker, or two when a request came in before the first was back
	// waiting; a goroutine per request would be n.
	if started := s.stateless.workers.Load(); calls.Load() != n || started < 1 || started > 3 {
		t.Fatalf("%d requests handled by %d workers started", calls.Load(), started)
	}
	// With maxIdleWorkers waiting already, a worker ends with its request
	// instead of waiting too: the next request starts another.
	s.stateless.idleWorkers.Add(maxIdleWorkers)
	for i := 0; i < 3; i++ {
		before := s.stateless.workers.Load()
		// Wait until no worker of ours waits (the one that answered
		// last is back waiting, or ended), so the next needs one anew.
		deadline := time.Now().Add(3 * time.Second)
		for s.stateless.idleWorkers.Load() > maxIdleWorkers && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := roundTrip(t, c, register("UDP "+c.LocalAddr().String(), "x"+strconv.Itoa(i))); !strings.HasPrefix(got, "SIP/2.0 200 OK") {
			t.Fatalf("request %d past the idle cap: %q", i, got)
		}
		if i > 0 && s.stateless.workers.Load() != before+1 {
			t.Fatalf("past the idle cap, a request ran on a worker kept waiting (%d started before it, %d after)", before, s.stateless.workers.Load())
		}
	}
	s.stateless.idleWorkers.Add(-maxIdleWorkers)
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(workerIdle / 2): // before any worker's idle time ran out
		t.Fatal("Close waited for an idle worker")
	}
}
