package testnet_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// startSipp starts sipp with a scenario from testdata/sipp and args, bound
// to 127.0.0.1:port.
func startSipp(t *testing.T, name, scenario string, port int, args ...string) *sippProc {
	t.Helper()
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Fatal("sipp not installed (Debian package sip-tester; .ci/run installs it)")
	}
	scen, err := filepath.Abs(filepath.Join("testdata/sipp", scenario))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	all := append([]string{"-sf", scen, "-i", "127.0.0.1", "-p", fmt.Sprint(port), "-nostdin",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log")}, args...)
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
			return fmt.Errorf("sipp %s: %v\n%s\n%s", p.name, err, tail(p.out.Bytes()), errs)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("sipp %s still running after %v\n%s", p.name, timeout, tail(p.out.Bytes()))
	}
}

func startCallNet(t *testing.T, tweak func(c *node.Config)) (*testnet.Manifest, *testnet.Network) {
	t.Helper()
	spec := testnet.Spec{Dir: t.TempDir(), Nodes: 6, PerDomain: 2}
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
			c.Registrar.DigestAlgorithms = []string{"MD5", "SHA-256"}
			c.Proxy.DNSServer = "off"
			if tweak != nil {
				tweak(c)
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
	before := map[int]int64{}
	for _, i := range bNodes {
		before[i] = nw.Node(i).Proxy().Stats().Requests
	}
	uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(aNode).SIPAddr(),
		"-s", user, "-key", "domain", "b.example", "-m", "1", "-timeout", "30s")
	if err := uac.wait(45 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, i := range bNodes {
		if got := nw.Node(i).Proxy().Stats().Requests; got != before[i] {
			t.Errorf("b.example node %d saw %d requests of the call: the bypass failed", i, got-before[i])
		}
	}
	st := nw.Node(aNode).Proxy().Stats()
	if st.Direct < 1 || st.Lookups < 1 {
		t.Errorf("a.example proxy: %+v, want the INVITE sent straight to the Contact after an overlay lookup", st)
	}
	t.Logf("a.example proxy: %+v", st)
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
	deadPort := freeTCPPort(t)
	addr := dnsServer(t,
		`c.example. 60 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.c.example.`,
		fmt.Sprintf("_sip._tcp.c.example. 60 IN SRV 10 0 %d dead.c.example.", deadPort),
		fmt.Sprintf("_sip._tcp.c.example. 60 IN SRV 20 0 %d live.c.example.", uasPort),
		"dead.c.example. 60 IN A 127.0.0.1",
		"live.c.example. 60 IN A 127.0.0.1")
	_, nw := startCallNet(t, func(c *node.Config) {
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

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
