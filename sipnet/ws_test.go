package sipnet

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsDial opens a WebSocket to addr as a SIP client would (subprotocol
// "sip") with extra handshake headers; tlsCfg for wss.
func wsDial(t *testing.T, addr string, tlsCfg *tls.Config, header http.Header) (net.Conn, error) {
	t.Helper()
	d := ws.Dialer{Protocols: []string{"sip"}, Header: ws.HandshakeHeaderHTTP(header), Timeout: 3 * time.Second, TLSConfig: tlsCfg}
	scheme := "ws://"
	if tlsCfg != nil {
		scheme = "wss://"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, _, err := d.Dial(ctx, scheme+addr+"/")
	return c, err
}

// wsOptions sends an OPTIONS on a client WebSocket and returns the status
// line of the answer.
func wsOptions(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if err := wsutil.WriteClientText(c, []byte(options("WS "+c.LocalAddr().String()))); err != nil {
		t.Fatal(err)
	}
	msg, err := wsutil.ReadServerText(c)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(msg), "\r\n")
	return line
}

// TestWebSocket: SIP over ws:// and wss:// reaches the stack's handlers
// and its answers come back on the socket; a request can be sent to the
// UA down its WebSocket (the pool knows it by its address); the HTTP
// requests that are not SIP handshakes go to the Handler; and what a
// browser page of another origin, a client without the sip subprotocol or
// a client that never finishes its handshake can do is refused or harms
// no one else.
func TestWebSocket(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	cert, key := ca.issue(t, dir, "a", []string{"a.example"})
	tlsCfg, err := LoadTLS(cert, key, "", ca.pool)
	if err != nil {
		t.Fatal(err)
	}
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "softphone") })
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet(), WS: &WS{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0",
		TLSConfig: tlsCfg.Config.Clone(), Origins: []string{"https://app.a.example"}, Handler: page}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Handle(sip.OPTIONS, func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK "+req.Transport(), nil))
	})
	s.Serve()
	if s.WSAddr() == "" || s.WSSAddr() == "" || s.WSAddr() == s.WSSAddr() {
		t.Fatalf("ws %q wss %q", s.WSAddr(), s.WSSAddr())
	}

	// A client that connects and sends nothing holds no one up.
	idle, err := net.Dial("tcp", s.WSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	c, err := wsDial(t, s.WSAddr(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st := wsOptions(t, c); st != "SIP/2.0 200 OK WS" {
		t.Fatalf("ws: %q", st)
	}
	// Our own origin and a listed one may; another may not.
	for origin, ok := range map[string]bool{"http://" + s.WSAddr(): true, "https://app.a.example": true,
		"https://evil.example": false, "https://" + s.WSAddr(): false} {
		c, err := wsDial(t, s.WSAddr(), nil, http.Header{"Origin": {origin}})
		if ok != (err == nil) {
			t.Errorf("origin %s: %v", origin, err)
		}
		if err == nil {
			c.Close()
		} else if !strings.Contains(err.Error(), "403") {
			t.Errorf("origin %s refused with %v, want 403", origin, err)
		}
	}
	// Without the sip subprotocol: 400.
	d := ws.Dialer{Timeout: 3 * time.Second}
	if _, _, _, err := d.Dial(context.Background(), "ws://"+s.WSAddr()+"/"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("no subprotocol: %v, want 400", err)
	}
	// Other requests: the page.
	res, err := http.Get("http://" + s.WSAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "softphone" {
		t.Errorf("page: %d %q", res.StatusCode, body)
	}

	// wss, with the certificate.
	sc, err := wsDial(t, s.WSSAddr(), &tls.Config{RootCAs: ca.pool, ServerName: "a.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if st := wsOptions(t, sc); st != "SIP/2.0 200 OK WSS" {
		t.Fatalf("wss: %q", st)
	}

	// A request sent to the UA goes down its WebSocket.
	pool := s.UA().TransportLayer().Pool("WS")
	if pool == nil || pool.Get(c.LocalAddr().String()) == nil {
		t.Fatalf("the ws client %s is not in the pool", c.LocalAddr())
	}
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", User: "ua", Host: "x.invalid"})
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "WS", Host: "a.example", Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	req.AppendHeader(sip.NewHeader("From", "<sip:a.example>;tag=1"))
	req.AppendHeader(sip.NewHeader("To", "<sip:ua@x.invalid>"))
	req.AppendHeader(sip.NewHeader("Call-ID", "ws-down"))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.SetTransport("WS")
	req.SetDestination(c.LocalAddr().String())
	if err := s.UA().TransportLayer().WriteMsg(req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	msg, err := wsutil.ReadServerText(c)
	if err != nil || !strings.HasPrefix(string(msg), "OPTIONS sip:ua@x.invalid") {
		t.Fatalf("down the WebSocket: %q %v", msg, err)
	}
}

// TestWebSocketLimit: past wsMaxConns open WebSockets a handshake gets
// 503, and a closed one frees its place.
func TestWebSocketLimit(t *testing.T) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet(), WS: &WS{Addr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Serve()
	ln := s.ws[0].ln
	for range cap(ln.open) - 1 { // all places but one taken
		ln.open <- struct{}{}
	}
	c, err := wsDial(t, s.WSAddr(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wsDial(t, s.WSAddr(), nil, nil); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("past the limit: %v, want 503", err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(ln.open) == cap(ln.open) {
		if time.Now().After(deadline) {
			t.Fatal("a closed WebSocket kept its place")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err = wsDial(t, s.WSAddr(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// One address holds at most wsMaxPerIP of them.
	for len(ln.open) == cap(ln.open) {
		time.Sleep(20 * time.Millisecond) // c's place, given back
	}
	<-ln.open // the places taken above
	ln.mu.Lock()
	ln.perIP["127.0.0.1"] = wsMaxPerIP
	ln.mu.Unlock()
	if _, err := wsDial(t, s.WSAddr(), nil, nil); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("past the per-address limit: %v, want 503", err)
	}
}

func TestWSConfig(t *testing.T) {
	for _, w := range []*WS{{Addr: "nope"}, {TLSAddr: "127.0.0.1:0"}, {Addr: "127.0.0.1:0", Origins: []string{"evil.example"}},
		{Addr: "127.0.0.1:0", Origins: []string{"https://a.example/path"}}} {
		if _, err := Listen(Config{Addr: "127.0.0.1:0", WS: w}); err == nil {
			t.Errorf("%+v accepted", w)
		}
	}
}

// FuzzWSHandshake sends whatever bytes to a WebSocket listener as a client
// would, then hangs up: nothing panics, and every connection's place is
// given back (a handshake refused, upgraded, broken or followed by frames).
func FuzzWSHandshake(f *testing.F) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet(), WS: &WS{Addr: "127.0.0.1:0"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	s.Serve()
	hs := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n"
	for _, seed := range []string{hs + "\r\n", hs + "Origin: https://evil.example\r\n\r\n", hs + "\r\n\x81\x85abcd\x01\x02\x03\x04\x05",
		strings.Replace(hs, "sip", "chat", 1) + "\r\n", "GET /softphone/ HTTP/1.1\r\nHost: x\r\n\r\n", "\x16\x03\x01garbage", hs} {
		f.Add([]byte(seed))
	}
	ln := s.ws[0].ln
	f.Fuzz(func(t *testing.T, req []byte) {
		c, err := net.Dial("tcp", s.WSAddr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = c.Write(req)
		_, _ = io.Copy(io.Discard, c) // until the deadline or the server's close
		c.Close()
		for deadline := time.Now().Add(5 * time.Second); len(ln.open) > 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d WebSocket places still taken after the client left (input %q)", len(ln.open), req)
			}
		}
	})
}
