package sipnet

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func options(via string) string {
	return "OPTIONS sip:x@a.example SIP/2.0\r\nVia: SIP/2.0/" + via + ";branch=z9hG4bK" + via[:3] + "\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:x@a.example>\r\nFrom: <sip:y@a.example>;tag=1\r\nCall-ID: " + via[:3] + "-test\r\n" +
		"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

// readStatus reads one response's status line from r.
func readStatus(t *testing.T, r io.Reader) string {
	t.Helper()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// TestStack: one port for UDP and TCP (and TLS beside it), handlers
// registered before Serve answer on every transport, a response matching
// no transaction goes to the hook, and Close ends it all (TestMain checks
// no goroutine is left).
func TestStack(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	cert, key := ca.issue(t, dir, "a", []string{"a.example"})
	tlsCfg, err := LoadTLS(cert, key, "127.0.0.1:0", ca.pool)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(Config{Addr: "127.0.0.1:0", TLS: tlsCfg, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.UA() == nil || s.TLSAddr() == "" || s.Context().Err() != nil {
		t.Fatalf("stack %+v", s)
	}
	var counts StatusCounts
	s.Handle(sip.OPTIONS, func(req *sip.Request, tx sip.ServerTransaction) {
		counts.Add(string(req.Method), 200)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	stray := make(chan *sip.Response, 1)
	s.OnUnhandledResponse(func(r *sip.Response) { stray <- r })
	s.Serve()
	s.Serve() // once is enough; twice is harmless

	udp, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	_ = udp.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := udp.Write([]byte(options("UDP " + udp.LocalAddr().String()))); err != nil {
		t.Fatal(err)
	}
	if st := readStatus(t, udp); st != "SIP/2.0 200 OK" {
		t.Fatalf("UDP: %q", st)
	}
	tcp, err := net.Dial("tcp", s.Addr()) // the same port
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	_ = tcp.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := tcp.Write([]byte(options("TCP " + tcp.LocalAddr().String()))); err != nil {
		t.Fatal(err)
	}
	if st := readStatus(t, tcp); st != "SIP/2.0 200 OK" {
		t.Fatalf("TCP: %q", st)
	}
	tc, err := tls.Dial("tcp", s.TLSAddr(), &tls.Config{RootCAs: ca.pool, ServerName: "a.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := tc.Write([]byte(options("TLS " + tc.LocalAddr().String()))); err != nil {
		t.Fatal(err)
	}
	if st := readStatus(t, tc); st != "SIP/2.0 200 OK" {
		t.Fatalf("TLS: %q", st)
	}
	// A response no transaction of ours waits for.
	res := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + s.Addr() + ";branch=z9hG4bKstray\r\nTo: <sip:x@a.example>;tag=2\r\n" +
		"From: <sip:y@a.example>;tag=1\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	if _, err := udp.Write([]byte(res)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-stray:
		if r.CallID().Value() != "stray" {
			t.Fatalf("stray response %v", r)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the unhandled-response hook got nothing")
	}
	n := 0
	counts.Each(func(m string, code int, c int64) { n += int(c) })
	if n != 3 {
		t.Fatalf("%d OPTIONS answered, want 3", n)
	}
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = s.Close() // idempotent
	s.Serve()     // after Close: nothing
	if s.Context().Err() == nil {
		t.Fatal("context alive after Close")
	}
	// The port is free again.
	again, err := Listen(Config{Addr: addr, Logger: quiet()})
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	again.Close()
}

// TestListenRefuses: a bad address is ErrConfig; a port in use is an
// error that leaves nothing open.
func TestListenRefuses(t *testing.T) {
	for _, cfg := range []Config{{Addr: "no port"}, {Addr: ""},
		{Addr: "127.0.0.1:0", TLS: &TLS{Addr: "127.0.0.1:0"}}, {Addr: "127.0.0.1:0", TLS: &TLS{Addr: "nowhere"}}} {
		if _, err := Listen(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("Listen(%+v): %v, want ErrConfig", cfg, err)
		}
	}
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Listen(Config{Addr: s.Addr(), Logger: quiet()}); err == nil {
		t.Fatal("second Listen on a bound port succeeded")
	}
	// TLS on a port in use: the UDP/TCP sockets already bound are released.
	s2, err := Listen(Config{Addr: "127.0.0.1:0", TLS: &TLS{Addr: s.Addr(), Config: &tls.Config{}}, Logger: quiet()})
	if err == nil {
		s2.Close()
		t.Fatal("TLS on a bound port succeeded")
	}
}

// TestCloseWaitsForHandlers: a handler still running when Close is called
// sees the stack's Context done, and Close returns only once it has
// returned; no handler may be registered once the stack serves.
func TestCloseWaitsForHandlers(t *testing.T) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	var ended atomic.Bool
	s.Handle(sip.OPTIONS, func(req *sip.Request, tx sip.ServerTransaction) {
		close(entered)
		<-s.Context().Done()
		time.Sleep(50 * time.Millisecond) // still busy after Close began
		ended.Store(true)
	})
	s.Serve()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Handle after Serve did not panic")
			}
		}()
		s.HandleOther(func(*sip.Request, sip.ServerTransaction) {})
	}()
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(options("UDP " + c.LocalAddr().String()))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(3 * time.Second):
		t.Fatal("handler not called")
	}
	s.Close()
	if !ended.Load() {
		t.Fatal("Close returned while a handler was running")
	}
}
