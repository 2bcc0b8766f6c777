package testnet_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/testnet"
)

// wsPhone is a SIP UA on a WebSocket, as a browser softphone is (RFC
// 7118): sipgo's WS transport as a client, its Contact a made-up
// ".invalid" host no one can connect to. It registers with digest as an
// Outbound UA (instance, reg-id), answers INVITEs and BYEs with 200, and
// sends every request of its own over its WebSocket, whatever a route
// says, as a browser does.
type wsPhone struct {
	t                  *testing.T
	ua                 *sipgo.UserAgent
	client             *sipgo.Client
	addr, tr           string // the node's WebSocket address and WS or WSS
	user, domain, pass string
	contact            string
	callID, tag        string
	cseq               atomic.Uint32
	invites, byes      chan *sip.Request
}

const wsSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40500 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

func newWSPhone(t *testing.T, addr, tr string, tlsCfg *tls.Config, user, domain, pass string) *wsPhone {
	t.Helper()
	opts := []sipgo.UserAgentOption{sipgo.WithUserAgent("wsphone")}
	if tlsCfg != nil {
		opts = append(opts, sipgo.WithUserAgenTLSConfig(tlsCfg))
	}
	ua, err := sipgo.NewUA(opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(user+"-phone.invalid"))
	if err != nil {
		t.Fatal(err)
	}
	p := &wsPhone{t: t, ua: ua, client: client, addr: addr, tr: tr, user: user, domain: domain, pass: pass,
		contact: fmt.Sprintf("<sip:%s@%s-phone.invalid;transport=%s>", user, user, strings.ToLower(tr)),
		callID:  fmt.Sprintf("ws-%s-%d", user, time.Now().UnixNano()), tag: "t" + user,
		invites: make(chan *sip.Request, 4), byes: make(chan *sip.Request, 4)}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		p.invites <- req
		res := sip.NewResponseFromRequest(req, 200, "OK", []byte(wsSDP))
		res.AppendHeader(sip.NewHeader("Contact", p.contact))
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		_ = tx.Respond(res)
	})
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		p.byes <- req
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	t.Cleanup(func() { p.close() })
	return p
}

// close ends the phone's WebSocket (as a closed browser tab does).
func (p *wsPhone) close() { p.client.Close(); p.ua.Close() }

// request builds a request of the phone's own, sent over its WebSocket.
func (p *wsPhone) request(method sip.RequestMethod, ruri sip.Uri, to string) *sip.Request {
	req := sip.NewRequest(method, ruri)
	req.AppendHeader(sip.NewHeader("From", fmt.Sprintf("<sip:%s@%s>;tag=%s", p.user, p.domain, p.tag)))
	req.AppendHeader(sip.NewHeader("To", to))
	req.AppendHeader(sip.NewHeader("Call-ID", p.callID))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: p.cseq.Add(1), MethodName: method})
	req.SetTransport(p.tr)
	req.SetDestination(p.addr)
	return req
}

// do sends req and returns its final response, answering one digest
// challenge.
func (p *wsPhone) do(req *sip.Request) *sip.Response {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err == nil && (res.StatusCode == 401 || res.StatusCode == 407) {
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: p.pass})
	}
	if err != nil {
		p.t.Fatalf("%s over %s: %v", req.Method, p.tr, err)
	}
	return res
}

// register binds the phone's Contact for expires seconds.
func (p *wsPhone) register(expires int) *sip.Response {
	p.t.Helper()
	req := p.request(sip.REGISTER, sip.Uri{Scheme: "sip", Host: p.domain}, fmt.Sprintf("<sip:%s@%s>", p.user, p.domain))
	req.AppendHeader(sip.NewHeader("Contact", p.contact+`;+sip.instance="<urn:uuid:00000000-0000-4000-8000-`+fmt.Sprintf("%012x", len(p.user))+`>";reg-id=1`))
	req.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(expires)))
	req.AppendHeader(sip.NewHeader("Supported", "path, outbound, gruu"))
	return p.do(req)
}

// call makes a call to aor and, once answered, ACKs and hangs up; it
// returns the INVITE's final status.
func (p *wsPhone) call(aor string) int {
	p.t.Helper()
	var to sip.Uri
	if err := sip.ParseUri(aor, &to); err != nil {
		p.t.Fatal(err)
	}
	p.callID = fmt.Sprintf("ws-call-%s-%d", p.user, time.Now().UnixNano())
	inv := p.request(sip.INVITE, to, "<"+aor+">")
	inv.AppendHeader(sip.NewHeader("Contact", p.contact))
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody([]byte(wsSDP))
	res := p.do(inv)
	if res.StatusCode != 200 {
		return res.StatusCode
	}
	// The dialog's requests: to the callee's Contact, through the route
	// the Record-Routes make (reversed, RFC 3261 §12.1.2).
	var target sip.Uri
	if c := res.Contact(); c != nil {
		target = *c.Address.Clone()
	}
	rrs := res.GetHeaders("Record-Route")
	inDialog := func(m sip.RequestMethod, seq uint32) *sip.Request {
		r := sip.NewRequest(m, target)
		for i := len(rrs) - 1; i >= 0; i-- {
			r.AppendHeader(sip.NewHeader("Route", rrs[i].Value()))
		}
		r.AppendHeader(sip.NewHeader("From", inv.From().Value()))
		r.AppendHeader(sip.NewHeader("To", res.To().Value()))
		r.AppendHeader(sip.NewHeader("Call-ID", p.callID))
		r.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: m})
		r.SetTransport(p.tr)
		r.SetDestination(p.addr)
		return r
	}
	if err := p.client.WriteRequest(inDialog(sip.ACK, inv.CSeq().SeqNo)); err != nil {
		p.t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if bye := p.do(inDialog(sip.BYE, inv.CSeq().SeqNo+1)); bye.StatusCode != 200 {
		p.t.Fatalf("BYE: %d", bye.StatusCode)
	}
	return 200
}

// testnetTLS trusts the testnet's CA for a domain's certificate.
func testnetTLS(t *testing.T, dir, domain string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in ca.pem")
	}
	return &tls.Config{RootCAs: pool, ServerName: domain, MinVersion: tls.VersionTLS12}
}

// TestWebSocketCalls: browser-like UAs on WebSockets (RFC 7118) register
// at their domain's node and take and make calls across domains through
// the overlay. alice registers over ws at a.example's node; a sipp caller
// at b.example's proxy reaches her: the proxy finds her binding in the
// overlay, its Path leads to a.example's node, which sends the INVITE down
// her WebSocket (the flow; a.example's node is reached only as the
// flow's holder). carol registers over wss at b.example's node and calls
// bob, a sipp UA registered at b.example. Then the attacks: a call to
// alice once her WebSocket is closed fails at once (her node answers 430
// Flow Failed, which b.example's proxy turns into 480 for the caller); a
// binding whose Contact names a WebSocket elsewhere (a domain may sign
// anything) gets 480 and no connection is opened to it; a Request-URI
// naming the node's own WebSocket listener goes down no one's socket.
func TestWebSocketCalls(t *testing.T) {
	dir := t.TempDir()
	m, nw := startCallNetOf(t, testnet.Spec{Dir: dir, Nodes: 6, PerDomain: 2}, nil)
	a, b := domainNodes(nw, "a.example")[0], domainNodes(nw, "b.example")[0]
	alice, bob, carol := domainUser(m, "a.example", 0), domainUser(m, "b.example", 0), domainUser(m, "b.example", 1)
	userOf := func(u testnet.User) string { return strings.TrimPrefix(strings.Split(u.AOR, "@")[0], "sip:") }

	// alice over ws.
	ap := newWSPhone(t, nw.Node(a).SIPWSAddr(), "WS", nil, alice.Username, "a.example", alice.Password)
	if res := ap.register(600); res.StatusCode != 200 {
		t.Fatalf("alice's REGISTER over ws: %d %s", res.StatusCode, res.Reason)
	}
	bs, err := nw.Node(b).Location().Lookup(context.Background(), alice.AOR)
	if err != nil || len(bs) != 1 || len(bs[0].Path) != 1 || !strings.Contains(bs[0].Path[0], ";ob") {
		t.Fatalf("alice's binding seen from b.example: %+v %v, want one with the flow's Path", bs, err)
	}
	uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(b).SIPAddr(),
		"-s", userOf(alice), "-key", "domain", "a.example", "-m", "1", "-timeout", "30s")
	if err := uac.wait(45 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case inv := <-ap.invites:
		if inv.Transport() != "WS" || !strings.Contains(inv.Recipient.Host, "-phone.invalid") {
			t.Errorf("alice's INVITE came over %s to %s", inv.Transport(), inv.Recipient.String())
		}
	default:
		t.Fatal("alice's phone got no INVITE")
	}
	select {
	case <-ap.byes:
	case <-time.After(5 * time.Second):
		t.Fatal("alice's phone got no BYE")
	}

	// carol over wss calls bob, a sipp UA.
	uasPort := freeUDPPort(t)
	uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "1", "-timeout", "40s")
	if err := (sippRun{registrar: nw.Node(b).SIPAddr(), user: userOf(bob), authUser: bob.Username, pass: bob.Password,
		domain: "b.example", contact: fmt.Sprintf("<sip:%s@127.0.0.1:%d>", userOf(bob), uasPort), expires: 600, final: 200}).run(t); err != nil {
		t.Fatal(err)
	}
	cp := newWSPhone(t, nw.Node(b).SIPWSSAddr(), "WSS", testnetTLS(t, dir, "b.example"), carol.Username, "b.example", carol.Password)
	if res := cp.register(600); res.StatusCode != 200 {
		t.Fatalf("carol's REGISTER over wss: %d %s", res.StatusCode, res.Reason)
	}
	if st := cp.call(bob.AOR); st != 200 {
		t.Fatalf("carol's call to bob: %d", st)
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	// alice's tab closes: her flow fails, at once.
	ap.close()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if st := cp.call(alice.AOR); st != 480 {
		t.Errorf("a call to alice with her WebSocket closed: %d, want 480 (her node's 430 Flow Failed, which no endpoint sees)", st)
	}
	t.Logf("480 after %v", time.Since(start))
	var flowFailed int64
	nw.Node(a).Proxy().Responses().Each(func(m string, code int, n int64) {
		if m == "INVITE" && code == 430 {
			flowFailed += n
		}
	})
	if flowFailed != 1 {
		t.Errorf("alice's node answered %d INVITEs 430, want 1 (to b.example's proxy)", flowFailed)
	}

	// A binding whose Contact is a WebSocket elsewhere: nothing dials it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialled := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			dialled <- struct{}{}
		}
	}()
	mallory := "sip:mallory@a.example"
	if err := nw.Node(a).Location().Publish(context.Background(), mallory, lsp.Binding{
		Contact: "sip:mallory@" + ln.Addr().String() + ";transport=ws", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if st := cp.call(mallory); st != 480 {
		t.Errorf("a call to a WebSocket Contact no one here holds: %d, want 480", st)
	}
	select {
	case <-dialled:
		t.Error("the proxy opened a connection to a binding's WebSocket Contact")
	case <-time.After(300 * time.Millisecond):
	}

	// A Request-URI naming the node's own wss listener is no flow: sipgo's
	// pool knows the last connection by that address (carol's here), and
	// the request would go down it.
	if st := cp.call("sip:x@" + nw.Node(b).SIPWSSAddr() + ";transport=wss"); st != 480 {
		t.Errorf("a call to the wss listener's own address: %d, want 480", st)
	}
	select {
	case inv := <-cp.invites:
		t.Errorf("carol's WebSocket got a request no flow named: %s %s", inv.Method, inv.Recipient.String())
	default:
	}
}
