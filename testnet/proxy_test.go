package testnet_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// sippProc is a sipp process running in the background.
type sippProc struct {
	name string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	dir  string
	done chan error
}

// startSipp starts sipp with a scenario from testdata/sipp (or at an
// absolute path) and args, bound to 127.0.0.1:port.
func startSipp(t *testing.T, name, scenario string, port int, args ...string) *sippProc {
	t.Helper()
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Fatal("sipp not installed (Debian package sip-tester; scripts/deps test installs it)")
	}
	scen, err := filepath.Abs(filepath.Join("testdata/sipp", scenario))
	if filepath.IsAbs(scenario) { // a copy the test made
		scen = scenario
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	all := append([]string{"-sf", scen, "-i", "127.0.0.1", "-p", fmt.Sprint(port), "-nostdin",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log")}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "sipp", all...)
	cmd.Dir = dir
	p := &sippProc{name: name, cmd: cmd, out: &bytes.Buffer{}, dir: dir, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	return p
}

// wait returns nil when sipp exited 0 (every call as scripted).
func (p *sippProc) wait(timeout time.Duration) error {
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			errs, _ := os.ReadFile(filepath.Join(p.dir, "errors.log"))
			msgs, _ := os.ReadFile(filepath.Join(p.dir, "messages.log"))
			if len(msgs) > 6000 {
				msgs = msgs[len(msgs)-6000:]
			}
			return fmt.Errorf("sipp %s: %v\n%s\n%s\nlast messages:\n%s", p.name, err, tail(p.out.Bytes()), errs, msgs)
		}
		return nil
	case <-time.After(timeout):
		// Stop it before reading its output (sipp still writes to it).
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err // for the cleanup
		return fmt.Errorf("sipp %s still running after %v\n%s", p.name, timeout, tail(p.out.Bytes()))
	}
}

func startCallNet(t *testing.T, tweak func(m *testnet.Manifest, c *node.Config)) (*testnet.Manifest, *testnet.Network) {
	t.Helper()
	return startCallNetOf(t, testnet.Spec{Dir: t.TempDir(), Nodes: 6, PerDomain: 2}, tweak)
}

func startCallNetOf(t testing.TB, spec testnet.Spec, tweak func(m *testnet.Manifest, c *node.Config)) (*testnet.Manifest, *testnet.Network) {
	t.Helper()
	m, err := testnet.Init(spec)
	if err != nil {
		t.Fatal(err)
	}
	log := quiet()
	if os.Getenv("LSNODE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	nw, err := testnet.Start(context.Background(), spec.Dir, testnet.RunOptions{Logger: log, DisableDHTRefresh: true,
		Tweak: func(c *node.Config) {
			fastGossip(c)
			c.Proxy.DNSServer = "off"
			if tweak != nil {
				tweak(m, c)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Close() })
	return m, nw
}

func domainUser(m *testnet.Manifest, domain string, i int) testnet.User {
	for _, d := range m.Domains {
		if d.Name == domain {
			return d.Users[i]
		}
	}
	panic("no domain " + domain)
}

// TestProxyBypass is the point of the design: a sipp UAS registers as a
// user of b.example; a sipp UAC calls that AOR through a.example's proxy;
// the call completes (INVITE/180/200/ACK/BYE) and no node of b.example sees
// a request of it: a.example's proxy found the Contact in the overlay.
func TestProxyBypass(t *testing.T) {
	m, nw := startCallNet(t, nil)
	aNode, bNodes := domainNodes(nw, "a.example")[0], domainNodes(nw, "b.example")
	bob := domainUser(m, "b.example", 0)
	user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")

	uasPort := freeUDPPort(t)
	uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "1", "-timeout", "40s")
	if err := (sippRun{registrar: nw.Node(bNodes[0]).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
		domain: "b.example", contact: fmt.Sprintf("<sip:%s@127.0.0.1:%d>", user, uasPort), expires: 600, final: 200}).run(t); err != nil {
		t.Fatal(err)
	}
	bypassCall(t, nw, aNode, user, "b.example", bNodes, uas)
	st := nw.Node(aNode).Proxy().Stats()
	if st.Direct < 1 || st.Lookups < 1 {
		t.Errorf("a.example proxy: %+v, want the INVITE sent straight to the Contact after an overlay lookup", st)
	}
	t.Logf("a.example proxy: %+v", st)
}

// bypassCall has a sipp UAC call user@domain through node via's proxy; the
// UAS answers it, and none of the nodes untouched sees a request of the
// call (the callee's domain is bypassed).
func bypassCall(t *testing.T, nw *testnet.Network, via int, user, domain string, untouched []int, uas *sippProc) {
	t.Helper()
	before := map[int]int64{}
	for _, i := range untouched {
		before[i] = nw.Node(i).Proxy().Stats().Requests
	}
	uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(via).SIPAddr(),
		"-s", user, "-key", "domain", domain, "-m", "1", "-timeout", "30s")
	if err := uac.wait(45 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, i := range untouched {
		if got := nw.Node(i).Proxy().Stats().Requests; got != before[i] {
			t.Errorf("%s node %d saw %d requests of the call: the bypass failed", domain, i, got-before[i])
		}
	}
}

// dnsServer serves a zone on loopback UDP for RFC 3263 tests.
func dnsServer(t *testing.T, records ...string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var rrs []dns.RR
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("record %q: %v", r, err)
		}
		rrs = append(rrs, rr)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		found := false
		for _, rr := range rrs {
			if strings.EqualFold(rr.Header().Name, q.Question[0].Name) {
				found = true
				if rr.Header().Rrtype == q.Question[0].Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		if !found {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestProxyDNSFailover: an AOR the overlay does not know is routed by RFC
// 3263 (NAPTR → SRV → A) from a DNS server on loopback; the first SRV
// target refuses the TCP connection and the proxy fails over to the
// second, a sipp UAS over TCP, where the call completes.
func TestProxyDNSFailover(t *testing.T) {
	uasPort := freeTCPPort(t)
	deadPort := refusedTCPPort(t)
	addr := dnsServer(t,
		`c.example. 60 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.c.example.`,
		fmt.Sprintf("_sip._tcp.c.example. 60 IN SRV 10 0 %d dead.c.example.", deadPort),
		fmt.Sprintf("_sip._tcp.c.example. 60 IN SRV 20 0 %d live.c.example.", uasPort),
		"dead.c.example. 60 IN A 127.0.0.1",
		"live.c.example. 60 IN A 127.0.0.1")
	_, nw := startCallNet(t, func(_ *testnet.Manifest, c *node.Config) {
		if c.Domain == "a.example" {
			c.Proxy.DNSServer = addr
		}
	})
	aNode := domainNodes(nw, "a.example")[0]
	uas := startSipp(t, "uas-tcp", "uas.xml", uasPort, "-t", "t1", "-m", "1", "-timeout", "40s")
	time.Sleep(300 * time.Millisecond) // sipp binds its socket
	uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(aNode).SIPAddr(),
		"-s", "carol", "-key", "domain", "c.example", "-m", "1", "-timeout", "30s")
	if err := uac.wait(45 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if st := nw.Node(aNode).Proxy().Stats(); st.DNS < 1 || st.Failovers != 1 || st.Direct != 0 {
		t.Fatalf("a.example proxy %+v: want the INVITE routed by DNS after one failover", st)
	}
}

// refusedTCPPort is a port on 127.0.0.1 that refuses TCP connections for
// the test's duration: a socket bound to it without listening holds it
// (without SO_REUSEADDR, so no listener of the testnet's, which set it,
// can take it as freeTCPPort's port was taken: the proxy then reached a
// node's TLS listener instead of a dead server and never failed over).
func refusedTCPPort(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestFederationRedirectServer is speermint-flows §7.1 with sipp at both
// ends: c.example's node is the federation's redirect server (proxy mode
// redirect, its table naming b.example's node as b.example's next hop);
// a.example's proxy sends what it cannot place (b.example keeps its
// bindings out of the overlay: registrar mode local) to its catch-all
// static peer, the redirect server, and follows its 302. The call
// completes (INVITE → 302 → ACK to the redirect server, INVITE to b.example
// → 100/180/200, ACK, BYE), the redirect server answered one 302 and
// proxied nothing, and a.example's proxy sent the INVITE to the next hop
// the 302 named.
func TestFederationRedirectServer(t *testing.T) {
	first := func(m *testnet.Manifest, domain string) testnet.NodeInfo {
		for _, n := range m.Nodes {
			if n.Domain == domain {
				return n
			}
		}
		panic("no node of " + domain)
	}
	spec := testnet.Spec{Dir: t.TempDir(), Nodes: 6, PerDomain: 2, Domains: []string{"a.example", "b.example", "c.example"}}
	m, nw := startCallNetOf(t, spec, func(m *testnet.Manifest, c *node.Config) {
		bFront, fed := first(m, "b.example"), first(m, "c.example")
		switch {
		case c.Domain == "b.example":
			c.Registrar.Mode = "local"
			// sipp's UAS answers a call's requests to where its INVITE
			// came from: b.example stays on the dialog's path.
			c.Proxy.RecordRoute = true
		case c.Name == fed.Name:
			c.Proxy.Mode = "redirect"
			c.Proxy.StaticPeers = map[string][]string{"b.example": {"sip:" + bFront.SIP}}
		case c.Domain == "a.example":
			c.Proxy.RecordRoute = true
			c.Proxy.StaticPeers = map[string][]string{"*": {"sip:" + fed.SIP}}
		}
	})
	idx := func(name string) int {
		for i, n := range m.Nodes {
			if n.Name == name {
				return i
			}
		}
		panic(name)
	}
	bIdx, fedIdx := idx(first(m, "b.example").Name), idx(first(m, "c.example").Name)
	aIdx := domainNodes(nw, "a.example")[0]
	bob := domainUser(m, "b.example", 0)
	user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")
	uasPort := freeUDPPort(t)
	uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "1", "-timeout", "40s")
	if err := (sippRun{registrar: nw.Node(bIdx).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
		domain: "b.example", contact: fmt.Sprintf("<sip:%s@127.0.0.1:%d>", user, uasPort), expires: 600, final: 200}).run(t); err != nil {
		t.Fatal(err)
	}
	uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(aIdx).SIPAddr(),
		"-s", user, "-key", "domain", "b.example", "-m", "1", "-timeout", "30s")
	if err := uac.wait(45 * time.Second); err != nil {
		t.Fatal(err, "\ncallee:", uas.wait(time.Second))
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if st := nw.Node(fedIdx).Proxy().Stats(); st.Redirected != 1 || st.Forwarded != 0 {
		t.Fatalf("redirect server %+v: want one 302 and nothing proxied", st)
	}
	if st := nw.Node(aIdx).Proxy().Stats(); st.Static != 1 || st.Followed != 1 {
		t.Fatalf("a.example proxy %+v: want the INVITE sent to the redirect server once and to the next hop it named once", st)
	}
	if st := nw.Node(bIdx).Proxy().Stats(); st.Requests < 3 {
		t.Fatalf("b.example proxy %+v: want the INVITE, ACK and BYE", st)
	}
}

// TestRedirectToNATFlow is p2p-ipcom §4's pure redirect mode with sipp at
// both ends: a.example's node is a redirect server; bob's UA registers a
// private Contact (10.0.0.5) from its loopback socket, as a UA behind a
// NAT does, so its binding's Path is the node's flow to that socket. An
// INVITE for bob gets 302 naming the Contact with the flow as a Route in
// its headers; sipp follows it (ACK, INVITE through the Route) and the call
// completes down the flow (INVITE/180/200/ACK/BYE). What the overlay does
// not hold is refused, never proxied.
func TestRedirectToNATFlow(t *testing.T) {
	m, nw := startCallNet(t, func(m *testnet.Manifest, c *node.Config) {
		if c.Domain == "a.example" {
			c.Proxy.Mode = "redirect"
			c.Proxy.RecordRoute = true // the dialog's ACK and BYE go down the flow too
		}
	})
	aIdx := domainNodes(nw, "a.example")[0]
	bob := domainUser(m, "a.example", 1)
	user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")
	dir := t.TempDir()
	for _, name := range []string{"nat-callee.xml", "nat-callee-ooc.xml"} {
		b, err := os.ReadFile(filepath.Join("testdata/sipp", name))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer("CONTACT_IP", "10.0.0.5", "RTP_PORT", "30000", "RTP_CMD", "true").Replace(string(b))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	callee := startSipp(t, "callee", filepath.Join(dir, "nat-callee.xml"), freeUDPPort(t), nw.Node(aIdx).SIPAddr(),
		"-oocsf", filepath.Join(dir, "nat-callee-ooc.xml"), "-au", bob.Username, "-ap", bob.Password, "-auth_uri", "a.example",
		"-key", "user", user, "-key", "domain", "a.example", "-m", "1")
	waitFor(t, 15*time.Second, "bob's binding with a Path", func() error {
		bs, err := nw.Node(aIdx).Location().Lookup(context.Background(), bob.AOR)
		if err != nil || len(bs) != 1 || len(bs[0].Path) == 0 {
			return fmt.Errorf("%v: %+v", err, bs)
		}
		return nil
	})
	uac := startSipp(t, "uac", "uac_redirect.xml", freeUDPPort(t), nw.Node(aIdx).SIPAddr(),
		"-s", user, "-key", "domain", "a.example", "-m", "1", "-timeout", "30s")
	if err := uac.wait(45 * time.Second); err != nil {
		t.Fatal(err, "\ncallee:", callee.out.String())
	}
	st := nw.Node(aIdx).Proxy().Stats()
	if st.Redirected != 1 || st.Flowed < 1 || st.Direct != 0 {
		t.Fatalf("redirect server %+v: want one 302, the INVITE down the flow, nothing routed by location", st)
	}
}

// TestProxyTLSPeering: b.example keeps its registrations to itself (local
// mode), so a.example reaches bob through its static peer, b.example's
// proxy, over mutually authenticated TLS; the call completes. A client
// certificate from another CA is refused at b.example's TLS port, and a
// peer whose server certificate a.example does not trust gets no request.
func TestProxyTLSPeering(t *testing.T) {
	rogue := rogueTLSServer(t)
	var bFront string
	m, nw := startCallNet(t, func(m *testnet.Manifest, c *node.Config) {
		for _, n := range m.Nodes {
			if n.Domain == "b.example" && bFront == "" {
				bFront = n.Name
			}
		}
		switch c.Domain {
		case "b.example":
			c.Registrar.Mode = "local"
			// sipp's UAS answers every request of a call to the address
			// its INVITE came from (b.example), not by Via: b.example stays
			// on the dialog's path so the BYE's 200 finds its transaction.
			c.Proxy.RecordRoute = true
		case "a.example":
			// Both proxies record-route: a.example's UDP (caller) and TLS
			// (peer) sides differ, so it records both (RFC 5658), and the
			// BYE goes caller → a.example → TLS → b.example → bob.
			c.Proxy.RecordRoute = true
			var tlsAddr string
			for _, n := range m.Nodes {
				if n.Name == bFront {
					tlsAddr = n.SIPTLS
				}
			}
			c.Proxy.StaticPeers = map[string][]string{
				"b.example": {"sips:" + tlsAddr},
				"c.example": {"sips:" + rogue.addr},
				// b.example's node, whose anchored certificate names
				// b.example only, is no server of d.example (RFC 5922).
				"d.example": {"sips:" + tlsAddr},
			}
		}
	})
	var bIdx int
	for i, n := range m.Nodes {
		if n.Name == bFront {
			bIdx = i
		}
	}
	aIdx := domainNodes(nw, "a.example")[0]
	bob := domainUser(m, "b.example", 0)
	user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")
	uasPort := freeUDPPort(t)
	uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "1", "-timeout", "40s")
	if err := (sippRun{registrar: nw.Node(bIdx).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
		domain: "b.example", contact: fmt.Sprintf("<sip:%s@127.0.0.1:%d>", user, uasPort), expires: 600, final: 200}).run(t); err != nil {
		t.Fatal(err)
	}
	uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(aIdx).SIPAddr(),
		"-s", user, "-key", "domain", "b.example", "-m", "1", "-timeout", "30s")
	if err := uac.wait(45 * time.Second); err != nil {
		t.Fatal(err, "\ncallee:", uas.wait(time.Second))
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if st := nw.Node(aIdx).Proxy().Stats(); st.Static < 1 {
		t.Fatalf("a.example proxy %+v: want the INVITE sent to the static TLS peer", st)
	}
	if st := nw.Node(bIdx).Proxy().Stats(); st.Direct < 1 || st.Requests < 3 {
		t.Fatalf("b.example proxy %+v: want it to route the INVITE to bob and stay on the dialog's path", st)
	}

	// An OPTIONS over TLS is answered for a UA without a client certificate,
	// never for one presenting a certificate of an untrusted CA.
	probe := func(cert *tls.Certificate) error {
		// GetClientCertificate sends the certificate even though the server
		// does not list its CA (with Certificates, Go would send none).
		conn, err := tls.Dial("tcp", m.Nodes[bIdx].SIPTLS, &tls.Config{InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				return cert, nil
			}})
		if err != nil {
			return err
		}
		defer conn.Close()
		local := conn.LocalAddr().String()
		msg := "OPTIONS sip:b.example SIP/2.0\r\nVia: SIP/2.0/TLS " + local + ";branch=z9hG4bKopt1\r\n" +
			"Max-Forwards: 70\r\nTo: <sip:b.example>\r\nFrom: <sip:probe@" + local + ">;tag=1\r\n" +
			"Call-ID: opt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
			return fmt.Errorf("answer %q", buf[:min(n, 40)])
		}
		return nil
	}
	if err := probe(nil); err != nil {
		t.Fatalf("OPTIONS over TLS without a client certificate: %v", err)
	}
	if err := probe(&rogue.cert); err == nil {
		t.Fatal("a client with an untrusted certificate got a SIP answer")
	}

	// A peer with an untrusted server certificate gets nothing: 500.
	u := newRawUA(t)
	u.send(nw.Node(aIdx).SIPAddr(), u.invite("sip:carol@c.example"))
	if code := u.final(t, 10*time.Second); code != 500 {
		t.Fatalf("call to an untrusted peer: %d, want 500", code)
	}
	if n := rogue.requests.Load(); n != 0 {
		t.Fatalf("the untrusted peer received %d SIP messages", n)
	}

	// A peer whose certificate chains to the anchors but names another
	// domain gets nothing either (client side of RFC 5922).
	before := nw.Node(bIdx).Proxy().Stats().Requests
	u.send(nw.Node(aIdx).SIPAddr(), u.invite("sip:dave@d.example"))
	if code := u.final(t, 10*time.Second); code != 500 {
		t.Fatalf("call to d.example through b.example's node: %d, want 500", code)
	}
	if after := nw.Node(bIdx).Proxy().Stats().Requests; after != before {
		t.Fatalf("b.example's node got %d requests meant for d.example", after-before)
	}

	// Server side: a TLS client with a.example's certificate may send only
	// from a.example's users.
	ac := nw.Node(aIdx).Config()
	aCert, err := tls.LoadX509KeyPair(ac.Path(ac.CertFile), ac.Path(ac.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[string]string{"sip:mallory@c.example": "403", "sip:alice@a.example": "404"} {
		if got := tlsMessage(t, m.Nodes[bIdx].SIPTLS, &aCert, from, "sip:nobody@b.example"); got != want {
			t.Fatalf("MESSAGE from %s over TLS as a.example: %s, want %s", from, got, want)
		}
	}
}

// tlsMessage sends a MESSAGE over TLS with a client certificate and
// returns the final status code.
func tlsMessage(t *testing.T, addr string, cert *tls.Certificate, from, to string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	msg := "MESSAGE " + to + " SIP/2.0\r\nVia: SIP/2.0/TLS " + local + ";branch=z9hG4bKmsg" + fmt.Sprint(time.Now().UnixNano()) + "\r\n" +
		"Max-Forwards: 70\r\nTo: <" + to + ">\r\nFrom: <" + from + ">;tag=1\r\n" +
		"Call-ID: msg" + fmt.Sprint(time.Now().UnixNano()) + "\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no answer over TLS: %v", err)
		}
		if line, _, _ := strings.Cut(string(buf[:n]), "\r\n"); strings.HasPrefix(line, "SIP/2.0 ") && !strings.HasPrefix(line, "SIP/2.0 1") {
			return strings.Fields(line)[1]
		}
	}
}

// rogueServer is a TLS listener with a certificate of a CA nobody trusts.
type rogueServer struct {
	addr     string
	cert     tls.Certificate
	requests atomic.Int64
}

func rogueTLSServer(t *testing.T) *rogueServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "rogue"},
		DNSNames: []string{"b.example", "c.example"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	r := &rogueServer{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{r.cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if n, _ := c.Read(make([]byte, 4096)); n > 0 {
					r.requests.Add(1)
				}
			}()
		}
	}()
	return r
}

// rawUA sends hand-written SIP over UDP.
type rawUA struct {
	t    *testing.T
	conn *net.UDPConn
	cseq int // the last CSeq of its SUBSCRIBEs (one dialog's rise)
}

func newRawUA(t *testing.T) *rawUA {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawUA{t: t, conn: c}
}

func (u *rawUA) invite(ruri string) string {
	local := u.conn.LocalAddr().String()
	id := time.Now().UnixNano()
	return fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d\r\nMax-Forwards: 70\r\n"+
		"To: <%s>\r\nFrom: <sip:caller@%s>;tag=%d\r\nCall-ID: %d\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:caller@%s>\r\nContent-Length: 0\r\n\r\n", ruri, local, id, ruri, local, id, id, local)
}

func (u *rawUA) send(to, msg string) {
	ra, err := net.ResolveUDPAddr("udp", to)
	if err == nil {
		_, err = u.conn.WriteToUDP([]byte(msg), ra)
	}
	if err != nil {
		u.t.Fatal(err)
	}
}

// final returns the status code of the first final response.
func (u *rawUA) final(t *testing.T, timeout time.Duration) int {
	buf := make([]byte, 65535)
	deadline := time.Now().Add(timeout)
	for {
		_ = u.conn.SetReadDeadline(deadline)
		n, _, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no final response: %v", err)
		}
		var code int
		if _, err := fmt.Sscanf(string(buf[:n]), "SIP/2.0 %d", &code); err == nil && code >= 200 {
			return code
		}
	}
}
